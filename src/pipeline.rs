//! One frame through the models: detect faces (or reuse a recent frame's, see [`crate::reuse`],
//! or follow them from the last frame, see [`crate::follow`]), classify each (or reuse its scores
//! from a recent frame). Loaded (and optimised by tract) once
//! at start-up and shared by `run`, `classify` and `bench`.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::config::Settings;
use crate::follow::{FaceFollower, FollowSettings};
use crate::reuse::{DetectionReuse, ReuseCounts, ReuseSettings, SceneReuseSettings, ScoreReuse};
use crate::vision::{EmotionClassifier, EmotionScores, Face, FaceDetector};

pub struct Pipeline {
    pub detector: FaceDetector,
    /// The short-range detector that follows faces between full detections (`detector.follow`).
    pub follower: Option<FaceDetector>,
    pub classifier: EmotionClassifier,
    /// `classifier.reuse`; each stream keeps its own [`ScoreReuse`] ([`Pipeline::new_stream`]).
    pub reuse: ReuseSettings,
    /// `detector.reuse`; each stream keeps its own [`DetectionReuse`].
    pub scene_reuse: SceneReuseSettings,
    /// `detector.follow`; each stream keeps its own [`FaceFollower`].
    pub follow: FollowSettings,
}

/// What [`Pipeline::process`] carries from one frame of a video stream to the next.
#[derive(Debug)]
pub struct Stream {
    detections: DetectionReuse,
    follow: FaceFollower,
    scores: ScoreReuse,
}

impl Stream {
    /// A stream with these reuse and follow rules (`max_frames = 0` in both reuses and
    /// `follow.every = 0`: run every model on every frame).
    pub fn new(
        detections: SceneReuseSettings,
        follow: FollowSettings,
        scores: ReuseSettings,
    ) -> Self {
        Stream {
            detections: DetectionReuse::new(detections),
            follow: FaceFollower::new(follow),
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
    /// The faces of the last frame were found again near where they were (`detector.follow`):
    /// the full detector did not run.
    pub detection_followed: bool,
    /// Classification of every face of the frame, reused ones included.
    pub classify: Duration,
    pub faces: ReuseCounts,
}

impl Pipeline {
    /// Errors name the config key and the file, e.g. `classifier.model /x.onnx: No such file`.
    pub fn load(settings: &Settings) -> Result<Self> {
        let detector = FaceDetector::load(&settings.detector)
            .with_context(|| format!("detector.model {}", settings.detector.model.display()))?;
        let follow = settings.detector.following();
        let follower = if follow.is_on() {
            let s = settings.detector.follower();
            let loaded = FaceDetector::load(&s).with_context(|| {
                format!(
                    "detector.follow needs the short-range detector {}",
                    s.model.display()
                )
            })?;
            Some(loaded)
        } else {
            None
        };
        let classifier = EmotionClassifier::load(&settings.classifier.model)
            .with_context(|| format!("classifier.model {}", settings.classifier.model.display()))?;
        crate::cpu::release_freed_memory();
        Ok(Pipeline {
            detector,
            follower,
            classifier,
            reuse: settings.classifier.reuse,
            scene_reuse: settings.detector.reuse,
            follow,
        })
    }

    /// The per-stream state for [`Pipeline::process`]: what was detected and classified lately.
    pub fn new_stream(&self) -> Stream {
        Stream::new(self.scene_reuse, self.follow, self.reuse)
    }

    /// The faces of `image`: found by the full detector, or followed from the last frame
    /// (`detector.follow`, see [`crate::follow`]). `true`: followed.
    pub fn detect(
        &self,
        image: &image::RgbImage,
        follow: &mut FaceFollower,
    ) -> Result<(Vec<Face>, bool)> {
        follow.faces(
            image,
            || self.detector.detect(image),
            |region| {
                self.follower
                    .as_ref()
                    .unwrap_or(&self.detector)
                    .detect_in(image, region)
            },
        )
    }

    /// Faces of `image` with their scores. `stream` carries detections and classifications
    /// between the frames of one stream.
    pub fn process(
        &self,
        image: &image::RgbImage,
        stream: &mut Stream,
    ) -> Result<(Vec<(Face, EmotionScores)>, StageTimes)> {
        let t0 = Instant::now();
        let mut detection_followed = false;
        let follow = &mut stream.follow;
        let (faces, detection_reused) = stream.detections.faces(image, || {
            let (faces, followed) = self.detect(image, follow)?;
            detection_followed = followed;
            Ok(faces)
        })?;
        let t1 = Instant::now();
        let (out, counts) = stream.scores.scores(image, faces, |face| {
            self.classifier.classify_face(image, face)
        })?;
        let times = StageTimes {
            detect: t1 - t0,
            detection_reused,
            detection_followed,
            classify: t1.elapsed(),
            faces: counts,
        };
        Ok((out, times))
    }
}
