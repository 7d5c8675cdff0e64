//! The bounded queue between the inference worker (producer) and the publisher task
//! (consumer): events oldest-dropped-and-counted when full, so a dead broker never grows memory;
//! state and stats as "latest value" slots, since after an outage only the newest matters.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use crate::event::MqttCounts;

/// Shared between the inference worker (producer) and the publisher task (consumer).
pub struct Outbox {
    capacity: usize,
    inner: Mutex<OutboxInner>,
    pub(super) wake: Notify,
    pub(super) dropped: AtomicU64,
    pub(super) published: AtomicU64,
    pub(super) reconnects: AtomicU64,
    pub(super) connected: AtomicBool,
}

#[derive(Default)]
struct OutboxInner {
    events: VecDeque<Vec<u8>>,
    /// Newest retained state not yet published (cleared once handed over).
    state_dirty: bool,
    state: Option<Vec<u8>>,
    stats: Option<Vec<u8>>,
}

impl Outbox {
    pub fn new(capacity: usize) -> Arc<Self> {
        Arc::new(Outbox {
            capacity: capacity.max(1),
            inner: Mutex::new(OutboxInner::default()),
            wake: Notify::new(),
            dropped: AtomicU64::new(0),
            published: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            connected: AtomicBool::new(false),
        })
    }

    /// Queues one event payload; when full, the oldest queued event is dropped and counted.
    pub fn push_event(&self, payload: Vec<u8>) {
        {
            let mut inner = self.inner.lock().expect("outbox lock");
            if inner.events.len() >= self.capacity {
                inner.events.pop_front();
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
            inner.events.push_back(payload);
        }
        self.wake.notify_one();
    }

    /// Replaces the retained state snapshot.
    pub fn set_state(&self, payload: Vec<u8>) {
        {
            let mut inner = self.inner.lock().expect("outbox lock");
            inner.state = Some(payload);
            inner.state_dirty = true;
        }
        self.wake.notify_one();
    }

    pub fn set_stats(&self, payload: Vec<u8>) {
        self.inner.lock().expect("outbox lock").stats = Some(payload);
        self.wake.notify_one();
    }

    pub fn counts(&self) -> MqttCounts {
        MqttCounts {
            connected: self.connected.load(Ordering::Relaxed),
            queued: self.inner.lock().expect("outbox lock").events.len(),
            dropped: self.dropped.load(Ordering::Relaxed),
            published: self.published.load(Ordering::Relaxed),
            reconnects: self.reconnects.load(Ordering::Relaxed),
        }
    }

    pub(super) fn pop_event(&self) -> Option<Vec<u8>> {
        self.inner.lock().expect("outbox lock").events.pop_front()
    }

    /// Puts unacknowledged events back in front, in their original order.
    pub(super) fn requeue_front(&self, events: Vec<Vec<u8>>) {
        let mut inner = self.inner.lock().expect("outbox lock");
        for e in events.into_iter().rev() {
            inner.events.push_front(e);
        }
        while inner.events.len() > self.capacity {
            inner.events.pop_back();
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(super) fn take_state(&self, force: bool) -> Option<Vec<u8>> {
        let mut inner = self.inner.lock().expect("outbox lock");
        if inner.state_dirty || force {
            inner.state_dirty = false;
            inner.state.clone()
        } else {
            None
        }
    }

    pub(super) fn take_stats(&self) -> Option<Vec<u8>> {
        self.inner.lock().expect("outbox lock").stats.take()
    }

    pub(super) fn is_idle(&self) -> bool {
        let inner = self.inner.lock().expect("outbox lock");
        inner.events.is_empty() && !inner.state_dirty
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outbox_drops_oldest_and_counts() {
        let ob = Outbox::new(2);
        ob.push_event(b"1".to_vec());
        ob.push_event(b"2".to_vec());
        ob.push_event(b"3".to_vec());
        let c = ob.counts();
        assert_eq!((c.queued, c.dropped), (2, 1));
        assert_eq!(ob.pop_event().unwrap(), b"2");
        ob.requeue_front(vec![b"0".to_vec(), b"1".to_vec()]);
        // Capacity 2: requeued (older) events go first, the newest queued one is dropped.
        assert_eq!(ob.pop_event().unwrap(), b"0");
        assert_eq!(ob.pop_event().unwrap(), b"1");
        assert!(ob.pop_event().is_none());
        assert_eq!(ob.counts().dropped, 2);
    }

    #[test]
    fn state_slot_keeps_latest_only() {
        let ob = Outbox::new(4);
        ob.set_state(b"a".to_vec());
        ob.set_state(b"b".to_vec());
        assert_eq!(ob.take_state(false).unwrap(), b"b");
        assert!(ob.take_state(false).is_none());
        assert_eq!(ob.take_state(true).unwrap(), b"b");
    }
}
