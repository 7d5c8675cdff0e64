//! Newest-frame-wins hand-off between the capture thread and the inference worker.
//!
//! A camera does not wait for us: when inference is slower than capture, queuing frames would
//! only add latency and memory. So the slot holds one frame; a new frame replaces an unclaimed
//! one, and the replaced frame is counted as dropped.
//!
//! Spent frames' pixel buffers come back here ([`LatestFrame::recycle`]) for the capture thread
//! to decode the next frames into ([`LatestFrame::spare_pixels`]). Allocated and freed afresh,
//! a 640×480 frame's 900 KB went to glibc and back every frame, and glibc trimmed the capture
//! thread's heap and grew it again as frames came and went: the daemon's RSS swung between two
//! levels 1.8 MB apart from one second to the next. Recycled, no frame allocates once the
//! first three exist (one being decoded, one waiting here, one being classified).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use crate::frame::Frame;

#[derive(Default)]
pub struct LatestFrame {
    slot: Mutex<Slot>,
    ready: Condvar,
    dropped: AtomicU64,
}

#[derive(Default)]
struct Slot {
    frame: Option<Frame>,
    closed: bool,
    /// Pixel buffers of spent frames, for the next ones.
    spent: Vec<Vec<u8>>,
}

/// Spent buffers kept: as many as can be in flight at once (decoding, waiting, classifying).
const KEEP_SPENT: usize = 3;

impl Slot {
    fn keep(&mut self, frame: Frame) {
        if self.spent.len() < KEEP_SPENT {
            self.spent.push(frame.image.into_raw());
        }
    }
}

pub enum Take {
    Frame(Frame),
    /// Nothing arrived within the timeout (the worker uses this to stay alive for the watchdog).
    Timeout,
    /// The producer is gone and the slot is empty.
    Closed,
}

impl LatestFrame {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn put(&self, frame: Frame) {
        let mut slot = self.slot.lock().expect("hand-off lock");
        if let Some(old) = slot.frame.replace(frame) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            slot.keep(old);
        }
        self.ready.notify_one();
    }

    pub fn take(&self, timeout: Duration) -> Take {
        let slot = self.slot.lock().expect("hand-off lock");
        let (mut slot, _) = self
            .ready
            .wait_timeout_while(slot, timeout, |s| s.frame.is_none() && !s.closed)
            .expect("hand-off lock");
        match slot.frame.take() {
            Some(f) => Take::Frame(f),
            None if slot.closed => Take::Closed,
            None => Take::Timeout,
        }
    }

    /// Hands a processed frame's pixel buffer back for [`LatestFrame::spare_pixels`].
    pub fn recycle(&self, frame: Frame) {
        self.slot.lock().expect("hand-off lock").keep(frame);
    }

    /// A spent frame's pixel buffer to decode the next frame into; empty if none is spare.
    pub fn spare_pixels(&self) -> Vec<u8> {
        let mut slot = self.slot.lock().expect("hand-off lock");
        slot.spent.pop().unwrap_or_default()
    }

    /// No more frames will come; a waiting consumer wakes up.
    pub fn close(&self) {
        self.slot.lock().expect("hand-off lock").closed = true;
        self.ready.notify_all();
    }

    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(seq: u64) -> Frame {
        Frame {
            seq,
            image: image::RgbImage::new(1, 1),
            captured: std::time::SystemTime::now(),
        }
    }

    #[test]
    fn newest_wins_and_drops_are_counted() {
        let h = LatestFrame::new();
        h.put(frame(1));
        h.put(frame(2));
        h.put(frame(3));
        match h.take(Duration::from_millis(1)) {
            Take::Frame(f) => assert_eq!(f.seq, 3),
            _ => panic!("expected a frame"),
        }
        assert_eq!(h.dropped(), 2);
        assert!(matches!(h.take(Duration::from_millis(1)), Take::Timeout));
        h.put(frame(4));
        h.close();
        // A frame already handed over is still delivered after close.
        assert!(matches!(h.take(Duration::from_millis(1)), Take::Frame(_)));
        assert!(matches!(h.take(Duration::from_millis(1)), Take::Closed));
    }

    /// Replaced and processed frames' buffers come back, up to `KEEP_SPENT` of them.
    #[test]
    fn spent_pixels_come_back_for_the_next_frames() {
        let h = LatestFrame::new();
        assert!(h.spare_pixels().is_empty(), "nothing spent yet");
        h.put(frame(1));
        h.put(frame(2));
        let replaced = h.spare_pixels();
        assert_eq!(replaced.len(), 3, "the replaced frame's 1×1 RGB pixels");
        let Take::Frame(f) = h.take(Duration::from_millis(1)) else {
            panic!("expected a frame");
        };
        let ptr = f.image.as_raw().as_ptr();
        h.recycle(f);
        let spare = h.spare_pixels();
        assert_eq!(spare.as_ptr(), ptr, "the processed frame's own buffer");
        for seq in 0..5 {
            h.recycle(frame(seq));
        }
        let kept = std::iter::from_fn(|| Some(h.spare_pixels()))
            .take_while(|p| !p.is_empty())
            .count();
        assert_eq!(kept, KEEP_SPENT);
    }

    #[test]
    fn wakes_a_waiting_consumer() {
        let h = std::sync::Arc::new(LatestFrame::new());
        let h2 = h.clone();
        let t =
            std::thread::spawn(move || matches!(h2.take(Duration::from_secs(10)), Take::Frame(_)));
        std::thread::sleep(Duration::from_millis(20));
        h.put(frame(1));
        assert!(t.join().unwrap());
    }
}
