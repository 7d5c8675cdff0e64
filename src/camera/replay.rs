//! Replays recorded frames (one image or a folder of them) at a fixed rate, as if they came from
//! a camera. Used by the demo, the tests and the benchmarks.
//!
//! A file that cannot be decoded is a corrupt frame (skipped, counted); a file that cannot be
//! read any more makes the source unavailable, and reopening it lists the folder again. A folder
//! that is gone or holds no images is [`SourceError::Fatal`]: retrying cannot fix it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use super::{FrameSource, SourceError};
use crate::frame::Frame;

pub struct ReplaySource {
    root: PathBuf,
    files: Vec<PathBuf>,
    next: usize,
    looped: bool,
    period: Option<Duration>,
    next_due: Option<Instant>,
    seq: u64,
}

const IMAGE_EXTENSIONS: &[&str] = &["png", "jpg", "jpeg"];

impl ReplaySource {
    /// `fps` = 0 replays as fast as the consumer takes frames.
    pub fn open(path: &Path, fps: f32, looped: bool) -> Result<Self, SourceError> {
        let files = list_images(path)?;
        Ok(ReplaySource {
            root: path.to_path_buf(),
            files,
            next: 0,
            looped,
            period: (fps > 0.0).then(|| Duration::from_secs_f32(1.0 / fps)),
            next_due: None,
            seq: 0,
        })
    }

    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }
}

/// The images a replay path stands for, sorted by name.
pub fn list_images(path: &Path) -> Result<Vec<PathBuf>, SourceError> {
    let meta = std::fs::metadata(path)
        .map_err(|e| SourceError::Fatal(format!("replay.path {}: {e}", path.display())))?;
    if meta.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(|e| SourceError::Fatal(format!("replay.path {}: {e}", path.display())))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
        })
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(SourceError::Fatal(format!(
            "replay.path {}: no .png/.jpg images in this folder",
            path.display()
        )));
    }
    Ok(files)
}

impl FrameSource for ReplaySource {
    fn next_frame_into(&mut self, pixels: &mut Vec<u8>) -> Result<Option<Frame>, SourceError> {
        if self.next >= self.files.len() {
            if !self.looped {
                return Ok(None);
            }
            self.next = 0;
        }
        // Pace like a camera: the frame is "captured" when it is due, not when asked for.
        if let Some(period) = self.period {
            let now = Instant::now();
            let due = self.next_due.unwrap_or(now);
            if due > now {
                std::thread::sleep(due - now);
            }
            // A slow consumer does not earn a burst of catch-up frames.
            self.next_due = Some(due.max(now) + period);
        }
        let path = self.files[self.next].clone();
        self.next += 1;
        let seq = self.seq;
        self.seq += 1;
        let bytes = std::fs::read(&path).map_err(|e| {
            SourceError::Unavailable(format!("replay.path {}: {e}", path.display()))
        })?;
        let image = crate::frame::decode_image_into(&bytes, pixels)
            .map_err(|e| SourceError::Corrupt(format!("{}: {e}", path.display())))?;
        Ok(Some(Frame {
            seq,
            image,
            captured: SystemTime::now(),
        }))
    }

    fn reopen(&mut self) -> Result<(), SourceError> {
        self.files = list_images(&self.root)?;
        self.next = 0;
        Ok(())
    }

    fn describe(&self) -> String {
        format!(
            "replay:{} ({} images)",
            self.root.display(),
            self.files.len()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(dir: &Path, name: &str, shade: u8) {
        image::RgbImage::from_pixel(8, 6, image::Rgb([shade; 3]))
            .save(dir.join(name))
            .unwrap();
    }

    #[test]
    fn plays_folder_in_order_once() {
        let dir = tempfile::tempdir().unwrap();
        png(dir.path(), "b.png", 2);
        png(dir.path(), "a.png", 1);
        std::fs::write(dir.path().join("a.json"), r#"{"expect":"happy"}"#).unwrap();
        std::fs::write(dir.path().join("notes.txt"), "ignored").unwrap();
        let mut src = ReplaySource::open(dir.path(), 0.0, false).unwrap();
        let f0 = src.next_frame().unwrap().unwrap();
        assert_eq!(f0.image.get_pixel(0, 0).0, [1; 3]);
        let f1 = src.next_frame().unwrap().unwrap();
        assert_eq!((f1.seq, f1.image.get_pixel(0, 0).0), (1, [2; 3]));
        assert!(src.next_frame().unwrap().is_none());
    }

    #[test]
    fn a_vanished_folder_is_unavailable_then_fatal() {
        let dir = tempfile::tempdir().unwrap();
        png(dir.path(), "a.png", 1);
        let frames = dir.path().join("frames");
        std::fs::create_dir(&frames).unwrap();
        png(&frames, "a.png", 1);
        let mut src = ReplaySource::open(&frames, 0.0, true).unwrap();
        src.next_frame().unwrap().unwrap();
        std::fs::remove_dir_all(&frames).unwrap();
        assert!(matches!(src.next_frame(), Err(SourceError::Unavailable(_))));
        match src.reopen() {
            Err(SourceError::Fatal(msg)) => assert!(msg.contains("replay.path"), "{msg}"),
            other => panic!("expected a fatal error, got {other:?}"),
        }
    }

    #[test]
    fn loops_and_reports_corrupt_frames_without_stopping() {
        let dir = tempfile::tempdir().unwrap();
        png(dir.path(), "a.png", 1);
        std::fs::write(dir.path().join("b.png"), b"not a png").unwrap();
        let mut src = ReplaySource::open(dir.path(), 0.0, true).unwrap();
        assert!(src.next_frame().unwrap().is_some());
        match src.next_frame() {
            Err(SourceError::Corrupt(msg)) => assert!(msg.contains("b.png"), "{msg}"),
            other => panic!("expected a corrupt frame, got {other:?}"),
        }
        let again = src.next_frame().unwrap().unwrap();
        assert_eq!(again.seq, 2);
    }

    #[test]
    fn paces_at_the_configured_rate() {
        let dir = tempfile::tempdir().unwrap();
        png(dir.path(), "a.png", 1);
        let mut src = ReplaySource::open(dir.path(), 50.0, true).unwrap();
        let t0 = Instant::now();
        for _ in 0..6 {
            src.next_frame().unwrap().unwrap();
        }
        // 5 periods of 20 ms must have elapsed at least (a lower bound, not a timing assertion
        // on speed).
        assert!(t0.elapsed() >= Duration::from_millis(95));
    }

    #[test]
    fn empty_or_missing_folder_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = ReplaySource::open(dir.path(), 1.0, true).err().unwrap();
        assert!(err.to_string().contains("no .png/.jpg"), "{err}");
        let err = ReplaySource::open(&dir.path().join("nope"), 1.0, true)
            .err()
            .unwrap();
        assert!(err.to_string().contains("nope"), "{err}");
    }
}
