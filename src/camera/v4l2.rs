//! A V4L2 camera (USB/UVC webcams) through the `v4l` crate: MJPEG or YUYV, decoded to RGB.
//!
//! Capture blocks in the kernel, so this runs on the capture thread. When the device goes away
//! (unplug: ENODEV on the next dequeue) we report [`SourceError::Unavailable`] and the capture
//! loop calls [`FrameSource::reopen`] with backoff until the camera is back.
//!
//! Tested here without hardware: the pixel conversions by unit tests, the device handling by the
//! error paths (no `/dev/video*` on CI). See docs/operations.md, "Testing on real hardware", for a vivid VM.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use v4l::buffer::Type;
use v4l::io::mmap::Stream as MmapStream;
use v4l::io::traits::CaptureStream;
use v4l::video::Capture;
use v4l::{Device, FourCC};

use super::{FrameSource, SourceError};
use crate::config::{CameraSettings, PixelFormat};
use crate::frame::Frame;

const MJPG: &[u8; 4] = b"MJPG";
const YUYV: &[u8; 4] = b"YUYV";
/// A dequeue that takes this long means the camera stalled; treat it like an unplug.
const CAPTURE_TIMEOUT: Duration = Duration::from_secs(5);

pub struct V4l2Source {
    settings: CameraSettings,
    active: Option<Active>,
    seq: u64,
}

struct Active {
    // Field order matters: the stream must be dropped (STREAMOFF, unmap) before the device.
    stream: MmapStream<'static>,
    _device: Device,
    format: Negotiated,
    /// The size of this stream's MJPEG frames: the first decoded frame's. Usually the
    /// negotiated size, but some cameras' JPEGs differ from it, consistently.
    mjpeg_size: Option<(u32, u32)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Negotiated {
    width: u32,
    height: u32,
    /// Bytes per row as the driver reports it (may exceed width * 2 for YUYV).
    stride: u32,
    mjpeg: bool,
}

impl V4l2Source {
    /// Opens the device now so that a wrong path or a busy camera fails at start-up.
    pub fn open(settings: &CameraSettings) -> Result<Self, SourceError> {
        let mut src = V4l2Source {
            settings: settings.clone(),
            active: None,
            seq: 0,
        };
        src.reopen()?;
        Ok(src)
    }

    fn start(settings: &CameraSettings) -> Result<Active, SourceError> {
        let path = &settings.device;
        let device = Device::with_path(path).map_err(|e| unavailable(path, "open", e))?;
        let wanted: Vec<&[u8; 4]> = match settings.pixel_format {
            PixelFormat::Auto => vec![MJPG, YUYV],
            PixelFormat::Mjpeg => vec![MJPG],
            PixelFormat::Yuyv => vec![YUYV],
        };
        let offered: Vec<FourCC> = device
            .enum_formats()
            .map_err(|e| unavailable(path, "list formats of", e))?
            .into_iter()
            .map(|d| d.fourcc)
            .collect();
        let fourcc = wanted
            .iter()
            .map(|w| FourCC::new(w))
            .find(|w| offered.contains(w))
            .ok_or_else(|| {
                SourceError::Fatal(format!(
                    "camera.device {}: offers {} but camera.pixel_format = {:?} needs {}",
                    path.display(),
                    offered
                        .iter()
                        .map(|f| f.to_string())
                        .collect::<Vec<_>>()
                        .join(", "),
                    settings.pixel_format,
                    wanted
                        .iter()
                        .map(|w| String::from_utf8_lossy(*w).into_owned())
                        .collect::<Vec<_>>()
                        .join(" or ")
                ))
            })?;
        let mut fmt = device.format().map_err(|e| unavailable(path, "query", e))?;
        fmt.width = settings.width;
        fmt.height = settings.height;
        fmt.fourcc = fourcc;
        // The driver picks the nearest size it supports; we use what it says, not what we asked.
        let fmt = device
            .set_format(&fmt)
            .map_err(|e| unavailable(path, "set format on", e))?;
        if fmt.fourcc != fourcc {
            return Err(SourceError::Fatal(format!(
                "camera.device {}: driver refused {fourcc} and chose {}",
                path.display(),
                fmt.fourcc
            )));
        }
        let _ = device.set_params(&v4l::video::capture::Parameters::with_fps(settings.fps));
        let mut stream = MmapStream::with_buffers(&device, Type::VideoCapture, 4)
            .map_err(|e| unavailable(path, "map buffers of", e))?;
        stream.set_timeout(CAPTURE_TIMEOUT);
        let format = Negotiated {
            width: fmt.width,
            height: fmt.height,
            stride: fmt.stride,
            mjpeg: fourcc == FourCC::new(MJPG),
        };
        log::info!(
            "camera {} streaming {}x{} {} (stride {})",
            path.display(),
            format.width,
            format.height,
            fourcc,
            format.stride
        );
        Ok(Active {
            stream,
            _device: device,
            format,
            mjpeg_size: None,
        })
    }
}

fn unavailable(path: &Path, what: &str, e: std::io::Error) -> SourceError {
    SourceError::Unavailable(format!(
        "cannot {what} camera.device {}: {e}",
        path.display()
    ))
}

impl FrameSource for V4l2Source {
    fn next_frame_into(&mut self, pixels: &mut Vec<u8>) -> Result<Option<Frame>, SourceError> {
        let Some(active) = self.active.as_mut() else {
            return Err(SourceError::Unavailable("camera closed".into()));
        };
        let (buf, _meta) = match active.stream.next() {
            Ok(x) => x,
            Err(e) => {
                let msg = unavailable(&self.settings.device, "read from", e);
                // Drop the stream and the file handle now so the device node can go away.
                self.active = None;
                return Err(msg);
            }
        };
        let f = active.format;
        let image = if f.mjpeg {
            let image = decode_mjpeg(buf, pixels, active.mjpeg_size)?;
            if active.mjpeg_size.is_none() && image.dimensions() != (f.width, f.height) {
                log::warn!(
                    "camera {}: its MJPEG frames are {}x{}, not the negotiated {}x{}",
                    self.settings.device.display(),
                    image.width(),
                    image.height(),
                    f.width,
                    f.height
                );
            }
            active.mjpeg_size = Some(image.dimensions());
            image
        } else {
            yuyv_to_rgb_into(buf, f.width, f.height, f.stride, pixels)?
        };
        let seq = self.seq;
        self.seq += 1;
        Ok(Some(Frame {
            seq,
            image,
            captured: SystemTime::now(),
        }))
    }

    fn reopen(&mut self) -> Result<(), SourceError> {
        self.active = None;
        self.active = Some(Self::start(&self.settings)?);
        Ok(())
    }

    fn describe(&self) -> String {
        match &self.active {
            Some(a) => format!(
                "v4l2:{} {}x{} {}",
                self.settings.device.display(),
                a.format.width,
                a.format.height,
                if a.format.mjpeg { "MJPG" } else { "YUYV" }
            ),
            None => format!("v4l2:{} (closed)", self.settings.device.display()),
        }
    }
}

/// One MJPEG frame; a cut-off one (dropped USB packets) is corrupt, and so is one whose header
/// claims another `size` than the stream's (once its first frame has set it), see
/// [`crate::frame::decode_jpeg_sized_into`].
fn decode_mjpeg(
    buf: &[u8],
    pixels: &mut Vec<u8>,
    size: Option<(u32, u32)>,
) -> Result<image::RgbImage, SourceError> {
    match size {
        Some(size) => crate::frame::decode_jpeg_sized_into(buf, pixels, size),
        None => crate::frame::decode_jpeg_into(buf, pixels),
    }
    .map_err(|e| SourceError::Corrupt(format!("MJPEG frame of {} bytes: {e}", buf.len())))
}

/// YUYV 4:2:2 (Y0 U Y1 V per two pixels, BT.601 limited range) to RGB, honouring the row
/// stride the driver reported.
pub fn yuyv_to_rgb(
    buf: &[u8],
    width: u32,
    height: u32,
    stride: u32,
) -> Result<image::RgbImage, SourceError> {
    yuyv_to_rgb_into(buf, width, height, stride, &mut Vec::new())
}

/// [`yuyv_to_rgb`] into the allocation of `pixels`, as [`crate::frame::decode_image_into`].
fn yuyv_to_rgb_into(
    buf: &[u8],
    width: u32,
    height: u32,
    stride: u32,
    pixels: &mut Vec<u8>,
) -> Result<image::RgbImage, SourceError> {
    let (w, h) = (width as usize, height as usize);
    let stride = (stride as usize).max(w * 2);
    if w == 0 || h == 0 || w % 2 != 0 || buf.len() < stride * (h - 1) + w * 2 {
        return Err(SourceError::Corrupt(format!(
            "YUYV frame of {} bytes is too short for {width}x{height} (stride {stride})",
            buf.len()
        )));
    }
    let mut out = std::mem::take(pixels);
    // Every byte is written below: a buffer of the right length is not cleared first.
    out.resize(w * h * 3, 0);
    for (y, row_out) in out.chunks_exact_mut(w * 3).enumerate() {
        let row = &buf[y * stride..y * stride + w * 2];
        for (px, o) in row.chunks_exact(4).zip(row_out.chunks_exact_mut(6)) {
            let (u, v) = (px[1] as i32 - 128, px[3] as i32 - 128);
            for (k, luma) in [px[0], px[2]].into_iter().enumerate() {
                let c = (luma as i32 - 16).max(0) * 298;
                let r = (c + 409 * v + 128) >> 8;
                let g = (c - 100 * u - 208 * v + 128) >> 8;
                let b = (c + 516 * u + 128) >> 8;
                o[k * 3] = r.clamp(0, 255) as u8;
                o[k * 3 + 1] = g.clamp(0, 255) as u8;
                o[k * 3 + 2] = b.clamp(0, 255) as u8;
            }
        }
    }
    Ok(image::RgbImage::from_raw(width, height, out).expect("buffer sized for the image"))
}

/// One V4L2 device for `emonet devices`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DeviceInfo {
    pub path: PathBuf,
    pub name: String,
    /// `FOURCC WxH, WxH, …` per format.
    pub formats: Vec<String>,
}

/// Every `/dev/video*` node with its capture formats and discrete frame sizes.
pub fn list_devices() -> Vec<DeviceInfo> {
    let mut out = Vec::new();
    for node in v4l::context::enum_devices() {
        let path = node.path().to_path_buf();
        let name = node.name().unwrap_or_else(|| "?".into());
        let formats = match Device::with_path(&path) {
            Ok(dev) => dev
                .enum_formats()
                .map(|fs| {
                    fs.into_iter()
                        .map(|f| {
                            let sizes: Vec<String> = dev
                                .enum_framesizes(f.fourcc)
                                .unwrap_or_default()
                                .into_iter()
                                .flat_map(|s| s.size.to_discrete())
                                .map(|d| format!("{}x{}", d.width, d.height))
                                .collect();
                            format!("{} ({}) {}", f.fourcc, f.description, sizes.join(", "))
                        })
                        .collect()
                })
                .unwrap_or_else(|e| vec![format!("cannot list formats: {e}")]),
            Err(e) => vec![format!("cannot open: {e}")],
        };
        out.push(DeviceInfo {
            path,
            name,
            formats,
        });
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yuyv_grey_white_and_colour() {
        // Two pixels per 4 bytes. Row 0: black + white; row 1: pure-ish red; padding bytes at
        // the end of each row (stride 6 for width 2) must be ignored.
        let buf = [
            16, 128, 235, 128, 0xEE, 0xEE, //
            81, 90, 81, 240, 0xEE, 0xEE,
        ];
        let img = yuyv_to_rgb(&buf, 2, 2, 6).unwrap();
        assert_eq!(img.get_pixel(0, 0).0, [0, 0, 0]);
        assert_eq!(img.get_pixel(1, 0).0, [255, 255, 255]);
        let [r, g, b] = img.get_pixel(0, 1).0;
        assert!(r > 240 && g < 10 && b < 10, "{r} {g} {b}");
        // Into a spent frame's buffer, longer and full of other pixels: the same picture.
        let reused = yuyv_to_rgb_into(&buf, 2, 2, 6, &mut vec![0xAB; 50]).unwrap();
        assert!(reused == img);
    }

    #[test]
    fn short_yuyv_buffer_is_corrupt_not_a_panic() {
        let err = yuyv_to_rgb(&[0; 7], 2, 2, 4).unwrap_err();
        assert!(matches!(err, SourceError::Corrupt(_)), "{err}");
    }

    #[test]
    fn truncated_mjpeg_is_corrupt() {
        let err = decode_mjpeg(&[0xFF, 0xD8, 0xFF], &mut Vec::new(), None).unwrap_err();
        assert!(matches!(err, SourceError::Corrupt(_)), "{err}");
    }

    /// A damaged header can claim another size (one byte of the sample frame's made it 761×480);
    /// once the stream's first frame has set its size, such a frame is corrupt.
    #[test]
    fn mjpeg_of_another_size_than_the_streams_is_corrupt() {
        let frame = image::RgbImage::from_pixel(16, 8, image::Rgb([90, 120, 200]));
        let mut jpeg = Vec::new();
        frame
            .write_to(
                &mut std::io::Cursor::new(&mut jpeg),
                image::ImageFormat::Jpeg,
            )
            .unwrap();
        let first = decode_mjpeg(&jpeg, &mut Vec::new(), None).unwrap();
        assert_eq!(first.dimensions(), (16, 8));
        let img = decode_mjpeg(&jpeg, &mut Vec::new(), Some((16, 8))).unwrap();
        assert_eq!(img.dimensions(), (16, 8));
        let err = decode_mjpeg(&jpeg, &mut Vec::new(), Some((640, 480))).unwrap_err();
        assert!(matches!(err, SourceError::Corrupt(_)), "{err}");
        assert!(err.to_string().contains("16x8"), "{err}");
        assert!(err.to_string().contains("640x480"), "{err}");
    }

    #[test]
    fn missing_device_is_reported_with_its_path() {
        let settings = CameraSettings {
            device: "/dev/video-does-not-exist".into(),
            ..CameraSettings::default()
        };
        let err = V4l2Source::open(&settings).err().expect("no such device");
        assert!(
            err.to_string().contains("/dev/video-does-not-exist"),
            "{err}"
        );
    }

    #[test]
    fn listing_devices_never_fails() {
        let devices = list_devices();
        if devices.is_empty() {
            eprintln!("no /dev/video* here: listing returns empty, as `emonet devices` reports");
        }
        for d in devices {
            assert!(d.path.starts_with("/dev"));
        }
    }
}
