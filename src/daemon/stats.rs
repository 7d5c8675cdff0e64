//! What the daemon counts and measures, and the one percentile definition used by the MQTT
//! `stats` payload and by `emonet bench` alike.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use crate::event::{round3, FaceCounts, FrameCounts, LatencySummary, StatsPayload};
use crate::handoff::LatestFrame;
use crate::mqtt::Outbox;
use crate::web::prom::{Histogram, PromWriter};

use super::worker::FrameReport;

/// Nearest-rank percentile `p` (0..=100) of ascending `sorted`; 0 for no samples.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    let n = sorted.len();
    if n == 0 {
        return 0.0;
    }
    let rank = ((p / 100.0) * n as f64).ceil() as usize;
    sorted[rank.clamp(1, n) - 1]
}

/// Counters shared by the stages, read by the stats task.
#[derive(Default)]
pub struct Counters {
    pub captured: AtomicU64,
    pub processed: AtomicU64,
    pub corrupt: AtomicU64,
    /// Processed frames that took the faces of a recent one (`detector.reuse`).
    pub detection_reused: AtomicU64,
    /// Processed frames whose faces were followed from the last one (`detector.follow`).
    pub detection_followed: AtomicU64,
    pub camera: Mutex<String>,
    pub faces_in_view: AtomicU64,
    pub classified: AtomicU64,
    pub reused: AtomicU64,
    /// Per-stage latencies (ms) since the last stats message.
    latencies: Mutex<BTreeMap<&'static str, Vec<f64>>>,
    /// Unix millis of the worker's last sign of life (for the systemd watchdog).
    heartbeat_ms: AtomicU64,
    /// Why the frame source stopped for good ([`crate::camera::SourceError::Fatal`]).
    fatal: OnceLock<String>,
    /// Since start, for `/metrics`: one histogram per entry of [`STAGES`].
    histograms: [Histogram; 4],
}

/// The stages timed per frame, in [`Counters`]' histogram order.
pub const STAGES: [&str; 4] = ["detect", "classify", "track_publish", "frame"];

impl Counters {
    pub fn set_camera(&self, status: &str) {
        *self.camera.lock().expect("counters lock") = status.to_string();
    }

    pub fn set_fatal(&self, msg: String) {
        let _ = self.fatal.set(msg);
    }

    pub fn fatal(&self) -> Option<&str> {
        self.fatal.get().map(String::as_str)
    }

    fn record(&self, stage: &'static str, d: Duration) {
        let mut l = self.latencies.lock().expect("counters lock");
        let v = l.entry(stage).or_default();
        // Bounded: a stats interval at 30 fps is ~900 samples; keep memory flat regardless.
        if v.len() < 10_000 {
            v.push(d.as_secs_f64() * 1000.0);
        }
    }

    /// Counts one processed frame.
    pub fn record_frame(&self, r: &FrameReport) {
        let times = [r.times.detect, r.times.classify, r.track_publish, r.total];
        for ((stage, d), h) in STAGES.iter().zip(times).zip(&self.histograms) {
            self.record(stage, d);
            h.observe(d);
        }
        let faces = &r.times.faces;
        self.classified
            .fetch_add(faces.classified as u64, Ordering::Relaxed);
        self.reused
            .fetch_add(faces.reused as u64, Ordering::Relaxed);
        self.faces_in_view
            .store(r.faces_in_view as u64, Ordering::Relaxed);
        if r.times.detection_reused {
            self.detection_reused.fetch_add(1, Ordering::Relaxed);
        }
        if r.times.detection_followed {
            self.detection_followed.fetch_add(1, Ordering::Relaxed);
        }
        self.processed.fetch_add(1, Ordering::Relaxed);
    }

    pub fn beat(&self) {
        self.heartbeat_ms
            .store(unix_ms(SystemTime::now()), Ordering::Relaxed);
    }

    /// Milliseconds since the worker's last sign of life.
    pub fn silent_for(&self) -> Duration {
        let last = self.heartbeat_ms.load(Ordering::Relaxed);
        Duration::from_millis(unix_ms(SystemTime::now()).saturating_sub(last))
    }

    fn take_latency_summary(&self) -> BTreeMap<String, LatencySummary> {
        let mut l = self.latencies.lock().expect("counters lock");
        let out = l
            .iter_mut()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| {
                v.sort_by(|a, b| a.total_cmp(b));
                let summary = LatencySummary {
                    p50: round3(percentile(v, 50.0)),
                    p99: round3(percentile(v, 99.0)),
                    max: round3(*v.last().expect("non-empty")),
                };
                (k.to_string(), summary)
            })
            .collect();
        l.values_mut().for_each(Vec::clear);
        out
    }
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// What a stats message says beyond the counters: fixed for the daemon's life.
pub struct StatsContext {
    pub device_id: String,
    pub started: Instant,
    pub models: BTreeMap<String, String>,
    pub source: String,
}

/// The `stats` payload now; restarts the latency window.
pub fn stats_payload(
    counters: &Counters,
    handoff: &LatestFrame,
    outbox: &Outbox,
    cx: &StatsContext,
) -> StatsPayload {
    StatsPayload {
        schema: crate::event::SCHEMA_VERSION,
        device_id: cx.device_id.clone(),
        ts: crate::event::timestamp(SystemTime::now()),
        uptime_s: round3(cx.started.elapsed().as_secs_f64()),
        camera: counters.camera.lock().expect("counters lock").clone(),
        source: cx.source.clone(),
        frames: FrameCounts {
            captured: counters.captured.load(Ordering::Relaxed),
            processed: counters.processed.load(Ordering::Relaxed),
            dropped: handoff.dropped(),
            corrupt: counters.corrupt.load(Ordering::Relaxed),
            detection_reused: counters.detection_reused.load(Ordering::Relaxed),
            detection_followed: counters.detection_followed.load(Ordering::Relaxed),
        },
        faces: FaceCounts {
            classified: counters.classified.load(Ordering::Relaxed),
            reused: counters.reused.load(Ordering::Relaxed),
        },
        latency_ms: counters.take_latency_summary(),
        mqtt: outbox.counts(),
        faces_in_view: counters.faces_in_view.load(Ordering::Relaxed) as usize,
        models: cx.models.clone(),
    }
}

/// The Prometheus exposition of the counters (text format 0.0.4), for `/metrics`.
pub fn metrics_text(counters: &Counters, handoff: &LatestFrame, outbox: &Outbox) -> String {
    let mut w = PromWriter::default();
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    w.counter(
        "emonet_frames_captured_total",
        "Frames delivered by the camera or replay source.",
        &[],
        load(&counters.captured),
    );
    w.counter(
        "emonet_frames_processed_total",
        "Frames run through detection, classification and tracking.",
        &[],
        load(&counters.processed),
    );
    w.counter(
        "emonet_frames_dropped_total",
        "Frames replaced by a newer one before inference got to them.",
        &[],
        handoff.dropped(),
    );
    w.counter(
        "emonet_frames_detection_reused_total",
        "Processed frames that took the faces of a recent one instead of running the detector.",
        &[],
        load(&counters.detection_reused),
    );
    w.counter(
        "emonet_frames_detection_followed_total",
        "Processed frames whose faces were found again near the last frame's instead of by the \
         full detector.",
        &[],
        load(&counters.detection_followed),
    );
    w.counter(
        "emonet_frames_corrupt_total",
        "Frames that could not be decoded or processed.",
        &[],
        load(&counters.corrupt),
    );
    for (stage, h) in STAGES.iter().zip(&counters.histograms) {
        w.histogram(
            "emonet_stage_latency_seconds",
            "Time per frame spent in each stage (frame = the whole frame).",
            &[("stage", stage)],
            h,
        );
    }
    let mqtt = outbox.counts();
    w.gauge(
        "emonet_mqtt_connected",
        "1 while connected to the MQTT broker.",
        &[],
        f64::from(u8::from(mqtt.connected)),
    );
    w.counter(
        "emonet_mqtt_reconnects_total",
        "Reconnections to the MQTT broker.",
        &[],
        mqtt.reconnects,
    );
    w.counter(
        "emonet_mqtt_events_dropped_total",
        "Events dropped (oldest first) while the broker was unreachable.",
        &[],
        mqtt.dropped,
    );
    w.gauge(
        "emonet_faces_in_view",
        "Tracked faces in view after the last frame.",
        &[],
        load(&counters.faces_in_view) as f64,
    );
    w.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(
            (
                percentile(&v, 50.0),
                percentile(&v, 99.0),
                percentile(&v, 100.0)
            ),
            (50.0, 99.0, 100.0)
        );
        assert_eq!(percentile(&[1.5], 99.0), 1.5);
        assert_eq!(percentile(&[], 50.0), 0.0);
    }

    #[test]
    fn stats_latency_uses_the_shared_percentile() {
        let c = Counters::default();
        for ms in 1..=100 {
            c.record("frame", Duration::from_millis(ms));
        }
        let s = c.take_latency_summary();
        let f = s["frame"];
        assert_eq!((f.p50, f.p99, f.max), (50.0, 99.0, 100.0));
        assert!(c.take_latency_summary().is_empty(), "the window restarts");
    }
}
