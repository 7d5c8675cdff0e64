//! A captured camera frame: the unit that flows from a [`crate::camera::FrameSource`] into the
//! vision pipeline.

use std::time::SystemTime;

/// One decoded RGB frame and when it was captured.
#[derive(Debug, Clone)]
pub struct Frame {
    /// Monotonic per-source sequence number, starting at 0.
    pub seq: u64,
    /// Decoded pixels, 8-bit RGB.
    pub image: image::RgbImage,
    /// Wall-clock capture time (for event timestamps).
    pub captured: SystemTime,
    /// Optional per-frame metadata from a replay source (e.g. the expected emotion).
    pub meta: Option<serde_json::Value>,
}

impl Frame {
    pub fn width(&self) -> u32 {
        self.image.width()
    }
    pub fn height(&self) -> u32 {
        self.image.height()
    }
}
