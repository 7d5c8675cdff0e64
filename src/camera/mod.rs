//! Frame sources: a V4L2 camera or replayed images, behind one trait so the rest of the
//! pipeline (and the tests) never care which.

pub mod replay;
pub mod v4l2;

use thiserror::Error;

use crate::frame::Frame;

pub use replay::ReplaySource;
pub use v4l2::{list_devices, V4l2Source};

#[derive(Debug, Error)]
pub enum SourceError {
    /// The device went away (unplugged, ENODEV) or cannot be opened right now: the capture
    /// loop reopens it with backoff.
    #[error("camera unavailable: {0}")]
    Unavailable(String),
    /// One frame could not be decoded; the next one may be fine.
    #[error("corrupt frame: {0}")]
    Corrupt(String),
    /// A configuration problem that retrying cannot fix.
    #[error("{0}")]
    Fatal(String),
}

/// Something that yields frames, blocking until the next one is due.
pub trait FrameSource: Send {
    /// The next frame, its pixels in the allocation of `pixels` (a spent frame's, or empty),
    /// which the frame takes; after an error `pixels` keeps it for the next try. `Ok(None)`
    /// when a finite source has run out.
    fn next_frame_into(&mut self, pixels: &mut Vec<u8>) -> Result<Option<Frame>, SourceError>;
    /// The next frame, its pixels freshly allocated.
    fn next_frame(&mut self) -> Result<Option<Frame>, SourceError> {
        self.next_frame_into(&mut Vec::new())
    }
    /// Tries to reopen after [`SourceError::Unavailable`].
    fn reopen(&mut self) -> Result<(), SourceError>;
    /// For logs and stats, e.g. `v4l2:/dev/video0 640x480 MJPG`.
    fn describe(&self) -> String;
}
