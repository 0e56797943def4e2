//! Process-level runtime setup: loading libtorch's CUDA backend before any tch call, and the
//! allocator settings of the worker.
//!
//! The PyPI torch wheel links CUDA into `libtorch_cuda.so`, which the binary does not NEED
//! (rustc links with `--as-needed`), so CUDA would never be available. `main` therefore calls
//! [`load_cuda_backend`] first thing: dlopen with RTLD_GLOBAL registers ATen's CUDA hooks.
//! It must precede every tch call, because ATen caches "no CUDA" forever the first time it
//! is asked (shared/TOOLCHAIN.md §1.5). Failure is normal on CPU machines and is remembered so
//! `luna doctor` and `device: auto` can say why CUDA is off.
//!
//! **Allocator.** libtorch allocates and frees its large per-step buffers (activations,
//! gradients: tens of MB each) every training step. glibc serves allocations above its mmap
//! threshold with fresh `mmap`s and trims freed heap top memory back to the kernel, so every
//! step page-faults the same memory in again: on a 2-core VM the worker spent 66% of its CPU
//! time in the kernel (145,000 page faults/s). [`tune_allocator`] raises the mmap threshold
//! and the trim threshold with `mallopt` before any large allocation, so freed buffers stay in
//! the process and are reused (measured in `bench/train.sh`). Rejected: linking or preloading
//! tcmalloc (PyTorch-Python gains 1.82 → 1.40 s/step from it here): it needs a system package
//! on every machine that runs luna, and glibc tuned this way avoids the same faults.

use std::sync::OnceLock;

static CUDA_BACKEND: OnceLock<Result<(), String>> = OnceLock::new();

/// Keeps freed large blocks in the process (see the module doc). Call first thing in `main`.
/// `LUNA_MALLOC_DEFAULTS=1` keeps glibc's defaults (for the side-by-side benchmark).
pub fn tune_allocator() {
    if std::env::var_os("LUNA_MALLOC_DEFAULTS").is_some_and(|v| v == "1") {
        return;
    }
    // SAFETY: mallopt only changes glibc's allocation parameters; called before other threads
    // allocate. A rejected value (returns 0) leaves glibc's defaults, which are correct, only
    // slower.
    unsafe {
        // Blocks up to 1 GiB come from the heap, not from fresh mmaps ...
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 30);
        // ... and free memory at the heap top is kept (up to 2 GiB) instead of trimmed.
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
        libc::mallopt(libc::M_TOP_PAD, 64 << 20);
    }
}

/// Called first thing in `main`: loads the CUDA backend unless `LUNA_NO_CUDA=1` (force CPU).
pub fn init() {
    if std::env::var_os("LUNA_NO_CUDA").is_some_and(|v| v == "1") {
        let _ = CUDA_BACKEND.set(Err("disabled by LUNA_NO_CUDA=1".into()));
    } else {
        let _ = load_cuda_backend();
    }
}

/// dlopens `libtorch_cuda.so` (once); returns whether it loaded, or dlerror's reason.
pub fn load_cuda_backend() -> &'static Result<(), String> {
    CUDA_BACKEND.get_or_init(|| {
        let name = c"libtorch_cuda.so";
        // SAFETY: dlopen with a valid NUL-terminated name; the handle is intentionally leaked
        // so the library stays loaded for the life of the process.
        let h = unsafe { libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) };
        if h.is_null() {
            // SAFETY: dlerror returns a thread-local C string or null.
            let e = unsafe { libc::dlerror() };
            let msg = if e.is_null() {
                "unknown dlopen error".to_string()
            } else {
                // SAFETY: non-null dlerror result is a valid C string.
                unsafe { std::ffi::CStr::from_ptr(e) }
                    .to_string_lossy()
                    .to_string()
            };
            Err(msg)
        } else {
            Ok(())
        }
    })
}

/// The result of the CUDA backend load, if it was attempted.
pub fn cuda_backend_status() -> Option<&'static Result<(), String>> {
    CUDA_BACKEND.get()
}

/// Why CUDA is or is not used, in one line.
pub fn cuda_summary() -> (bool, String) {
    match load_cuda_backend() {
        Err(e) => (false, format!("libtorch_cuda.so did not load ({e}); install the full torch wheel's CUDA libraries to use a GPU")),
        Ok(()) => {
            if tch::Cuda::is_available() {
                (true, format!("{} CUDA device(s), cuDNN {}", tch::Cuda::device_count(), if tch::Cuda::cudnn_is_available() { "available" } else { "unavailable" }))
            } else {
                (false, "libtorch_cuda.so loaded but no CUDA device or driver was found".into())
            }
        }
    }
}
