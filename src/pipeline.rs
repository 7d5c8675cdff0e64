//! One frame through the models: detect faces, classify each (or reuse its scores from a recent
//! frame, see [`crate::reuse`]). Loaded (and optimised by tract) once at start-up and shared by
//! `run`, `classify` and `bench`.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::config::Settings;
use crate::reuse::{ReuseCounts, ReuseSettings, ScoreReuse};
use crate::vision::{EmotionClassifier, EmotionScores, Face, FaceDetector};

pub struct Pipeline {
    pub detector: FaceDetector,
    pub classifier: EmotionClassifier,
    /// `classifier.reuse`; each stream keeps its own [`ScoreReuse`] ([`Pipeline::new_stream`]).
    pub reuse: ReuseSettings,
}

/// Where one frame's time went.
#[derive(Debug, Clone, Copy, Default)]
pub struct StageTimes {
    pub detect: Duration,
    /// Classification of every face of the frame, reused ones included.
    pub classify: Duration,
    pub faces: ReuseCounts,
}

impl Pipeline {
    /// Errors name the config key and the file, e.g. `classifier.model /x.onnx: No such file`.
    pub fn load(settings: &Settings) -> Result<Self> {
        let detector = FaceDetector::load(&settings.detector)
            .with_context(|| format!("detector.model {}", settings.detector.model.display()))?;
        let classifier = EmotionClassifier::load(&settings.classifier.model)
            .with_context(|| format!("classifier.model {}", settings.classifier.model.display()))?;
        Ok(Pipeline {
            detector,
            classifier,
            reuse: settings.classifier.reuse,
        })
    }

    /// The per-stream state for [`Pipeline::process`]: which faces were classified lately.
    pub fn new_stream(&self) -> ScoreReuse {
        ScoreReuse::new(self.reuse)
    }

    /// Faces of `image` with their scores. `reuse` carries classifications between the frames
    /// of one stream; a `ScoreReuse` with `max_frames = 0` classifies every face.
    pub fn process(
        &self,
        image: &image::RgbImage,
        reuse: &mut ScoreReuse,
    ) -> Result<(Vec<(Face, EmotionScores)>, StageTimes)> {
        let t0 = Instant::now();
        let faces = self.detector.detect(image)?;
        let t1 = Instant::now();
        let (out, counts) = reuse.scores(image, faces, |face| {
            self.classifier.classify_face(image, face)
        })?;
        let times = StageTimes {
            detect: t1 - t0,
            classify: t1.elapsed(),
            faces: counts,
        };
        Ok((out, times))
    }
}
