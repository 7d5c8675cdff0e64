//! The capture thread: frames from the source into the newest-frame-wins hand-off, reopening a
//! source that went away with exponential backoff. A [`SourceError::Fatal`] (a configuration
//! problem retrying cannot fix) ends capture and is kept in the counters, so the daemon stops
//! with it instead of retrying forever.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::camera::{FrameSource, SourceError};
use crate::config::CameraSettings;
use crate::handoff::LatestFrame;
use crate::ratelimit::{held_back, LogLimiter};

use super::stats::Counters;
use super::Shutdown;

pub fn capture_loop(
    mut source: Box<dyn FrameSource>,
    handoff: &LatestFrame,
    counters: &Counters,
    stop: &Shutdown,
    cam: &CameraSettings,
) {
    counters.set_camera("streaming");
    // A flood of bad frames (a failing camera, a folder of broken files at full speed) is
    // counted in full but logged a few at a time.
    let mut corrupt_log = LogLimiter::new(5, Duration::from_secs(10));
    // The buffer the next frame is decoded into: a spent frame's, or the one a corrupt frame
    // left behind (a stream of corrupt frames neither frees nor allocates pixels).
    let mut pixels = Vec::new();
    while !stop.is_triggered() {
        if pixels.capacity() == 0 {
            pixels = handoff.spare_pixels();
        }
        let error = match source.next_frame_into(&mut pixels) {
            Ok(Some(frame)) => {
                counters.captured.fetch_add(1, Ordering::Relaxed);
                handoff.put(frame);
                continue;
            }
            Ok(None) => {
                counters.set_camera("ended");
                break;
            }
            Err(SourceError::Corrupt(msg)) => {
                counters.corrupt.fetch_add(1, Ordering::Relaxed);
                if let Some(n) = corrupt_log.allow(Instant::now()) {
                    let more = held_back(n, "corrupt frames");
                    log::warn!("skipping corrupt frame: {msg}{more}");
                }
                continue;
            }
            Err(SourceError::Unavailable(msg)) => {
                log::warn!("{msg}; reopening {}", source.describe());
                counters.set_camera("reconnecting");
                match reopen(source.as_mut(), counters, stop, cam) {
                    Ok(()) => continue,
                    Err(e) => e,
                }
            }
            Err(e @ SourceError::Fatal(_)) => e,
        };
        log::error!("{}: {error}", source.describe());
        counters.set_fatal(error.to_string());
        break;
    }
    handoff.close();
}

/// Reopens `source` until it works, `stop` is triggered (Ok as well) or it fails fatally.
fn reopen(
    source: &mut dyn FrameSource,
    counters: &Counters,
    stop: &Shutdown,
    cam: &CameraSettings,
) -> Result<(), SourceError> {
    let max = Duration::from_millis(cam.reconnect_max_ms.max(cam.reconnect_initial_ms));
    let mut backoff = Duration::from_millis(cam.reconnect_initial_ms.max(10));
    while !stop.is_triggered() {
        std::thread::sleep(backoff);
        match source.reopen() {
            Ok(()) => {
                log::info!("camera back: {}", source.describe());
                counters.set_camera("streaming");
                return Ok(());
            }
            Err(e @ SourceError::Fatal(_)) => return Err(e),
            Err(e) => {
                log::debug!("reopen failed: {e}; next try in {backoff:?}");
                backoff = (backoff * 2).min(max);
            }
        }
    }
    Ok(())
}
