//! The standard zstd HDF5 filter (registered id 32015), so luna's HDF5 files read in h5py with
//! `import hdf5plugin` and h5py-written `hdf5plugin.Zstd()` files read in luna.
//!
//! Format (same as the HDF5 registered filter and hdf5plugin): each chunk is one plain zstd
//! frame of the chunk's bytes, with the content size in the frame header; `cd_values[0]` is the
//! compression level (default 3 when absent).
//!
//! Decisions:
//! - Implemented here in ~100 lines instead of using `blosc-zstd` (id 32001): no blosc C build,
//!   and the chunk bytes are a plain zstd frame that luna can also decode itself, outside the
//!   HDF5 lock (see `crop_reader`). Rejected: an HDF5 plugin `.so` (needs `HDF5_PLUGIN_PATH`).
//! - Buffers handed back to HDF5 are `libc::malloc`ed and the input freed with `libc::free`,
//!   as the HDF5 filter contract requires (hdf5-metno's own lzf/blosc filters do the same).
//! - The filter is registered once per process ([`OnceLock`]) under hdf5-metno's global lock.
//! - HDF5 declares user filters *optional*: if compression fails (returns 0) the library stores
//!   the chunk unfiltered and sets the chunk's filter-mask bit; readers must honour that mask.

use std::ffi::{c_uint, c_void};
use std::sync::OnceLock;

use hdf5_sys::h5z::{H5Z_class2_t, H5Zregister, H5Z_CLASS_T_VERS, H5Z_FLAG_REVERSE};
use libc::size_t;

use super::StoreError;

/// The HDF5 registered filter id of zstd.
pub const ZSTD_FILTER_ID: i32 = 32015;

const ZSTD_FILTER_NAME: &[u8] = b"zstd (luna)\0";

/// Result of the one registration attempt (error code of `H5Zregister` if it failed).
static REGISTERED: OnceLock<Result<(), i32>> = OnceLock::new();

/// Registers the zstd filter (id 32015) with the HDF5 library; idempotent and thread-safe.
pub fn register_zstd_filter() -> Result<(), StoreError> {
    let result = REGISTERED.get_or_init(|| {
        let class = H5Z_class2_t {
            version: H5Z_CLASS_T_VERS as _,
            id: ZSTD_FILTER_ID,
            encoder_present: 1,
            decoder_present: 1,
            name: ZSTD_FILTER_NAME.as_ptr().cast(),
            can_apply: None,
            set_local: None,
            filter: Some(zstd_filter),
        };
        // SAFETY: H5Zregister copies the class struct; the name is a static C string.
        let code =
            hdf5::sync::sync(|| unsafe { H5Zregister((&class as *const H5Z_class2_t).cast()) });
        if code < 0 {
            Err(code)
        } else {
            Ok(())
        }
    });
    result.map_err(|code| StoreError::FilterUnavailable {
        filter_id: ZSTD_FILTER_ID,
        code,
    })
}

/// HDF5 filter callback: compresses (forward) or decompresses (`H5Z_FLAG_REVERSE`) `*buf`.
/// Returns the number of valid bytes in the new `*buf`, or 0 on failure.
unsafe extern "C" fn zstd_filter(
    flags: c_uint,
    cd_nelmts: size_t,
    cd_values: *const c_uint,
    nbytes: size_t,
    buf_size: *mut size_t,
    buf: *mut *mut c_void,
) -> size_t {
    let result = std::panic::catch_unwind(|| {
        // SAFETY: HDF5 guarantees `*buf` holds at least `nbytes` valid bytes.
        let input = unsafe { std::slice::from_raw_parts((*buf) as *const u8, nbytes) };
        if flags & H5Z_FLAG_REVERSE != 0 {
            let size = match zstd_safe::get_frame_content_size(input) {
                Ok(Some(n)) => n as usize,
                _ => return None,
            };
            unsafe {
                with_malloc(size, |out| {
                    zstd::bulk::decompress_to_buffer(input, out).ok()
                })
            }
        } else {
            let level = if cd_nelmts > 0 && !cd_values.is_null() {
                // SAFETY: cd_values holds cd_nelmts values.
                unsafe { *cd_values as i32 }
            } else {
                3
            };
            let bound = zstd_safe::compress_bound(nbytes);
            unsafe {
                with_malloc(bound, |out| {
                    zstd::bulk::compress_to_buffer(input, out, level).ok()
                })
            }
        }
    });
    match result {
        Ok(Some((ptr, n, cap))) => {
            // SAFETY: `*buf` was malloc'ed by HDF5; we replace it with our malloc'ed buffer.
            unsafe {
                libc::free(*buf);
                *buf = ptr;
                *buf_size = cap;
            }
            n
        }
        _ => 0,
    }
}

/// Allocates `cap` zeroed bytes (libc, freeable by HDF5), lets `fill` write into them; returns (ptr, bytes written, cap) or frees.
unsafe fn with_malloc(
    cap: usize,
    fill: impl FnOnce(&mut [u8]) -> Option<usize>,
) -> Option<(*mut c_void, usize, usize)> {
    // calloc, not malloc: the slice below must not cover uninitialised bytes.
    let ptr = unsafe { libc::calloc(cap.max(1), 1) };
    if ptr.is_null() {
        return None;
    }
    // SAFETY: ptr is a fresh allocation of at least `cap` bytes.
    let out = unsafe { std::slice::from_raw_parts_mut(ptr as *mut u8, cap) };
    match fill(out) {
        Some(n) => Some((ptr, n, cap)),
        None => {
            unsafe { libc::free(ptr) };
            None
        }
    }
}
