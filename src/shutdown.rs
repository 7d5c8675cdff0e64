//! One shutdown signal for threads and async tasks alike, after tokio's mini-redis
//! (`Shutdown`): cloned into every stage, triggered once (by a signal, the end of the frames or a
//! test), observed by polling ([`Shutdown::is_triggered`], for the capture and inference threads)
//! or awaiting ([`Shutdown::triggered`], for the async tasks).

use std::sync::Arc;

use tokio::sync::watch;

#[derive(Debug, Clone)]
pub struct Shutdown {
    tx: Arc<watch::Sender<bool>>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl Shutdown {
    pub fn new() -> Self {
        Shutdown {
            tx: Arc::new(watch::Sender::new(false)),
        }
    }

    /// Asks every holder to stop; idempotent.
    pub fn trigger(&self) {
        self.tx.send_replace(true);
    }

    pub fn is_triggered(&self) -> bool {
        *self.tx.borrow()
    }

    /// Completes once [`Shutdown::trigger`] has been called (at once if it already was).
    pub async fn triggered(&self) {
        let mut rx = self.tx.subscribe();
        // The sender lives in `self`, so the channel cannot close while we wait.
        let _ = rx.wait_for(|stop| *stop).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_see_the_trigger_and_waiters_wake() {
        let s = Shutdown::new();
        let c = s.clone();
        assert!(!c.is_triggered());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let waiter = rt.spawn({
            let c = c.clone();
            async move { c.triggered().await }
        });
        s.trigger();
        rt.block_on(waiter).unwrap();
        assert!(c.is_triggered());
        // a late waiter returns at once
        rt.block_on(c.triggered());
    }
}
