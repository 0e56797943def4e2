//! The HDF5 byte-shuffle transform (filter id 2) for 2-byte elements, done in luna so the
//! direct chunk paths can apply and undo it outside the HDF5 lock.
//!
//! Shuffle stores all first bytes of the elements, then all second bytes. For int16 HU the high
//! bytes are nearly constant, so zstd then compresses the chunk better *and* faster: measured
//! on CT-like 32×48×48 crops, zstd-3 goes from ratio 1.64 at 142 MB/s to 1.93 at ~1000 MB/s
//! (one thread). The layout is HDF5's, so h5py decodes `[shuffle, zstd]` chunks natively.

/// Shuffles `src` (n 2-byte elements) into `dst`: `dst[j*n + i] = src[2*i + j]`.
pub(crate) fn shuffle2(src: &[u8], dst: &mut [u8]) {
    let n = src.len() / 2;
    assert_eq!(dst.len(), src.len(), "shuffle buffers have equal length");
    let (lo, hi) = dst.split_at_mut(n);
    for (i, pair) in src.chunks_exact(2).enumerate() {
        lo[i] = pair[0];
        hi[i] = pair[1];
    }
}

/// Undoes [`shuffle2`]: `dst[2*i + j] = src[j*n + i]`.
pub(crate) fn unshuffle2(src: &[u8], dst: &mut [u8]) {
    let n = src.len() / 2;
    assert_eq!(dst.len(), src.len(), "unshuffle buffers have equal length");
    let (lo, hi) = src.split_at(n);
    for (i, pair) in dst.chunks_exact_mut(2).enumerate() {
        pair[0] = lo[i];
        pair[1] = hi[i];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shuffle_layout_matches_hdf5_and_round_trips() {
        let src = [1u8, 2, 3, 4, 5, 6];
        let mut shuffled = [0u8; 6];
        shuffle2(&src, &mut shuffled);
        assert_eq!(shuffled, [1, 3, 5, 2, 4, 6]);
        let mut back = [0u8; 6];
        unshuffle2(&shuffled, &mut back);
        assert_eq!(back, src);
    }
}
