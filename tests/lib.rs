//! Empty: this package only holds the integration-test binary `it` (see Cargo.toml).
