//! The JSON payloads published over MQTT: the public, versioned interface robots depend on.
//! Bump [`SCHEMA_VERSION`] on any incompatible change; adding fields is compatible.

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::track::{TrackEvent, TrackEventKind, TrackView};
use crate::vision::BBox;

pub const SCHEMA_VERSION: u32 = 1;

/// `emonet/<device>/events`: one face appeared, changed emotion, or left.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EventPayload {
    pub schema: u32,
    /// `appeared`, `changed` or `left`.
    #[serde(rename = "type")]
    pub kind: String,
    pub device_id: String,
    /// RFC 3339 / ISO 8601, UTC, millisecond precision.
    pub ts: String,
    /// Per-daemon-run counter of events, to detect gaps and reordering.
    pub seq: u64,
    pub track_id: u64,
    pub emotion: String,
    pub confidence: f64,
    pub scores: BTreeMap<String, f64>,
    pub previous: Option<Previous>,
    #[serde(rename = "box")]
    pub bbox: BoxPayload,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Previous {
    pub emotion: String,
    pub duration_s: f64,
}

/// `emonet/<device>/state` (retained): who is in view now.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StatePayload {
    pub schema: u32,
    pub device_id: String,
    pub ts: String,
    pub faces: Vec<StateFace>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StateFace {
    pub track_id: u64,
    pub emotion: String,
    pub confidence: f64,
    pub since: String,
    #[serde(rename = "box")]
    pub bbox: BoxPayload,
}

/// A face box in normalised frame coordinates (0..1, origin top-left).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct BoxPayload {
    pub x: f64,
    pub y: f64,
    pub w: f64,
    pub h: f64,
}

/// `emonet/<device>/stats`: periodic health and throughput.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct StatsPayload {
    pub schema: u32,
    pub device_id: String,
    pub ts: String,
    pub uptime_s: f64,
    /// `streaming`, `reconnecting` or `ended`.
    pub camera: String,
    pub source: String,
    pub frames: FrameCounts,
    /// Faces classified vs. given the scores of a recent frame (`classifier.reuse`).
    pub faces: FaceCounts,
    /// Milliseconds over the frames since the last stats message.
    pub latency_ms: BTreeMap<String, LatencySummary>,
    pub mqtt: MqttCounts,
    pub faces_in_view: usize,
    pub models: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Default)]
pub struct FaceCounts {
    pub classified: u64,
    pub reused: u64,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Default)]
pub struct FrameCounts {
    pub captured: u64,
    pub processed: u64,
    /// Replaced by a newer frame before inference got to them.
    pub dropped: u64,
    /// Could not be decoded; skipped.
    pub corrupt: u64,
    /// Processed, with the faces of a recent frame: nothing had changed (`detector.reuse`).
    #[serde(default)]
    pub detection_reused: u64,
    /// Processed, with the faces of the last frame found again near where they were, without
    /// the full detector (`detector.follow`).
    #[serde(default)]
    pub detection_followed: u64,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Default)]
pub struct LatencySummary {
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Default)]
pub struct MqttCounts {
    pub connected: bool,
    pub queued: usize,
    /// Dropped (oldest first) because the queue was full while the broker was away.
    pub dropped: u64,
    pub published: u64,
    pub reconnects: u64,
}

pub fn timestamp(t: SystemTime) -> String {
    let dt = time::OffsetDateTime::from(t);
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    dt.format(&fmt)
        .unwrap_or_else(|_| "1970-01-01T00:00:00.000Z".into())
}

impl EventPayload {
    pub fn from_track_event(ev: &TrackEvent, device_id: &str, seq: u64) -> Self {
        EventPayload {
            schema: SCHEMA_VERSION,
            kind: match ev.kind {
                TrackEventKind::Appeared => "appeared",
                TrackEventKind::Changed => "changed",
                TrackEventKind::Left => "left",
            }
            .into(),
            device_id: device_id.into(),
            ts: timestamp(ev.at),
            seq,
            track_id: ev.track.0,
            emotion: ev.emotion.clone(),
            confidence: round4(ev.confidence),
            scores: ev
                .scores
                .labels
                .iter()
                .cloned()
                .zip(ev.scores.scores.iter().map(|&s| round4(s)))
                .collect(),
            previous: ev.previous.as_ref().map(|(emotion, d)| Previous {
                emotion: emotion.clone(),
                duration_s: (d.as_secs_f64() * 1000.0).round() / 1000.0,
            }),
            bbox: round_box(ev.bbox),
        }
    }
}

impl StatePayload {
    pub fn from_tracks(tracks: &[TrackView], device_id: &str, now: SystemTime) -> Self {
        StatePayload {
            schema: SCHEMA_VERSION,
            device_id: device_id.into(),
            ts: timestamp(now),
            faces: tracks
                .iter()
                .map(|t| StateFace {
                    track_id: t.track.0,
                    emotion: t.emotion.clone(),
                    confidence: round4(t.confidence),
                    since: timestamp(t.since),
                    bbox: round_box(t.bbox),
                })
                .collect(),
        }
    }
}

/// A payload as JSON bytes. The serialisation-failure policy, in one place: such a failure is
/// a bug, not a condition of the device, so it is logged and the message is skipped; it never
/// stops the daemon.
pub fn encode<T: Serialize>(what: &str, payload: &T) -> Option<Vec<u8>> {
    match serde_json::to_vec(payload) {
        Ok(bytes) => Some(bytes),
        Err(e) => {
            log::error!("cannot serialise the {what} payload: {e}");
            None
        }
    }
}

/// Milliseconds and seconds in stats and reports: three decimals.
pub(crate) fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Four decimals are plenty for probabilities and boxes and keep payloads short.
fn round4(x: f32) -> f64 {
    (f64::from(x) * 10_000.0).round() / 10_000.0
}

fn round_box(b: BBox) -> BoxPayload {
    BoxPayload {
        x: round4(b.x),
        y: round4(b.y),
        w: round4(b.w),
        h: round4(b.h),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::track::TrackId;
    use crate::vision::EmotionScores;
    use std::time::Duration;

    #[test]
    fn event_json_has_the_documented_shape() {
        let ev = TrackEvent {
            kind: TrackEventKind::Changed,
            track: TrackId(7),
            emotion: "happy".into(),
            confidence: 0.812345,
            scores: EmotionScores {
                labels: ["happy".to_string(), "sad".to_string()]
                    .into_iter()
                    .collect(),
                scores: vec![0.812345, 0.187655],
            },
            previous: Some(("sad".into(), Duration::from_millis(4250))),
            bbox: BBox {
                x: 0.25,
                y: 0.5,
                w: 0.125,
                h: 0.2,
            },
            at: SystemTime::UNIX_EPOCH + Duration::from_millis(1_764_000_000_123),
        };
        let json =
            serde_json::to_value(EventPayload::from_track_event(&ev, "kiosk-1", 42)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "schema": 1, "type": "changed", "device_id": "kiosk-1",
                "ts": "2025-11-24T16:00:00.123Z", "seq": 42, "track_id": 7,
                "emotion": "happy", "confidence": 0.8123,
                "scores": {"happy": 0.8123, "sad": 0.1877},
                "previous": {"emotion": "sad", "duration_s": 4.25},
                "box": {"x": 0.25, "y": 0.5, "w": 0.125, "h": 0.2}
            })
        );
    }
}
