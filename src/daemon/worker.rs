//! The per-frame path, written once: detect (or reuse) → classify (or reuse) → track → events
//! and state into the [`Outbox`]. The daemon's inference thread and `emonet bench` both drive a
//! [`Worker`].

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Result;

use crate::config::TrackerSettings;
use crate::event::{encode, EventPayload, StatePayload};
use crate::frame::Frame;
use crate::mqtt::Outbox;
use crate::pipeline::{Pipeline, StageTimes, Stream};
use crate::track::{TrackEvent, Tracker};
use crate::vision::annotate::Annotation;
use crate::vision::{EmotionScores, Face};
use crate::web::LiveView;

/// One video stream's worker: the shared models plus the state that carries between frames.
pub struct Worker<'a> {
    pipeline: &'a Pipeline,
    tracker: Tracker,
    stream: Stream,
    outbox: Arc<Outbox>,
    device_id: String,
    /// Events published so far (the payloads' `seq`).
    seq: u64,
    /// The local web view, when `[http]` is on.
    view: Option<Arc<LiveView>>,
}

/// What one frame cost and produced.
#[derive(Debug, Clone, Copy, Default)]
pub struct FrameReport {
    /// Detection and classification, and how many faces were classified or reused.
    pub times: StageTimes,
    /// Tracking, serialisation and queuing of the events and state.
    pub track_publish: Duration,
    /// The whole frame.
    pub total: Duration,
    pub events: usize,
    pub faces_in_view: usize,
}

impl<'a> Worker<'a> {
    pub fn new(
        pipeline: &'a Pipeline,
        tracker: &TrackerSettings,
        outbox: Arc<Outbox>,
        device_id: &str,
    ) -> Self {
        Worker {
            pipeline,
            tracker: Tracker::new(tracker.clone()),
            stream: pipeline.new_stream(),
            outbox,
            device_id: device_id.to_string(),
            seq: 0,
            view: None,
        }
    }

    /// Also draws the tracked faces onto frames for the web view (only while it is watched, at
    /// its capped rate).
    pub fn with_view(mut self, view: Arc<LiveView>) -> Self {
        self.view = Some(view);
        self
    }

    /// Runs one frame through the models and publishes what changed. A model error is
    /// returned (the caller counts the frame and goes on); nothing is published then.
    pub fn handle(&mut self, frame: &Frame) -> Result<FrameReport> {
        let t0 = Instant::now();
        let (faces, times) = self.pipeline.process(&frame.image, &mut self.stream)?;
        let t1 = Instant::now();
        let events = self.publish(&faces, frame.captured);
        self.show(frame);
        Ok(FrameReport {
            times,
            track_publish: t1.elapsed(),
            total: t0.elapsed(),
            events,
            faces_in_view: self.tracker.faces_in_view(),
        })
    }

    /// Hands the frame with the tracked faces drawn on it to the web view, if it wants one.
    fn show(&self, frame: &Frame) {
        let Some(view) = &self.view else { return };
        if !view.wants_frame() {
            return;
        }
        let tracks = self.tracker.snapshot();
        let faces: Vec<Annotation> = tracks
            .iter()
            .map(|t| Annotation::for_face(t.bbox, Some(t.track.0), &t.emotion, t.confidence))
            .collect();
        let state = StatePayload::from_tracks(&tracks, &self.device_id, frame.captured);
        if let Err(e) = view.publish(&frame.image, &faces, serde_json::to_value(&state).ok()) {
            log::warn!("web view: {e:#}");
        }
    }

    /// Tracks the faces of a frame captured at `captured`, queues one event per change and, when
    /// anything changed, the new state. Returns the number of events.
    pub fn publish(&mut self, faces: &[(Face, EmotionScores)], captured: SystemTime) -> usize {
        let events = self.tracker.update(faces, captured);
        self.emit(&events, captured)
    }

    /// The stream ends (the daemon stops): every face in view is reported as `left` and the
    /// state emptied, so the retained state does not keep faces nobody watches any more.
    /// Returns the number of events.
    pub fn finish(&mut self) -> usize {
        let now = SystemTime::now();
        let events = self.tracker.finish(now);
        self.emit(&events, now)
    }

    /// Queues one event per change and, when anything changed, the new state.
    fn emit(&mut self, events: &[TrackEvent], at: SystemTime) -> usize {
        for ev in events {
            self.seq += 1;
            let payload = EventPayload::from_track_event(ev, &self.device_id, self.seq);
            log::info!(
                "face {} {} {} ({:.0}%)",
                payload.track_id,
                payload.kind,
                payload.emotion,
                payload.confidence * 100.0
            );
            if let Some(bytes) = encode("event", &payload) {
                self.outbox.push_event(bytes);
            }
        }
        if !events.is_empty() {
            let state = StatePayload::from_tracks(&self.tracker.snapshot(), &self.device_id, at);
            if let Some(bytes) = encode("state", &state) {
                self.outbox.set_state(bytes);
            }
        }
        events.len()
    }
}
