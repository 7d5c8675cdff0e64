//! Tracking and smoothing: gives each face a stable [`TrackId`] across frames (greedy IoU
//! matching), smooths its emotion scores over time, and turns the per-frame noise into the few
//! events a robot cares about: a face appeared, its emotion changed (and held), it left.
//!
//! Why hysteresis: per-frame classification flickers between neighbouring classes (neutral/sad,
//! fear/surprise). A change is reported only when the new emotion leads the reported one by
//! `min_margin` in the smoothed scores for `hold_frames` consecutive frames.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::config::TrackerSettings;
use crate::vision::{argmax, BBox, EmotionScores, Face};

/// Stable id of one face while it stays in view. Never reused within a daemon's lifetime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct TrackId(pub u64);

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TrackEventKind {
    Appeared,
    Changed,
    Left,
}

/// A change worth publishing.
#[derive(Debug, Clone, PartialEq)]
pub struct TrackEvent {
    pub kind: TrackEventKind,
    pub track: TrackId,
    /// The emotion now reported (for `Left`: the last one).
    pub emotion: String,
    /// Its smoothed probability.
    pub confidence: f32,
    /// Smoothed scores of every class.
    pub scores: EmotionScores,
    /// The emotion reported before and how long it lasted (`Changed`, `Left`).
    pub previous: Option<(String, Duration)>,
    pub bbox: BBox,
    pub at: SystemTime,
}

/// A face currently in view, for the retained `state` snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct TrackView {
    pub track: TrackId,
    pub emotion: String,
    pub confidence: f32,
    pub since: SystemTime,
    pub bbox: BBox,
}

#[derive(Debug)]
struct Track {
    id: TrackId,
    bbox: BBox,
    smoothed: Vec<f32>,
    labels: Arc<[String]>,
    hits: u32,
    missed: u32,
    confirmed: bool,
    /// Index of the reported emotion and since when.
    reported: usize,
    reported_since: SystemTime,
    /// A different emotion on top, and for how many consecutive frames.
    candidate: Option<(usize, u32)>,
}

pub struct Tracker {
    cfg: TrackerSettings,
    tracks: Vec<Track>,
    next_id: u64,
}

impl Tracker {
    pub fn new(cfg: TrackerSettings) -> Self {
        Tracker {
            cfg,
            tracks: Vec::new(),
            next_id: 1,
        }
    }

    /// Feeds one processed frame's faces; returns the events it causes, in a stable order
    /// (appear/change of matched tracks, then leaves).
    pub fn update(&mut self, faces: &[(Face, EmotionScores)], now: SystemTime) -> Vec<TrackEvent> {
        let mut events = Vec::new();
        let assignment = self.match_faces(faces);
        let mut matched_track = vec![false; self.tracks.len()];

        for (fi, (face, scores)) in faces.iter().enumerate() {
            match assignment[fi] {
                Some(ti) => {
                    matched_track[ti] = true;
                    let cfg = self.cfg.clone();
                    if let Some(ev) = self.tracks[ti].observe(face, scores, &cfg, now) {
                        events.push(ev);
                    }
                }
                None => {
                    let id = TrackId(self.next_id);
                    self.next_id += 1;
                    let top = scores.top().0;
                    let mut track = Track {
                        id,
                        bbox: face.bbox,
                        smoothed: scores.scores.clone(),
                        labels: scores.labels.clone(),
                        hits: 1,
                        missed: 0,
                        confirmed: false,
                        reported: top,
                        reported_since: now,
                        candidate: None,
                    };
                    if self.cfg.min_hits <= 1 {
                        track.confirmed = true;
                        events.push(track.event(TrackEventKind::Appeared, None, now));
                    }
                    self.tracks.push(track);
                    matched_track.push(true);
                }
            }
        }

        let max_missed = self.cfg.max_missed;
        let mut kept = Vec::with_capacity(self.tracks.len());
        for (track, matched) in self.tracks.drain(..).zip(matched_track) {
            let mut track = track;
            if !matched {
                track.missed += 1;
                // Unconfirmed tracks were never announced, so they vanish silently.
                if !track.confirmed {
                    continue;
                }
                if track.missed > max_missed {
                    events.push(track.left(now));
                    continue;
                }
            }
            kept.push(track);
        }
        self.tracks = kept;
        events
    }

    /// The daemon is stopping: every confirmed face is reported as `left` and the tracker is
    /// emptied, so subscribers do not keep a face that nobody watches any more.
    pub fn finish(&mut self, now: SystemTime) -> Vec<TrackEvent> {
        self.tracks
            .drain(..)
            .filter(|t| t.confirmed)
            .map(|t| t.left(now))
            .collect()
    }

    /// How many confirmed faces are in view (no allocation: called every frame).
    pub fn faces_in_view(&self) -> usize {
        self.tracks.iter().filter(|t| t.confirmed).count()
    }

    /// Confirmed faces in view, oldest track first.
    pub fn snapshot(&self) -> Vec<TrackView> {
        self.tracks
            .iter()
            .filter(|t| t.confirmed)
            .map(|t| TrackView {
                track: t.id,
                emotion: t.labels[t.reported].clone(),
                confidence: t.smoothed[t.reported],
                since: t.reported_since,
                bbox: t.bbox,
            })
            .collect()
    }

    /// Greedy matching by descending IoU: good enough for the handful of faces a robot sees,
    /// and it never matches one detection to two tracks.
    fn match_faces(&self, faces: &[(Face, EmotionScores)]) -> Vec<Option<usize>> {
        let mut pairs: Vec<(f32, usize, usize)> = Vec::new();
        for (fi, (face, _)) in faces.iter().enumerate() {
            for (ti, t) in self.tracks.iter().enumerate() {
                let iou = face.bbox.iou(&t.bbox);
                if iou >= self.cfg.iou_threshold && iou > 0.0 {
                    pairs.push((iou, fi, ti));
                }
            }
        }
        pairs.sort_by(|a, b| b.0.total_cmp(&a.0));
        let mut face_to_track = vec![None; faces.len()];
        let mut track_used = vec![false; self.tracks.len()];
        for (_, fi, ti) in pairs {
            if face_to_track[fi].is_none() && !track_used[ti] {
                face_to_track[fi] = Some(ti);
                track_used[ti] = true;
            }
        }
        face_to_track
    }
}

impl Track {
    fn observe(
        &mut self,
        face: &Face,
        scores: &EmotionScores,
        cfg: &TrackerSettings,
        now: SystemTime,
    ) -> Option<TrackEvent> {
        self.bbox = face.bbox;
        self.missed = 0;
        self.hits += 1;
        let a = cfg.smoothing;
        for (s, &x) in self.smoothed.iter_mut().zip(&scores.scores) {
            *s = a * x + (1.0 - a) * *s;
        }
        let top = argmax(&self.smoothed);

        if !self.confirmed {
            // Until announced, the reported emotion simply follows the smoothed top class.
            self.reported = top;
            self.reported_since = now;
            if self.hits >= cfg.min_hits {
                self.confirmed = true;
                return Some(self.event(TrackEventKind::Appeared, None, now));
            }
            return None;
        }

        let leads = top != self.reported
            && self.smoothed[top] - self.smoothed[self.reported] >= cfg.min_margin;
        if !leads {
            self.candidate = None;
            return None;
        }
        let count = match self.candidate {
            Some((c, n)) if c == top => n + 1,
            _ => 1,
        };
        self.candidate = Some((top, count));
        if count < cfg.hold_frames {
            return None;
        }
        let prev = self.previous(now);
        self.reported = top;
        self.reported_since = now;
        self.candidate = None;
        Some(self.event(TrackEventKind::Changed, Some(prev), now))
    }

    /// The reported emotion and how long it has lasted.
    fn previous(&self, now: SystemTime) -> (String, Duration) {
        (
            self.labels[self.reported].clone(),
            now.duration_since(self.reported_since).unwrap_or_default(),
        )
    }

    /// The `left` event, with how long the last emotion lasted.
    fn left(&self, now: SystemTime) -> TrackEvent {
        self.event(TrackEventKind::Left, Some(self.previous(now)), now)
    }

    fn event(
        &self,
        kind: TrackEventKind,
        previous: Option<(String, Duration)>,
        at: SystemTime,
    ) -> TrackEvent {
        TrackEvent {
            kind,
            track: self.id,
            emotion: self.labels[self.reported].clone(),
            confidence: self.smoothed[self.reported],
            scores: EmotionScores {
                labels: self.labels.clone(),
                scores: self.smoothed.clone(),
            },
            previous,
            bbox: self.bbox,
            at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels() -> Arc<[String]> {
        ["happy", "neutral", "sad"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    }

    fn face(x: f32, probs: [f32; 3]) -> (Face, EmotionScores) {
        (
            Face {
                bbox: BBox {
                    x,
                    y: 0.2,
                    w: 0.2,
                    h: 0.2,
                },
                score: 0.9,
                keypoints: vec![],
            },
            EmotionScores {
                labels: labels(),
                scores: probs.to_vec(),
            },
        )
    }

    fn cfg() -> TrackerSettings {
        TrackerSettings {
            iou_threshold: 0.3,
            min_hits: 2,
            max_missed: 2,
            smoothing: 1.0,
            hold_frames: 3,
            min_margin: 0.1,
        }
    }

    fn t(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_000 + secs)
    }

    const HAPPY: [f32; 3] = [0.8, 0.15, 0.05];
    const SAD: [f32; 3] = [0.1, 0.2, 0.7];

    #[test]
    fn appears_after_min_hits_with_stable_id() {
        let mut tr = Tracker::new(cfg());
        assert!(tr.update(&[face(0.1, HAPPY)], t(0)).is_empty());
        let ev = tr.update(&[face(0.11, HAPPY)], t(1));
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].kind, TrackEventKind::Appeared);
        assert_eq!(ev[0].emotion, "happy");
        let id = ev[0].track;
        assert!(tr.update(&[face(0.12, HAPPY)], t(2)).is_empty());
        assert_eq!(tr.snapshot()[0].track, id);
    }

    #[test]
    fn change_needs_hold_frames_and_reports_previous_duration() {
        let mut tr = Tracker::new(cfg());
        tr.update(&[face(0.1, HAPPY)], t(0));
        tr.update(&[face(0.1, HAPPY)], t(1));
        // Two frames of sad, a flicker back, then three of sad: only the last run counts.
        assert!(tr.update(&[face(0.1, SAD)], t(2)).is_empty());
        assert!(tr.update(&[face(0.1, SAD)], t(3)).is_empty());
        assert!(tr.update(&[face(0.1, HAPPY)], t(4)).is_empty());
        assert!(tr.update(&[face(0.1, SAD)], t(5)).is_empty());
        assert!(tr.update(&[face(0.1, SAD)], t(6)).is_empty());
        let ev = tr.update(&[face(0.1, SAD)], t(7));
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].kind, TrackEventKind::Changed);
        assert_eq!(ev[0].emotion, "sad");
        assert_eq!(
            ev[0].previous,
            Some(("happy".into(), Duration::from_secs(6)))
        );
    }

    #[test]
    fn finish_reports_every_confirmed_face_as_left() {
        let mut tr = Tracker::new(cfg());
        tr.update(&[face(0.1, HAPPY), face(0.6, SAD)], t(0));
        let ev = tr.update(&[face(0.1, HAPPY), face(0.6, SAD)], t(1));
        assert_eq!(ev.len(), 2);
        // A third face seen once is not confirmed: it was never announced, so no `left`.
        tr.update(&[face(0.1, HAPPY), face(0.6, SAD), face(0.35, SAD)], t(2));
        let left = tr.finish(t(5));
        assert_eq!(left.len(), 2, "{left:?}");
        assert!(left.iter().all(|e| e.kind == TrackEventKind::Left));
        // Reported since its confirmation at t(1), as for a change.
        assert_eq!(
            left[0].previous,
            Some(("happy".into(), Duration::from_secs(4)))
        );
        assert!(tr.snapshot().is_empty());
        assert!(tr.finish(t(6)).is_empty());
    }

    #[test]
    fn small_margin_is_not_a_change() {
        let mut tr = Tracker::new(cfg());
        tr.update(&[face(0.1, [0.40, 0.38, 0.22])], t(0));
        tr.update(&[face(0.1, [0.40, 0.38, 0.22])], t(1));
        for i in 2..10 {
            assert!(tr.update(&[face(0.1, [0.38, 0.42, 0.20])], t(i)).is_empty());
        }
    }

    #[test]
    fn smoothing_averages_scores() {
        let mut c = cfg();
        c.smoothing = 0.5;
        c.min_hits = 1;
        let mut tr = Tracker::new(c);
        tr.update(&[face(0.1, [1.0, 0.0, 0.0])], t(0));
        tr.update(&[face(0.1, [0.0, 1.0, 0.0])], t(1));
        let snap = tr.snapshot();
        assert_eq!(snap[0].emotion, "happy");
        assert!((snap[0].confidence - 0.5).abs() < 1e-6);
    }

    #[test]
    fn leaves_once_after_max_missed() {
        let mut tr = Tracker::new(cfg());
        tr.update(&[face(0.1, HAPPY)], t(0));
        let id = tr.update(&[face(0.1, HAPPY)], t(1))[0].track;
        assert!(tr.update(&[], t(2)).is_empty());
        assert!(tr.update(&[], t(3)).is_empty());
        let ev = tr.update(&[], t(4));
        assert_eq!(ev.len(), 1);
        assert_eq!((ev[0].kind, ev[0].track), (TrackEventKind::Left, id));
        assert_eq!(
            ev[0].previous,
            Some(("happy".into(), Duration::from_secs(3)))
        );
        assert!(tr.update(&[], t(5)).is_empty());
        assert!(tr.snapshot().is_empty());
    }

    #[test]
    fn unconfirmed_blip_vanishes_silently_and_ids_are_not_reused() {
        let mut tr = Tracker::new(cfg());
        tr.update(&[face(0.7, HAPPY)], t(0));
        assert!(tr.update(&[], t(1)).is_empty());
        tr.update(&[face(0.1, HAPPY)], t(2));
        let ev = tr.update(&[face(0.1, HAPPY)], t(3));
        assert_eq!(ev[0].track, TrackId(2));
    }

    #[test]
    fn two_faces_keep_their_own_ids() {
        let mut tr = Tracker::new(cfg());
        tr.update(&[face(0.1, HAPPY), face(0.6, SAD)], t(0));
        let ev = tr.update(&[face(0.6, SAD), face(0.1, HAPPY)], t(1));
        let by_emotion: Vec<(String, TrackId)> =
            ev.iter().map(|e| (e.emotion.clone(), e.track)).collect();
        assert!(by_emotion.contains(&("happy".into(), TrackId(1))));
        assert!(by_emotion.contains(&("sad".into(), TrackId(2))));
    }
}
