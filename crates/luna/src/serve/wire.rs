//! The framed binary protocol between `luna serve` and its model worker (`luna-torch infer`).
//!
//! Every message in either direction is one frame: a 5-byte header (`tag: u8`, `len: u32`
//! little-endian) and `len` payload bytes. The tags:
//! - [`Tag::Json`]: the handshake ([`InferConfig`] from the server, [`Hello`] back) and a
//!   batch's error ([`BatchError`]);
//! - [`Tag::Crops`]: a batch of crops, `n × d × h × w` i16 little-endian, C order (n follows
//!   from the length and the crop shape the worker announced);
//! - [`Tag::Probs`]: the answer, `n × 2` f32 little-endian: P(nodule) and P(malignant) per
//!   crop, NaN where no malignancy model is served.
//!
//! The encoding is the same bytes a client sends to `/v1/classify` (raw i16), so the server
//! copies crops into a batch without converting them; f32 is what the model computes, so no
//! precision is lost on the way back. One definition of the header serves both sides (the
//! worker reads with `std::io`, the server with tokio) through [`header`] and [`parse_header`].
//!
//! Rejected: JSON lines (a 48×48×32 crop is 147 KB of i16, several times that as JSON text,
//! and parsing it would cost more than the forward pass); shared memory (a worker crash would
//! leave segments behind, and the pipe's copy is far below the model's time).

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Bytes of a frame header.
pub const HEADER_LEN: usize = 5;
/// The largest payload either side accepts (a frame claiming more is a protocol error).
pub const MAX_FRAME: usize = 1 << 31;

/// What a frame holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tag {
    /// A JSON document.
    Json,
    /// A batch of i16 crops.
    Crops,
    /// f32 probability pairs.
    Probs,
}

impl Tag {
    fn byte(self) -> u8 {
        match self {
            Tag::Json => b'J',
            Tag::Crops => b'C',
            Tag::Probs => b'P',
        }
    }
}

/// A malformed frame header.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// Unknown tag byte.
    #[error("unknown frame tag {0:#04x}")]
    Tag(u8),
    /// Length over [`MAX_FRAME`].
    #[error("frame of {0} bytes exceeds the limit")]
    TooLong(usize),
}

/// The header of a frame with `len` payload bytes.
pub fn header(tag: Tag, len: usize) -> [u8; HEADER_LEN] {
    let l = u32::try_from(len).unwrap_or(u32::MAX).to_le_bytes();
    [tag.byte(), l[0], l[1], l[2], l[3]]
}

/// Parses a frame header into its tag and payload length.
pub fn parse_header(h: &[u8; HEADER_LEN]) -> Result<(Tag, usize), WireError> {
    let tag = match h[0] {
        b'J' => Tag::Json,
        b'C' => Tag::Crops,
        b'P' => Tag::Probs,
        b => return Err(WireError::Tag(b)),
    };
    let len = u32::from_le_bytes([h[1], h[2], h[3], h[4]]) as usize;
    if len > MAX_FRAME {
        return Err(WireError::TooLong(len));
    }
    Ok((tag, len))
}

/// The server's first frame: which models to load, where, how.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InferConfig {
    /// The nodule classifier's artifact directory (`model.safetensors` + `model.json`).
    pub nodule: PathBuf,
    /// The malignancy classifier's artifact directory, if served.
    pub malignancy: Option<PathBuf>,
    /// `auto`, `cpu`, `cuda` or `cuda:N`.
    pub device: String,
    /// Torch intra-op threads.
    pub threads: usize,
    /// Crops per forward pass (a larger batch is run in chunks of this size).
    pub chunk: usize,
}

/// The worker's answer to [`InferConfig`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Hello {
    /// The crop shape the models take, `[d, h, w]`.
    pub shape: [usize; 3],
    /// The device the models run on (`cpu`, `cuda:0`).
    pub device: String,
    /// Whether P(malignant) is computed.
    pub malignancy: bool,
    /// The worker's process id (for logs and `/healthz`).
    pub pid: u32,
}

/// A failure the worker reports instead of an answer (the worker lives on).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BatchError {
    /// What went wrong.
    pub error: String,
    /// What to do.
    pub hint: Option<String>,
}

/// Encodes f32 values little-endian (the [`Tag::Probs`] payload).
pub fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Decodes a little-endian f32 payload; `None` when the length is not a multiple of 4.
pub fn f32_values(b: &[u8]) -> Option<Vec<f32>> {
    if !b.len().is_multiple_of(4) {
        return None;
    }
    Some(
        b.chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    )
}

/// Decodes a little-endian i16 payload; `None` when the length is odd.
pub fn i16_values(b: &[u8]) -> Option<Vec<i16>> {
    if !b.len().is_multiple_of(2) {
        return None;
    }
    Some(
        b.chunks_exact(2)
            .map(|c| i16::from_le_bytes([c[0], c[1]]))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_round_trips_and_bad_tags_are_refused() {
        let h = header(Tag::Crops, 147_456);
        assert_eq!(parse_header(&h).unwrap(), (Tag::Crops, 147_456));
        assert!(matches!(
            parse_header(&[b'X', 0, 0, 0, 0]),
            Err(WireError::Tag(b'X'))
        ));
        assert!(matches!(
            parse_header(&[b'J', 255, 255, 255, 255]),
            Err(WireError::TooLong(_))
        ));
        assert_eq!(
            f32_values(&f32_bytes(&[0.25, f32::MAX])).unwrap(),
            [0.25, f32::MAX]
        );
        assert_eq!(i16_values(&[1, 0, 0xff, 0xff]).unwrap(), [1, -1]);
        assert!(i16_values(&[1]).is_none());
    }
}
