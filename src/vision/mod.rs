//! Vision: finding faces in a frame and classifying each face's expression, both run by tract.
//!
//! Boxes and key points are normalised to the frame (0..1), so they mean the same thing at any
//! camera resolution and can be published as they are.

pub mod annotate;
pub mod classify;
pub mod detect;
pub mod model;

use std::sync::Arc;

use serde::Serialize;

pub use classify::EmotionClassifier;
pub use detect::{DetectorRange, DetectorSettings, FaceDetector, PixelRect};
pub use model::ClassifierMeta;

/// An axis-aligned box in normalised frame coordinates (x, y = top-left corner).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, serde::Deserialize)]
pub struct BBox {
    pub x: f32,
    pub y: f32,
    pub w: f32,
    pub h: f32,
}

impl BBox {
    pub fn area(&self) -> f32 {
        self.w.max(0.0) * self.h.max(0.0)
    }

    /// Intersection over union; 0 for disjoint or empty boxes.
    pub fn iou(&self, other: &BBox) -> f32 {
        let x0 = self.x.max(other.x);
        let y0 = self.y.max(other.y);
        let x1 = (self.x + self.w).min(other.x + other.w);
        let y1 = (self.y + self.h).min(other.y + other.h);
        let inter = (x1 - x0).max(0.0) * (y1 - y0).max(0.0);
        let union = self.area() + other.area() - inter;
        if union <= 0.0 {
            0.0
        } else {
            inter / union
        }
    }
}

/// A face found by the detector.
#[derive(Debug, Clone, PartialEq)]
pub struct Face {
    pub bbox: BBox,
    /// Detector confidence, 0..1.
    pub score: f32,
    /// Key points in normalised frame coordinates. For BlazeFace: right eye, left eye, nose tip,
    /// mouth, right ear tragion, left ear tragion (the subject's right/left). For CenterFace: the
    /// eyes, the nose tip and the mouth corners, left to right in the image.
    pub keypoints: Vec<(f32, f32)>,
}

/// Luma of an RGB pixel, ITU-R BT.601 weights, in grey levels (0..255). The classifier's grey
/// input and the reuse thumbnails must agree on it.
#[inline]
pub fn luma(p: [u8; 3]) -> f32 {
    0.299 * p[0] as f32 + 0.587 * p[1] as f32 + 0.114 * p[2] as f32
}

/// Class probabilities for one face, in the model's label order.
#[derive(Debug, Clone, PartialEq)]
pub struct EmotionScores {
    pub labels: Arc<[String]>,
    /// Probabilities (softmax), same length and order as `labels`, summing to 1.
    pub scores: Vec<f32>,
}

impl EmotionScores {
    /// Index and probability of the most likely class.
    pub fn top(&self) -> (usize, f32) {
        let i = argmax(&self.scores);
        (i, self.scores.get(i).copied().unwrap_or(f32::MIN))
    }

    pub fn top_label(&self) -> &str {
        &self.labels[self.top().0]
    }
}

/// Index of the largest value (the first one on ties; 0 for an empty slice or all NaN).
pub fn argmax(v: &[f32]) -> usize {
    v.iter()
        .enumerate()
        .fold((0, f32::MIN), |b, (i, &x)| if x > b.1 { (i, x) } else { b })
        .0
}
