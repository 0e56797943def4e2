//! Direct chunk I/O (HDF5 `H5Dwrite_chunk` / `H5Dread_chunk`): moves a chunk's stored bytes
//! in and out of a dataset without the filter pipeline, so luna can compress and decompress
//! chunks itself, in parallel and outside the global HDF5 lock.
//!
//! Decisions:
//! - Every call here runs under `hdf5::sync::sync` (hdf5-metno's process-wide reentrant lock):
//!   the static HDF5 build is not thread-safe; only the raw byte copy is done under the lock.
//! - `H5Dread_chunk` changed signature in HDF5 2.0 (`H5Dread_chunk2` takes the buffer size).
//!   The `static-hdf5` feature builds the bundled HDF5 2.2, so it selects `H5Dread_chunk2`;
//!   without it (system libhdf5 1.10.3 – 1.14) the 1.x `H5Dread_chunk` is used. A system
//!   HDF5 ≥ 2.0 therefore needs its deprecated symbols (`H5Dread_chunk1`), which are on by default.
//! - Filter mask: bit *i* set means pipeline filter *i* was skipped for that chunk.
//! - Reads pass a reused, only-growing buffer so the common case is one locked call.

use std::ffi::c_void;

use hdf5::{Dataset, H5Type};
use hdf5_sys::h5d::{H5Dget_chunk_info_by_coord, H5Dget_space, H5Dread, H5Dwrite, H5Dwrite_chunk};
use hdf5_sys::h5p::H5P_DEFAULT;
use hdf5_sys::h5s::{H5S_seloper_t, H5Sclose, H5Screate_simple, H5Sselect_hyperslab};

/// Writes `bytes` as the stored chunk at `offset` (element coordinates of the chunk's origin).
pub(crate) fn write_chunk(
    ds: &Dataset,
    offset: &[u64],
    filter_mask: u32,
    bytes: &[u8],
) -> Result<(), hdf5::Error> {
    hdf5::sync::sync(|| {
        // SAFETY: offset has the dataset's rank entries, bytes is valid for its length.
        let code = unsafe {
            H5Dwrite_chunk(
                ds.id(),
                H5P_DEFAULT,
                filter_mask,
                offset.as_ptr(),
                bytes.len(),
                bytes.as_ptr().cast(),
            )
        };
        if code < 0 {
            return Err(library_error(format!(
                "H5Dwrite_chunk at offset {offset:?} returned {code}"
            )));
        }
        Ok(())
    })
}

/// The library's error stack of the call that just failed (it holds the cause, e.g. the
/// errno of a failed write); `what` when there is none. Call it under the HDF5 lock, before
/// any other HDF5 call: every API call clears the stack.
fn library_error(what: String) -> hdf5::Error {
    match hdf5::Error::query() {
        Ok(e) if e.stack().is_some_and(|s| !s.is_empty()) => e,
        _ => hdf5::Error::from(what),
    }
}

/// Reads the stored bytes of the chunk at `offset` into `buf[..len]`. `buf` only grows and keeps
/// its length between calls, so a reused buffer costs one HDF5 call (HDF5 2.x `H5Dread_chunk2`
/// takes the buffer size); otherwise the size is queried first. Returns (filter mask, len), or
/// `None` when the chunk was never written (its rows read as the fill value).
pub(crate) fn read_chunk(
    ds: &Dataset,
    offset: &[u64],
    buf: &mut Vec<u8>,
) -> Result<Option<(u32, usize)>, hdf5::Error> {
    hdf5::sync::sync(|| {
        #[cfg(feature = "static-hdf5")]
        if !buf.is_empty() {
            let (mut mask, mut len) = (0u32, buf.len());
            // SAFETY: buf holds `len` bytes; HDF5 reads nothing if the chunk is larger.
            let code = unsafe {
                hdf5_sys::h5d::H5Dread_chunk2(
                    ds.id(),
                    H5P_DEFAULT,
                    offset.as_ptr(),
                    &mut mask,
                    buf.as_mut_ptr().cast(),
                    &mut len,
                )
            };
            if code >= 0 && len <= buf.len() {
                return Ok(Some((mask, len)));
            }
        }
        let (mut size, mut mask, mut addr) = (0u64, 0u32, 0u64);
        // SAFETY: offset has the dataset's rank entries; the rest are valid out pointers.
        let code = unsafe {
            H5Dget_chunk_info_by_coord(ds.id(), offset.as_ptr(), &mut mask, &mut addr, &mut size)
        };
        if code < 0 {
            return Err(library_error(format!(
                "H5Dget_chunk_info_by_coord at offset {offset:?} returned {code}"
            )));
        }
        if size == 0 {
            return Ok(None);
        }
        let size = size as usize;
        if buf.len() < size {
            buf.resize(size, 0);
        }
        // SAFETY: the slice holds exactly the `size` bytes HDF5 reported for this chunk.
        let code = unsafe { raw_read(ds, offset, &mut mask, &mut buf[..size]) };
        if code < 0 {
            return Err(library_error(format!(
                "H5Dread_chunk at offset {offset:?} returned {code}"
            )));
        }
        Ok(Some((mask, size)))
    })
}

#[cfg(feature = "static-hdf5")]
unsafe fn raw_read(ds: &Dataset, offset: &[u64], mask: &mut u32, buf: &mut [u8]) -> i32 {
    let mut len = buf.len();
    unsafe {
        hdf5_sys::h5d::H5Dread_chunk2(
            ds.id(),
            H5P_DEFAULT,
            offset.as_ptr(),
            mask,
            buf.as_mut_ptr().cast(),
            &mut len,
        )
    }
}

#[cfg(not(feature = "static-hdf5"))]
unsafe fn raw_read(ds: &Dataset, offset: &[u64], mask: &mut u32, buf: &mut [u8]) -> i32 {
    unsafe {
        hdf5_sys::h5d::H5Dread_chunk1(
            ds.id(),
            H5P_DEFAULT,
            offset.as_ptr(),
            mask,
            buf.as_mut_ptr().cast(),
        )
    }
}

/// Writes `data` (whole rows of `row_shape`, row-major) at rows `start..` of `ds` through
/// HDF5's filter pipeline (the library write path). `ds` must already be large enough.
pub(crate) fn write_rows<T: H5Type>(
    ds: &Dataset,
    start: u64,
    row_shape: &[u64],
    data: &[T],
) -> Result<(), hdf5::Error> {
    let ptr = data.as_ptr() as *mut c_void;
    rows_io::<T>(ds, start, row_shape, data.len(), ptr, true)
}

/// Reads rows `start..` of `ds` (as many whole rows as `out` holds) through HDF5's pipeline.
pub(crate) fn read_rows<T: H5Type>(
    ds: &Dataset,
    start: u64,
    row_shape: &[u64],
    out: &mut [T],
) -> Result<(), hdf5::Error> {
    let ptr = out.as_mut_ptr() as *mut c_void;
    rows_io::<T>(ds, start, row_shape, out.len(), ptr, false)
}

/// Hyperslab I/O of whole rows; `len` elements at `buf` (not ndarray: hdf5-metno uses
/// ndarray 0.17 while luna is pinned to 0.16 by tch, so luna passes raw slices).
fn rows_io<T: H5Type>(
    ds: &Dataset,
    start: u64,
    row_shape: &[u64],
    len: usize,
    buf: *mut c_void,
    write: bool,
) -> Result<(), hdf5::Error> {
    let row: u64 = row_shape.iter().product();
    if row == 0 || !(len as u64).is_multiple_of(row) {
        return Err(hdf5::Error::from(format!(
            "buffer of {len} elements is not whole rows of {row_shape:?}"
        )));
    }
    let mut count = vec![len as u64 / row];
    count.extend_from_slice(row_shape);
    let mut offset = vec![0u64; count.len()];
    offset[0] = start;
    let dtype = hdf5::Datatype::from_type::<T>()?;
    hdf5::sync::sync(|| unsafe {
        // SAFETY: count/offset have the dataset's rank; buf holds `len` elements of T.
        let fspace = H5Dget_space(ds.id());
        if fspace < 0 {
            return Err(library_error("H5Dget_space failed".into()));
        }
        let mspace = H5Screate_simple(count.len() as _, count.as_ptr(), std::ptr::null());
        let mut code = H5Sselect_hyperslab(
            fspace,
            H5S_seloper_t::H5S_SELECT_SET,
            offset.as_ptr(),
            std::ptr::null(),
            count.as_ptr(),
            std::ptr::null(),
        );
        if code >= 0 && mspace >= 0 {
            code = if write {
                H5Dwrite(ds.id(), dtype.id(), mspace, fspace, H5P_DEFAULT, buf)
            } else {
                H5Dread(ds.id(), dtype.id(), mspace, fspace, H5P_DEFAULT, buf)
            };
        } else {
            code = -1;
        }
        // Taken before the closes below, which clear the library's error stack.
        let res = if code < 0 {
            let op = if write { "H5Dwrite" } else { "H5Dread" };
            Err(library_error(format!(
                "{op} of rows {start}.. ({count:?}) returned {code}"
            )))
        } else {
            Ok(())
        };
        if mspace >= 0 {
            H5Sclose(mspace);
        }
        H5Sclose(fspace);
        res
    })
}

/// Marks the file's descriptor close-on-exec. HDF5 opens files without `O_CLOEXEC` and holds an
/// `flock` on them; a child process spawned meanwhile (e.g. a python oracle) would inherit the
/// descriptor and keep the lock after luna closes the file, so reopening it fails with
/// "unable to lock file". Only the default `sec2` driver exposes an fd; others are left alone.
pub(crate) fn set_cloexec(file: &hdf5::File) {
    let sec2 = file
        .access_plist()
        .map(|fapl| matches!(fapl.driver(), hdf5::file::FileDriver::Sec2))
        .unwrap_or(false);
    if !sec2 {
        return;
    }
    hdf5::sync::sync(|| unsafe {
        let mut handle: *mut c_void = std::ptr::null_mut();
        // SAFETY: for sec2, the VFD handle points to the file's `int` descriptor.
        if hdf5_sys::h5f::H5Fget_vfd_handle(file.id(), H5P_DEFAULT, &mut handle) >= 0
            && !handle.is_null()
        {
            let fd = *(handle as *const libc::c_int);
            let flags = libc::fcntl(fd, libc::F_GETFD);
            if flags >= 0 {
                libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC);
            }
        }
    });
}
