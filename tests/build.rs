//! Build script: embeds the libtorch directory as RUNPATH so the test binary (which runs torch
//! code in-process) starts without LD_LIBRARY_PATH (shared/TOOLCHAIN.md §1.4).
fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-env-changed=LIBTORCH_USE_PYTORCH");
    if let Some(lib) = std::env::var_os("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.to_string_lossy());
    }
}
