//! Decoding raw voxel bytes (any MetaImage scalar type, either byte order) and the HU clip.
//!
//! HU rule (book-reference §2.1): values are clipped to [-1000, 1000] and stored as `i16`.
//! Integer inputs are clamped exactly (in i128, so u64/i64 extremes cannot wrap). Float inputs
//! follow numpy's `np.clip(a, -1000, 1000).astype(np.int16)`: clip, then **truncate toward zero**
//! (-3.7 → -3, 999.9 → 999); rejected: round-to-nearest, because the crop oracle and any
//! float-based cache built with numpy would disagree by one HU. NaN becomes 0 (Rust's `as`).
//!
//! Bytes are read with `from_le_bytes`/`from_be_bytes` per element, so the source need not be
//! aligned (a `LOCAL` header can leave the data at an odd offset in the mapped file).

use rayon::prelude::*;

/// Lower HU clip bound.
pub const HU_MIN: i16 = -1000;
/// Upper HU clip bound.
pub const HU_MAX: i16 = 1000;

/// A scalar voxel type that can be decoded from bytes.
pub trait Elem: Copy + Send + Sync + 'static {
    /// Bytes per element.
    const N: usize;
    /// Decode from exactly `N` bytes.
    fn decode(b: &[u8], msb: bool) -> Self;
    /// Clip to [-1000, 1000] as i16 (numpy `clip` + `astype(int16)` semantics).
    fn hu(self) -> i16;
    /// As f64 (exact for all but 64-bit integers beyond 2^53).
    fn as_f64(self) -> f64;
}

macro_rules! int_elem {
    ($t:ty) => {
        impl Elem for $t {
            const N: usize = std::mem::size_of::<$t>();
            #[inline(always)]
            fn decode(b: &[u8], msb: bool) -> Self {
                let mut a = [0u8; std::mem::size_of::<$t>()];
                a.copy_from_slice(&b[..Self::N]);
                if msb {
                    <$t>::from_be_bytes(a)
                } else {
                    <$t>::from_le_bytes(a)
                }
            }
            #[inline(always)]
            fn hu(self) -> i16 {
                (self as i128).clamp(HU_MIN as i128, HU_MAX as i128) as i16
            }
            #[inline(always)]
            fn as_f64(self) -> f64 {
                self as f64
            }
        }
    };
}

macro_rules! float_elem {
    ($t:ty) => {
        impl Elem for $t {
            const N: usize = std::mem::size_of::<$t>();
            #[inline(always)]
            fn decode(b: &[u8], msb: bool) -> Self {
                let mut a = [0u8; std::mem::size_of::<$t>()];
                a.copy_from_slice(&b[..Self::N]);
                if msb {
                    <$t>::from_be_bytes(a)
                } else {
                    <$t>::from_le_bytes(a)
                }
            }
            #[inline(always)]
            fn hu(self) -> i16 {
                // clamp keeps NaN; `as` truncates toward zero and maps NaN to 0.
                self.clamp(HU_MIN as $t, HU_MAX as $t) as i16
            }
            #[inline(always)]
            fn as_f64(self) -> f64 {
                self as f64
            }
        }
    };
}

int_elem!(i8);
int_elem!(u8);
int_elem!(i32);
int_elem!(u32);
int_elem!(i64);
int_elem!(u64);
int_elem!(u16);
float_elem!(f32);
float_elem!(f64);

impl Elem for i16 {
    const N: usize = 2;
    #[inline(always)]
    fn decode(b: &[u8], msb: bool) -> Self {
        let a = [b[0], b[1]];
        if msb {
            i16::from_be_bytes(a)
        } else {
            i16::from_le_bytes(a)
        }
    }
    #[inline(always)]
    fn hu(self) -> i16 {
        self.clamp(HU_MIN, HU_MAX)
    }
    #[inline(always)]
    fn as_f64(self) -> f64 {
        self as f64
    }
}

/// Voxels per parallel work item.
const CHUNK: usize = 1 << 16;

/// Decode all elements of `bytes` (length a multiple of `T::N`).
pub fn decode_all<T: Elem>(bytes: &[u8], msb: bool) -> Vec<T> {
    let n = bytes.len() / T::N;
    let mut out: Vec<T> = Vec::with_capacity(n);
    out.par_extend(bytes.par_chunks_exact(T::N).map(|b| T::decode(b, msb)));
    out
}

/// Decode and map every element with `f` into `out` (same element count), in parallel.
pub fn map_into<T: Elem, U: Send>(
    bytes: &[u8],
    msb: bool,
    out: &mut [U],
    f: impl Fn(T) -> U + Sync,
) {
    out.par_chunks_mut(CHUNK)
        .zip(bytes.par_chunks(CHUNK * T::N))
        .for_each(|(o, b)| fill_row(b, msb, o, &f));
}

/// Decode one contiguous run of elements into `out` with `f` (serial; the crop inner loop).
#[inline]
pub fn fill_row<T: Elem, U>(bytes: &[u8], msb: bool, out: &mut [U], f: &impl Fn(T) -> U) {
    for (o, b) in out.iter_mut().zip(bytes.chunks_exact(T::N)) {
        *o = f(T::decode(b, msb));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_clip_truncates_toward_zero() {
        assert_eq!((-3.7f32).hu(), -3);
        assert_eq!(999.9f64.hu(), 999);
        assert_eq!(1000.5f64.hu(), 1000);
        assert_eq!((-1e30f32).hu(), -1000);
        assert_eq!(f64::NAN.hu(), 0);
    }

    #[test]
    fn int_clip_extremes() {
        assert_eq!(u64::MAX.hu(), 1000);
        assert_eq!(i64::MIN.hu(), -1000);
        assert_eq!((-2048i16).hu(), -1000);
        assert_eq!(200u8.hu(), 200);
    }

    #[test]
    fn byte_orders() {
        assert_eq!(i16::decode(&[0x01, 0x02], false), 0x0201);
        assert_eq!(i16::decode(&[0x01, 0x02], true), 0x0102);
        assert_eq!(u32::decode(&[0, 0, 0, 7], true), 7);
        assert_eq!(f32::decode(&1.5f32.to_be_bytes(), true), 1.5);
    }
}
