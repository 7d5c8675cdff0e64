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
    decode_image_into(bytes, &mut Vec::new())
}

/// [`decode_image`] into the allocation of `pixels` (a spent frame's, see
/// [`crate::handoff::LatestFrame::spare_pixels`]): a camera's frames all have one size, so
/// after the first few no frame allocates or frees its pixels. The image takes the allocation
/// (`pixels` is left empty); after an error `pixels` keeps it, for the next frame — a corrupt
/// frame frees nothing either.
pub fn decode_image_into(
    bytes: &[u8],
    pixels: &mut Vec<u8>,
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
    decode_jpeg_into(bytes, &mut Vec::new())
}

/// [`decode_jpeg`] into the allocation of `pixels`, as [`decode_image_into`].
pub fn decode_jpeg_into(
    bytes: &[u8],
    pixels: &mut Vec<u8>,
) -> Result<image::RgbImage, image::ImageError> {
    decode_rgb(jpeg_decoder(bytes)?, pixels)
}

/// [`decode_jpeg_into`] for a stream whose frames all have one size (a camera's): a frame
/// whose header claims another size is an error, not decoded. Its header is damaged, and a
/// frame of a new size would grow every buffer sized to the frame.
pub fn decode_jpeg_sized_into(
    bytes: &[u8],
    pixels: &mut Vec<u8>,
    (width, height): (u32, u32),
) -> Result<image::RgbImage, image::ImageError> {
    let decoder = jpeg_decoder(bytes)?;
    let (w, h) = image::ImageDecoder::dimensions(&decoder);
    if (w, h) != (width, height) {
        let why = format!("header claims {w}x{h}, the stream's frames are {width}x{height}");
        return Err(jpeg_error(why));
    }
    decode_rgb(decoder, pixels)
}

/// A decoder for a complete JPEG (see [`decode_jpeg`]), its header read.
fn jpeg_decoder(
    bytes: &[u8],
) -> Result<image::codecs::jpeg::JpegDecoder<std::io::Cursor<&[u8]>>, image::ImageError> {
    if !jpeg_is_complete(bytes) {
        let why = format!(
            "truncated: {} bytes without an end-of-image marker",
            bytes.len()
        );
        return Err(jpeg_error(why));
    }
    image::codecs::jpeg::JpegDecoder::new(std::io::Cursor::new(bytes))
}

fn jpeg_error(why: String) -> image::ImageError {
    image::ImageError::Decoding(image::error::DecodingError::new(
        image::ImageFormat::Jpeg.into(),
        why,
    ))
}

/// RGB8 images are decoded straight into `pixels`, which the image then takes; others (grey,
/// with alpha, 16-bit) are converted, in a fresh buffer.
fn decode_rgb(
    decoder: impl image::ImageDecoder,
    pixels: &mut Vec<u8>,
) -> Result<image::RgbImage, image::ImageError> {
    // A corrupt header can claim any size: the same cap as `ImageReader::decode` (512 MiB).
    image::Limits::default().reserve(decoder.total_bytes())?;
    if decoder.color_type() != image::ColorType::Rgb8 {
        return Ok(image::DynamicImage::from_decoder(decoder)?.into_rgb8());
    }
    let (width, height) = decoder.dimensions();
    // Same length as last time (the usual case): no reallocation and no clearing.
    pixels.resize(decoder.total_bytes() as usize, 0);
    decoder.read_image(pixels)?;
    let pixels = std::mem::take(pixels);
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
        let again = decode_image_into(&jpeg, &mut { spent }).unwrap();
        assert_eq!(again.as_raw().as_ptr(), ptr, "decoded into a new buffer");
        assert!(again == fresh, "the reused buffer changed the picture");
        let from_small = decode_image_into(&jpeg, &mut vec![7; 10]).unwrap();
        assert!(from_small == fresh, "a shorter buffer changed the picture");

        let grey = image::GrayImage::from_fn(8, 6, |x, y| image::Luma([(x * 30 + y) as u8]));
        let mut png = Vec::new();
        grey.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        let rgb = decode_image_into(&png, &mut vec![1; 1000]).unwrap();
        assert_eq!(rgb.dimensions(), (8, 6));
        assert_eq!(rgb.get_pixel(7, 5).0, [215; 3]);
    }

    /// A frame that fails to decode leaves the buffer it was given for the next one: a stream
    /// of corrupt frames would otherwise free a frame's pixels and allocate them again each time.
    #[test]
    fn a_corrupt_frame_keeps_the_buffer_it_was_given() {
        let jpeg = sample();
        let mut pixels = decode_image(&jpeg).unwrap().into_raw();
        let (ptr, cap) = (pixels.as_ptr(), pixels.capacity());
        decode_image_into(&jpeg[..jpeg.len() / 2], &mut pixels).expect_err("truncated");
        let mut other = jpeg.clone();
        let sof = jpeg.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
        other[sof + 5] ^= 0x01; // the frame's height: 480 → 224
        decode_jpeg_sized_into(&other, &mut pixels, (640, 480)).expect_err("another size");
        assert_eq!((pixels.as_ptr(), pixels.capacity()), (ptr, cap));
        let img = decode_image_into(&jpeg, &mut pixels).unwrap();
        assert_eq!(
            img.as_raw().as_ptr(),
            ptr,
            "the next frame is decoded into it"
        );
        assert!(pixels.is_empty(), "the image took the buffer");
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
