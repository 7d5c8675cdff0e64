//! One frame through the models: detect faces (or reuse a recent frame's, see [`crate::reuse`]),
//! classify each (or reuse its scores from a recent frame). Loaded (and optimised by tract) once
//! at start-up and shared by `run`, `classify` and `bench`.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::config::Settings;
use crate::reuse::{DetectionReuse, ReuseCounts, ReuseSettings, SceneReuseSettings, ScoreReuse};
use crate::vision::{EmotionClassifier, EmotionScores, Face, FaceDetector};

pub struct Pipeline {
    pub detector: FaceDetector,
    pub classifier: EmotionClassifier,
    /// `classifier.reuse`; each stream keeps its own [`ScoreReuse`] ([`Pipeline::new_stream`]).
    pub reuse: ReuseSettings,
    /// `detector.reuse`; each stream keeps its own [`DetectionReuse`].
    pub scene_reuse: SceneReuseSettings,
}

/// What [`Pipeline::process`] carries from one frame of a video stream to the next.
#[derive(Debug)]
pub struct Stream {
    detections: DetectionReuse,
    scores: ScoreReuse,
}

impl Stream {
    /// A stream with these reuse rules (`max_frames = 0` in both: run every model on every frame).
    pub fn new(detections: SceneReuseSettings, scores: ReuseSettings) -> Self {
        Stream {
            detections: DetectionReuse::new(detections),
            scores: ScoreReuse::new(scores),
        }
    }
}

/// Where one frame's time went.
#[derive(Debug, Clone, Copy, Default)]
pub struct StageTimes {
    /// Detection, or the check that the last one still holds.
    pub detect: Duration,
    /// The faces are those of a recent frame (`detector.reuse`): the detector did not run.
    pub detection_reused: bool,
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
            scene_reuse: settings.detector.reuse,
        })
    }

    /// The per-stream state for [`Pipeline::process`]: what was detected and classified lately.
    pub fn new_stream(&self) -> Stream {
        Stream::new(self.scene_reuse, self.reuse)
    }

    /// Faces of `image` with their scores. `stream` carries detections and classifications
    /// between the frames of one stream.
    pub fn process(
        &self,
        image: &image::RgbImage,
        stream: &mut Stream,
    ) -> Result<(Vec<(Face, EmotionScores)>, StageTimes)> {
        let t0 = Instant::now();
        let (faces, detection_reused) = stream
            .detections
            .faces(image, || self.detector.detect(image))?;
        let t1 = Instant::now();
        let (out, counts) = stream.scores.scores(image, faces, |face| {
            self.classifier.classify_face(image, face)
        })?;
        let times = StageTimes {
            detect: t1 - t0,
            detection_reused,
            classify: t1.elapsed(),
            faces: counts,
        };
        Ok((out, times))
    }
}
