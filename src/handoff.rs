//! Newest-frame-wins hand-off between the capture thread and the inference worker.
//!
//! A camera does not wait for us: when inference is slower than capture, queuing frames would
//! only add latency and memory. So the slot holds one frame; a new frame replaces an unclaimed
//! one, and the replaced frame is counted as dropped.

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
        if slot.frame.replace(frame).is_some() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
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
