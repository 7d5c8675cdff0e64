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
    decode_image_into(bytes, Vec::new())
}

/// [`decode_image`] into the allocation of `pixels` (a spent frame's, see
/// [`crate::handoff::LatestFrame::spare_pixels`]): a camera's frames all have one size, so
/// after the first few no frame allocates or frees its pixels.
pub fn decode_image_into(
    bytes: &[u8],
    pixels: Vec<u8>,
) -> Result<image::RgbImage, image::ImageError> {
    let reader = image::ImageReader::new(std::io::Cursor::new(bytes)).with_guessed_format()?;
    if reader.format() == Some(image::ImageFormat::Jpeg) {
        return decode_jpeg_into(bytes, pixels);
    }
    decode_rgb(reader.into_decoder()?, pixels)
}

/// Decodes a JPEG (a camera's MJPEG frame, a `.jpg` file). The JPEG decoder fills whatever is
/// missing at the end of a cut-off file with grey and reports no error, yet a USB camera that
/// drops packets delivers exactly such frames. A complete JPEG ends with the end-of-image
/// marker `FF D9` (inside the entropy-coded data `FF` is always followed by `00` or a restart
/// marker), so one without it is an error. Zero bytes after it (some cameras pad their frames)
/// are accepted.
pub fn decode_jpeg(bytes: &[u8]) -> Result<image::RgbImage, image::ImageError> {
    decode_jpeg_into(bytes, Vec::new())
}

/// [`decode_jpeg`] into the allocation of `pixels`, as [`decode_image_into`].
pub fn decode_jpeg_into(
    bytes: &[u8],
    pixels: Vec<u8>,
) -> Result<image::RgbImage, image::ImageError> {
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
    let decoder = image::codecs::jpeg::JpegDecoder::new(std::io::Cursor::new(bytes))?;
    decode_rgb(decoder, pixels)
}

/// RGB8 images are decoded straight into `pixels`; others (grey, with alpha, 16-bit) are
/// converted, in a fresh buffer.
fn decode_rgb(
    decoder: impl image::ImageDecoder,
    mut pixels: Vec<u8>,
) -> Result<image::RgbImage, image::ImageError> {
    // A corrupt header can claim any size: the same cap as `ImageReader::decode` (512 MiB).
    image::Limits::default().reserve(decoder.total_bytes())?;
    if decoder.color_type() != image::ColorType::Rgb8 {
        return Ok(image::DynamicImage::from_decoder(decoder)?.into_rgb8());
    }
    let (width, height) = decoder.dimensions();
    // Same length as last time (the usual case): no reallocation and no clearing.
    pixels.resize(decoder.total_bytes() as usize, 0);
    decoder.read_image(&mut pixels)?;
    Ok(image::RgbImage::from_raw(width, height, pixels).expect("sized by the decoder"))
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

    /// A spent frame's buffer is decoded into, whatever its length and contents; images that
    /// are not RGB8 (a grey PNG) are converted.
    #[test]
    fn decoding_into_a_spent_frame_reuses_its_buffer() {
        let jpeg = sample();
        let fresh = decode_image(&jpeg).unwrap();
        let spent = fresh.clone().into_raw();
        let ptr = spent.as_ptr();
        let again = decode_image_into(&jpeg, spent).unwrap();
        assert_eq!(again.as_raw().as_ptr(), ptr, "decoded into a new buffer");
        assert!(again == fresh, "the reused buffer changed the picture");
        let from_small = decode_image_into(&jpeg, vec![7; 10]).unwrap();
        assert!(from_small == fresh, "a shorter buffer changed the picture");

        let grey = image::GrayImage::from_fn(8, 6, |x, y| image::Luma([(x * 30 + y) as u8]));
        let mut png = Vec::new();
        grey.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        let rgb = decode_image_into(&png, vec![1; 1000]).unwrap();
        assert_eq!(rgb.dimensions(), (8, 6));
        assert_eq!(rgb.get_pixel(7, 5).0, [215; 3]);
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
