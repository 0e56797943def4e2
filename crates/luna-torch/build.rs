//! Build script: embeds the libtorch directory as RUNPATH so `luna` runs without
//! LD_LIBRARY_PATH (shared/TOOLCHAIN.md §1.4: tch's own link args do not reach dependents),
//! and records the torch version and location for `luna doctor`.
fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-env-changed=LIBTORCH_USE_PYTORCH");
    let lib = std::env::var("DEP_TCH_LIBTORCH_LIB").unwrap_or_default();
    if !lib.is_empty() {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    }
    println!("cargo:rustc-env=LUNA_LIBTORCH_LIB={lib}");
    // torch/version.py sits next to torch/lib in the PyPI wheel.
    let version = std::path::Path::new(&lib)
        .parent()
        .map(|torch| torch.join("version.py"))
        .and_then(|p| std::fs::read_to_string(p).ok())
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("__version__ = ")
                    .map(|v| v.trim_matches(|c| c == '\'' || c == '"').to_string())
            })
        })
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=LUNA_TORCH_VERSION={version}");
}
