//! Minimal TensorBoard event-file writer: scalars and PNG image summaries.
//!
//! Format: TFRecord framing — `u64 LE length`, `masked crc32c(length bytes)`, `data`,
//! `masked crc32c(data)`, where `masked(c) = ((c >> 15) | (c << 17)) + 0xa282ead8` — around
//! hand-encoded `tensorflow.Event` protobufs: `wall_time` (field 1, double), `step` (2, int64),
//! `file_version` (3, string "brain.Event:2", first record only), `summary` (5) →
//! `Summary.value` (1) → `{tag (1, string), simple_value (2, float)}` for a scalar or
//! `{tag (1), image (4) → Summary.Image {height (1), width (2), colorspace (3, 3 = RGB),
//! encoded_image_string (4, PNG bytes)}}` for an image (what `SummaryWriter.add_image` writes).
//! File name: `events.out.tfevents.<unix secs>.<hostname>.<pid>.<n>` (n counts writers in this
//! process so two writers created in the same second never collide).
//!
//! Rejected: a protobuf/tensorboard crate (heavy dependency for ~100 lines); histograms and PR
//! curves (the book logs them; luna writes PNG plots instead, see `nn::plot`).
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::nn::image::RgbImage;

static WRITER_COUNT: AtomicUsize = AtomicUsize::new(0);

/// TensorBoard writer errors.
#[derive(Debug, thiserror::Error)]
pub enum TensorboardError {
    /// An image could not be encoded.
    #[error("tensorboard image {tag}: {source}")]
    Image {
        /// Summary tag.
        tag: String,
        /// Cause.
        source: crate::nn::image::ImageError,
    },
    /// Could not create or write the event file.
    #[error(
        "tensorboard event file {path}: {source}; hint: check that the log directory is writable"
    )]
    Io {
        /// File or directory.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
}

/// Appends scalar and image events to one event file.
#[derive(Debug)]
pub struct EventWriter {
    path: PathBuf,
    out: BufWriter<File>,
}

fn masked_crc(data: &[u8]) -> u32 {
    let c = crc32c::crc32c(data);
    c.rotate_right(15).wrapping_add(0xa282_ead8)
}

fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

fn put_bytes(buf: &mut Vec<u8>, field: u32, data: &[u8]) {
    put_varint(buf, u64::from(field << 3 | 2));
    put_varint(buf, data.len() as u64);
    buf.extend_from_slice(data);
}

fn hostname() -> String {
    let mut b = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates on success.
    let rc = unsafe { libc::gethostname(b.as_mut_ptr().cast(), b.len()) };
    if rc != 0 {
        return "localhost".to_string();
    }
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

/// One summary value of an event.
enum Value<'a> {
    /// `simple_value`.
    Scalar(f32),
    /// `image`: height, width, PNG bytes.
    Image(usize, usize, &'a [u8]),
}

/// Encodes one `Event` message.
fn encode_event(
    wall_time: f64,
    step: i64,
    file_version: Option<&str>,
    values: &[(&str, Value<'_>)],
) -> Vec<u8> {
    let mut ev = Vec::new();
    ev.push(1 << 3 | 1);
    ev.extend_from_slice(&wall_time.to_le_bytes());
    ev.push(2 << 3);
    put_varint(&mut ev, step as u64);
    if let Some(v) = file_version {
        put_bytes(&mut ev, 3, v.as_bytes());
    }
    if !values.is_empty() {
        let mut summary = Vec::new();
        for (tag, value) in values {
            let mut val = Vec::new();
            put_bytes(&mut val, 1, tag.as_bytes());
            match value {
                Value::Scalar(v) => {
                    val.push(2 << 3 | 5);
                    val.extend_from_slice(&v.to_le_bytes());
                }
                Value::Image(height, width, png) => {
                    let mut img = Vec::new();
                    for (field, v) in [(1u8, *height as u64), (2, *width as u64), (3, 3)] {
                        img.push(field << 3);
                        put_varint(&mut img, v);
                    }
                    put_bytes(&mut img, 4, png);
                    put_bytes(&mut val, 4, &img);
                }
            }
            put_bytes(&mut summary, 1, &val);
        }
        put_bytes(&mut ev, 5, &summary);
    }
    ev
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl EventWriter {
    /// Creates `dir` if needed and a new event file in it, starting with the version record.
    pub fn create(dir: &Path) -> Result<EventWriter, TensorboardError> {
        std::fs::create_dir_all(dir).map_err(|source| TensorboardError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let n = WRITER_COUNT.fetch_add(1, Ordering::Relaxed);
        let name = format!(
            "events.out.tfevents.{}.{}.{}.{}",
            now() as u64,
            hostname(),
            std::process::id(),
            n
        );
        let path = dir.join(name);
        let file = File::create(&path).map_err(|source| TensorboardError::Io {
            path: path.clone(),
            source,
        })?;
        let mut w = EventWriter {
            path,
            out: BufWriter::new(file),
        };
        w.write_record(&encode_event(now(), 0, Some("brain.Event:2"), &[]))?;
        w.flush()?;
        Ok(w)
    }

    /// Path of the event file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn write_record(&mut self, data: &[u8]) -> Result<(), TensorboardError> {
        let len = (data.len() as u64).to_le_bytes();
        let mut rec = Vec::with_capacity(data.len() + 16);
        rec.extend_from_slice(&len);
        rec.extend_from_slice(&masked_crc(&len).to_le_bytes());
        rec.extend_from_slice(data);
        rec.extend_from_slice(&masked_crc(data).to_le_bytes());
        self.out
            .write_all(&rec)
            .map_err(|source| TensorboardError::Io {
                path: self.path.clone(),
                source,
            })
    }

    /// Writes one scalar.
    pub fn add_scalar(&mut self, tag: &str, value: f32, step: i64) -> Result<(), TensorboardError> {
        self.add_scalars(step, &[(tag, value)])
    }

    /// Writes several scalars at one step (one event).
    pub fn add_scalars(
        &mut self,
        step: i64,
        scalars: &[(&str, f32)],
    ) -> Result<(), TensorboardError> {
        let values: Vec<(&str, Value)> = scalars
            .iter()
            .map(|&(tag, v)| (tag, Value::Scalar(v)))
            .collect();
        self.write_record(&encode_event(now(), step, None, &values))
    }

    /// Writes one RGB image (PNG-encoded), as `SummaryWriter.add_image(tag, img, step,
    /// dataformats="HWC")` with 8-bit pixels does.
    pub fn add_image(
        &mut self,
        tag: &str,
        image: &RgbImage,
        step: i64,
    ) -> Result<(), TensorboardError> {
        let png = image
            .encode_png()
            .map_err(|source| TensorboardError::Image {
                tag: tag.to_string(),
                source,
            })?;
        let value = Value::Image(image.height(), image.width(), &png);
        self.write_record(&encode_event(now(), step, None, &[(tag, value)]))
    }

    /// Flushes buffered records to disk.
    pub fn flush(&mut self) -> Result<(), TensorboardError> {
        self.out.flush().map_err(|source| TensorboardError::Io {
            path: self.path.clone(),
            source,
        })
    }
}

impl Drop for EventWriter {
    fn drop(&mut self) {
        let _ = self.out.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masked_crc_of_known_input() {
        // crc32c("123456789") = 0xe3069283 (RFC 3720 check value); masked by hand: 0xc78ab0e5.
        assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
        assert_eq!(masked_crc(b"123456789"), 0xc78a_b0e5);
    }

    #[test]
    fn event_encoding_is_exact() {
        let ev = encode_event(1.0, 300, None, &[("a", Value::Scalar(1.0))]);
        let mut want = vec![0x09];
        want.extend_from_slice(&1.0f64.to_le_bytes());
        want.extend_from_slice(&[0x10, 0xac, 0x02, 0x2a, 10, 0x0a, 8, 0x0a, 1, b'a', 0x15]);
        want.extend_from_slice(&1.0f32.to_le_bytes());
        assert_eq!(ev, want);
    }

    #[test]
    fn image_encoding_is_exact() {
        let ev = encode_event(1.0, 1, None, &[("i", Value::Image(2, 300, b"PNG"))]);
        let mut want = vec![0x09];
        want.extend_from_slice(&1.0f64.to_le_bytes());
        // summary(5) len 19 → value(1) len 17 → tag "i", image(4) len 12 → height 2,
        // width 300 (varint ac 02), colorspace 3, encoded(4) "PNG"
        want.extend_from_slice(&[0x10, 0x01, 0x2a, 19, 0x0a, 17, 0x0a, 1, b'i', 0x22, 12]);
        want.extend_from_slice(&[
            0x08, 2, 0x10, 0xac, 0x02, 0x18, 3, 0x22, 3, b'P', b'N', b'G',
        ]);
        assert_eq!(ev, want);
    }
}
