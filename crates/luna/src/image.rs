//! 8-bit RGB images as PNG: one plain row-major `H×W×3` buffer, PNG-encoded for the
//! segmentation overlays a training task draws (luna-torch's TensorBoard image summaries and
//! the PNG files in the artifact) and for the CT tiles of the run report's galleries. It lives
//! in `luna`, not `luna-torch`, because the report is written by the `luna` binary, which
//! never links libtorch.
//!
//! Rejected: the `image` crate (a decoder/encoder zoo for one format; `png` is what it uses
//! underneath and is already in the tree through plotters); plotters' bitmap backend (draws
//! charts, not pixel arrays).
use std::path::{Path, PathBuf};

/// Image errors.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The pixel buffer does not hold `width × height × 3` bytes.
    #[error("image {width}x{height} needs {} RGB bytes, got {len}", width * height * 3)]
    Size {
        /// Columns.
        width: usize,
        /// Rows.
        height: usize,
        /// Bytes given.
        len: usize,
    },
    /// PNG encoding failed.
    #[error("PNG encoding: {0}")]
    Encode(#[from] png::EncodingError),
    /// Writing a PNG file failed.
    #[error("{path}: {source}; hint: check that the output directory is writable")]
    Io {
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
}

/// An 8-bit RGB image, rows top to bottom, `[r, g, b]` per pixel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RgbImage {
    width: usize,
    height: usize,
    pixels: Vec<u8>,
}

impl RgbImage {
    /// Wraps `pixels` (`width × height × 3` bytes).
    pub fn new(width: usize, height: usize, pixels: Vec<u8>) -> Result<RgbImage, ImageError> {
        if pixels.len() != width * height * 3 {
            return Err(ImageError::Size {
                width,
                height,
                len: pixels.len(),
            });
        }
        Ok(RgbImage {
            width,
            height,
            pixels,
        })
    }

    /// Columns.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Rows.
    pub fn height(&self) -> usize {
        self.height
    }

    /// The `[r, g, b]` of pixel (`row`, `col`).
    pub fn pixel(&self, row: usize, col: usize) -> [u8; 3] {
        let i = (row * self.width + col) * 3;
        [self.pixels[i], self.pixels[i + 1], self.pixels[i + 2]]
    }

    /// The PNG encoding (8-bit RGB, no filter tricks: lossless either way).
    pub fn encode_png(&self) -> Result<Vec<u8>, ImageError> {
        let mut buf = Vec::new();
        {
            let mut enc = png::Encoder::new(&mut buf, self.width as u32, self.height as u32);
            enc.set_color(png::ColorType::Rgb);
            enc.set_depth(png::BitDepth::Eight);
            let mut w = enc.write_header()?;
            w.write_image_data(&self.pixels)?;
            w.finish()?;
        }
        Ok(buf)
    }

    /// Writes the PNG encoding to `path` (its folder created when missing).
    pub fn save_png(&self, path: &Path) -> Result<(), ImageError> {
        let io = |source| ImageError::Io {
            path: path.to_path_buf(),
            source,
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        std::fs::write(path, self.encode_png()?).map_err(io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrong_buffer_size_is_an_error() {
        let e = RgbImage::new(2, 2, vec![0; 11]).unwrap_err().to_string();
        assert_eq!(e, "image 2x2 needs 12 RGB bytes, got 11");
    }

    #[test]
    fn png_round_trips_through_the_decoder() {
        let px: Vec<u8> = (0..2 * 3 * 3).map(|v| (v * 13) as u8).collect();
        let img = RgbImage::new(3, 2, px.clone()).unwrap();
        let png_bytes = img.encode_png().unwrap();
        let mut dec = png::Decoder::new(std::io::Cursor::new(png_bytes))
            .read_info()
            .unwrap();
        let mut out = vec![0; dec.output_buffer_size()];
        let info = dec.next_frame(&mut out).unwrap();
        assert_eq!((info.width, info.height), (3, 2));
        assert_eq!(info.color_type, png::ColorType::Rgb);
        assert_eq!(&out[..info.buffer_size()], &px[..]);
    }
}
