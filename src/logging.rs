//! Logging: to the systemd journal when stderr is connected to it (structured fields, priority
//! levels), otherwise readable lines on stderr.

use std::io::Write;

use anyhow::Result;
use log::{LevelFilter, Log, Metadata, Record};

struct StderrLog;

impl Log for StderrLog {
    fn enabled(&self, _: &Metadata) -> bool {
        true
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let ts = crate::event::timestamp(std::time::SystemTime::now());
        // Our own modules log by module path; dependencies are noisy below warn.
        let _ = writeln!(
            std::io::stderr().lock(),
            "{ts} {:<5} {}: {}",
            record.level(),
            record.target(),
            record.args()
        );
    }

    fn flush(&self) {}
}

struct Filtered<L: Log> {
    inner: L,
    level: LevelFilter,
}

impl<L: Log> Log for Filtered<L> {
    fn enabled(&self, m: &Metadata) -> bool {
        let ours = m.target().starts_with("emonet");
        // rumqttd reports every tracing span as an ERROR record; the embedded broker's own
        // failures surface through our start-up check instead.
        let noisy = m.target().starts_with("rumqttd");
        m.level() <= self.level && (ours || (m.level() <= log::Level::Warn && !noisy))
    }

    fn log(&self, record: &Record) {
        if self.enabled(record.metadata()) {
            self.inner.log(record);
        }
    }

    fn flush(&self) {
        self.inner.flush();
    }
}

/// Installs the global logger once; later calls are ignored (tests call it repeatedly).
pub fn init(level: LevelFilter) -> Result<()> {
    let result = if systemd_journal_logger::connected_to_journal() {
        let journal = systemd_journal_logger::JournalLog::new()?;
        log::set_boxed_logger(Box::new(Filtered {
            inner: journal,
            level,
        }))
    } else {
        log::set_boxed_logger(Box::new(Filtered {
            inner: StderrLog,
            level,
        }))
    };
    if result.is_ok() {
        log::set_max_level(level);
    }
    Ok(())
}
