//! A captured camera frame: the unit that flows from a [`crate::camera::FrameSource`] into the
//! vision pipeline, and the one function that decodes image files into frames' pixels.

use std::path::Path;
use std::time::SystemTime;

use anyhow::{Context, Result};

/// One decoded RGB frame and when it was captured.
#[derive(Debug, Clone)]
pub struct Frame {
    /// Monotonic per-source sequence number, starting at 0.
    pub seq: u64,
    /// Decoded pixels, 8-bit RGB.
    pub image: image::RgbImage,
    /// Wall-clock capture time (for event timestamps).
    pub captured: SystemTime,
}

impl Frame {
    pub fn width(&self) -> u32 {
        self.image.width()
    }
    pub fn height(&self) -> u32 {
        self.image.height()
    }
}

/// Decodes an encoded image (PNG or JPEG, recognised by its content) to 8-bit RGB. Every tool
/// and source that reads image files goes through here.
pub fn decode_image(bytes: &[u8]) -> Result<image::RgbImage, image::ImageError> {
    let reader = image::ImageReader::new(std::io::Cursor::new(bytes)).with_guessed_format()?;
    if reader.format() == Some(image::ImageFormat::Jpeg) {
        return decode_jpeg(bytes);
    }
    Ok(reader.decode()?.into_rgb8())
}

/// Decodes a JPEG (a camera's MJPEG frame, a `.jpg` file). The JPEG decoder fills whatever is
/// missing at the end of a cut-off file with grey and reports no error, yet a USB camera that
/// drops packets delivers exactly such frames. A complete JPEG ends with the end-of-image
/// marker `FF D9` (inside the entropy-coded data `FF` is always followed by `00` or a restart
/// marker), so one without it is an error. Zero bytes after it (some cameras pad their frames)
/// are accepted.
pub fn decode_jpeg(bytes: &[u8]) -> Result<image::RgbImage, image::ImageError> {
    if !jpeg_is_complete(bytes) {
        return Err(image::ImageError::Decoding(
            image::error::DecodingError::new(
                image::ImageFormat::Jpeg.into(),
                format!(
                    "truncated: {} bytes without an end-of-image marker",
                    bytes.len()
                ),
            ),
        ));
    }
    Ok(image::load_from_memory_with_format(bytes, image::ImageFormat::Jpeg)?.into_rgb8())
}

/// Whether `bytes` end with the JPEG end-of-image marker, ignoring trailing zero padding.
pub fn jpeg_is_complete(bytes: &[u8]) -> bool {
    let end = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    end >= 4 && bytes[..end].ends_with(&[0xFF, 0xD9])
}

/// Reads and decodes the image file `path`; errors name the file.
pub fn read_image(path: &Path) -> Result<image::RgbImage> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    decode_image(&bytes).with_context(|| format!("cannot decode {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/samples/frames/0000.jpg"
        ))
        .unwrap()
    }

    #[test]
    fn whole_jpeg_decodes_and_zero_padding_is_accepted() {
        let mut jpeg = sample();
        let img = decode_image(&jpeg).unwrap();
        assert!(img.width() > 0);
        jpeg.extend_from_slice(&[0; 64]);
        assert_eq!(decode_image(&jpeg).unwrap().dimensions(), img.dimensions());
    }

    #[test]
    fn jpeg_cut_anywhere_is_truncated() {
        let jpeg = sample();
        // Every cut in the last 4 KB and a spread over the rest: all of them are errors.
        let cuts = (0..jpeg.len())
            .step_by(97)
            .chain(jpeg.len() - 4096..jpeg.len());
        for cut in cuts {
            let err = decode_image(&jpeg[..cut]).expect_err(&format!("cut at {cut}"));
            if cut > 16 {
                assert!(err.to_string().contains("truncated"), "cut at {cut}: {err}");
            }
        }
    }
}
