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
    Ok(image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()?
        .decode()?
        .into_rgb8())
}

/// Reads and decodes the image file `path`; errors name the file.
pub fn read_image(path: &Path) -> Result<image::RgbImage> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    decode_image(&bytes).with_context(|| format!("cannot decode {}", path.display()))
}
