//! Keeping the journal readable when the same thing goes wrong over and over: a flood of
//! corrupt frames, a broker that stays unreachable.

use std::time::{Duration, Instant};

/// A token bucket for log lines: `burst` lines at once, then one per `interval`; the lines held
/// back in between are counted and handed to the next line that is let through.
#[derive(Debug)]
pub struct LogLimiter {
    burst: u32,
    interval: Duration,
    tokens: u32,
    refilled: Option<Instant>,
    suppressed: u64,
}

impl LogLimiter {
    pub fn new(burst: u32, interval: Duration) -> Self {
        LogLimiter {
            burst: burst.max(1),
            interval,
            tokens: burst.max(1),
            refilled: None,
            suppressed: 0,
        }
    }

    /// `Some(n)` when a line may be logged now, `n` being how many were held back since the
    /// last one; `None` when this one is held back (and counted).
    pub fn allow(&mut self, now: Instant) -> Option<u64> {
        let since = *self.refilled.get_or_insert(now);
        if self.interval > Duration::ZERO {
            let earned =
                (now.saturating_duration_since(since).as_nanos() / self.interval.as_nanos()) as u64;
            if earned > 0 {
                self.tokens = (self.tokens as u64 + earned).min(self.burst as u64) as u32;
                self.refilled = Some(since + self.interval * earned as u32);
            }
        }
        if self.tokens == 0 {
            self.suppressed += 1;
            return None;
        }
        self.tokens -= 1;
        Some(std::mem::take(&mut self.suppressed))
    }
}

/// `", N more not logged"` for a count of held-back lines, empty for none.
pub fn held_back(n: u64, what: &str) -> String {
    if n == 0 {
        String::new()
    } else {
        format!(" ({n} more {what} since the last report)")
    }
}

/// Connection state for the journal: each change of state or cause is logged once (a failure
/// at warn level, a connection at info); a failure that persists is repeated once per
/// `remind` interval with the number of attempts, not on every retry.
#[derive(Debug)]
pub struct ConnectionLog {
    remind: Duration,
    last: Option<String>,
    since: Option<Instant>,
    reminded: Option<Instant>,
    attempts: u64,
}

impl ConnectionLog {
    pub fn new(remind: Duration) -> Self {
        ConnectionLog {
            remind,
            last: None,
            since: None,
            reminded: None,
            attempts: 0,
        }
    }

    /// One failed attempt (or a lost connection), described by `line`.
    pub fn failed(&mut self, line: &str, now: Instant) {
        self.attempts += 1;
        let since = *self.since.get_or_insert(now);
        if self.last.as_deref() != Some(line) {
            log::warn!("{line}");
            self.last = Some(line.to_string());
            self.reminded = Some(now);
        } else if self
            .reminded
            .is_some_and(|t| now.saturating_duration_since(t) >= self.remind)
        {
            let secs = now.saturating_duration_since(since).as_secs();
            log::warn!(
                "{line} (still failing: {} attempts in {secs} s)",
                self.attempts
            );
            self.reminded = Some(now);
        } else {
            log::debug!("{line} (attempt {})", self.attempts);
        }
    }

    /// Connected, described by `line`; with the failures before it, if any.
    pub fn connected(&mut self, line: &str, now: Instant) {
        match self.since.take() {
            Some(since) => log::info!(
                "{line} after {} failed attempts in {} s",
                self.attempts,
                now.saturating_duration_since(since).as_secs()
            ),
            None => log::info!("{line}"),
        }
        self.last = None;
        self.reminded = None;
        self.attempts = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_one_per_interval_with_the_count() {
        let t0 = Instant::now();
        let mut l = LogLimiter::new(3, Duration::from_secs(10));
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        assert_eq!(l.allow(at(0)), Some(0));
        assert_eq!(l.allow(at(1)), Some(0));
        assert_eq!(l.allow(at(2)), Some(0));
        for i in 0..1000 {
            assert_eq!(l.allow(at(3 + i)), None);
        }
        assert_eq!(l.allow(at(10_000)), Some(1000));
        assert_eq!(l.allow(at(10_001)), None);
        assert_eq!(l.allow(at(19_999)), None);
        assert_eq!(l.allow(at(20_000)), Some(2));
        // A long quiet spell refills the burst, no more.
        assert_eq!(l.allow(at(1_000_000)), Some(0));
        assert_eq!(l.allow(at(1_000_001)), Some(0));
        assert_eq!(l.allow(at(1_000_002)), Some(0));
        assert_eq!(l.allow(at(1_000_003)), None);
    }

    #[test]
    fn held_back_wording() {
        assert_eq!(held_back(0, "x"), "");
        assert_eq!(
            held_back(5, "corrupt frames"),
            " (5 more corrupt frames since the last report)"
        );
    }
}
