//! Who may use `luna serve`: a bearer token read from a file (`--token-file`), and the rule
//! that an address other than loopback is served only with a token (or the explicit
//! `--insecure-no-auth`).
//!
//! Design: the token is kept as its blake3 hash and a presented token is hashed and compared
//! with `blake3::Hash`'s constant-time equality, so neither the bytes nor the length of the
//! secret show in the answer time. Every route but `/healthz` needs it (probes of a load
//! balancer or orchestrator carry no secret, and the answer holds none); a missing or wrong
//! token is 401 with `WWW-Authenticate: Bearer realm="luna"`, checked before a byte of the
//! body is read. The token file is read once at start (rotate by restarting: serve drains).
//!
//! Rejected: the token on the command line (visible in `ps` to every account); TLS in luna
//! (a reverse proxy or a tunnel does it better, and the token is what guards the models);
//! per-client tokens and scopes (one service, one secret; put a gateway in front for more).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Why the token cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The file cannot be read.
    #[error("cannot read the token file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The file holds no usable token.
    #[error("the token file {path} holds no token (one line of at least 16 visible ASCII characters is needed)")]
    Unusable {
        /// The file.
        path: PathBuf,
    },
}

/// The bearer token clients must present.
pub struct Token(blake3::Hash);

impl Token {
    /// Reads the token: the file's text without surrounding whitespace, at least 16 visible
    /// ASCII characters.
    pub fn load(path: &Path) -> Result<Token, AuthError> {
        let text = std::fs::read_to_string(path).map_err(|source| AuthError::Read {
            path: path.into(),
            source,
        })?;
        let t = text.trim();
        if t.len() < 16 || !t.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(AuthError::Unusable { path: path.into() });
        }
        Ok(Token(blake3::hash(t.as_bytes())))
    }

    /// Whether an `Authorization` header value presents this token (`Bearer <token>`; the
    /// scheme's case does not matter, RFC 9110 §11.1).
    pub fn admits(&self, authorization: Option<&str>) -> bool {
        let given = authorization
            .and_then(|a| a.trim().split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map_or("", |(_, t)| t.trim());
        // blake3::Hash's == is constant-time
        blake3::hash(given.as_bytes()) == self.0
    }
}

/// Whether `addr` is reachable from this machine only.
pub fn loopback(addr: &SocketAddr) -> bool {
    addr.ip().is_loopback()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_bearer_token_is_admitted() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("t");
        std::fs::write(&f, "  0123456789abcdef\n").unwrap();
        let t = Token::load(&f).unwrap();
        assert!(t.admits(Some("Bearer 0123456789abcdef")));
        assert!(t.admits(Some("bearer 0123456789abcdef")));
        for bad in [
            None,
            Some(""),
            Some("Bearer"),
            Some("Basic 0123456789abcdef"),
            Some("Bearer 0123456789abcdeF"),
            Some("Bearer 0123456789abcdef0"),
        ] {
            assert!(!t.admits(bad), "{bad:?}");
        }
        std::fs::write(&f, "short\n").unwrap();
        assert!(matches!(Token::load(&f), Err(AuthError::Unusable { .. })));
    }

    #[test]
    fn only_loopback_addresses_count_as_local() {
        assert!(loopback(&"127.0.0.1:1".parse().unwrap()));
        assert!(loopback(&"[::1]:1".parse().unwrap()));
        assert!(!loopback(&"0.0.0.0:1".parse().unwrap()));
        assert!(!loopback(&"10.1.2.3:1".parse().unwrap()));
    }
}
