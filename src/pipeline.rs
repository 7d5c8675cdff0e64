//! One frame through the models: detect faces, classify each. Loaded (and optimised by tract)
//! once at start-up and shared by `run`, `classify` and `bench`.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::config::Settings;
use crate::vision::{DetectorSettings, EmotionClassifier, EmotionScores, Face, FaceDetector};

pub struct Pipeline {
    pub detector: FaceDetector,
    pub classifier: EmotionClassifier,
}

/// Where one frame's time went.
#[derive(Debug, Clone, Copy, Default)]
pub struct StageTimes {
    pub detect: Duration,
    pub classify: Duration,
}

impl Pipeline {
    /// Errors name the config key and the file, e.g. `classifier.model /x.onnx: No such file`.
    pub fn load(settings: &Settings) -> Result<Self> {
        let d = &settings.detector;
        let detector = FaceDetector::load(
            &d.model,
            DetectorSettings {
                score_threshold: d.score_threshold,
                nms_iou: d.nms_iou,
                max_faces: d.max_faces,
                ..DetectorSettings::default()
            },
        )
        .with_context(|| format!("detector.model {}", d.model.display()))?;
        let classifier = EmotionClassifier::load(&settings.classifier.model)
            .with_context(|| format!("classifier.model {}", settings.classifier.model.display()))?;
        Ok(Pipeline {
            detector,
            classifier,
        })
    }

    pub fn process(
        &self,
        image: &image::RgbImage,
    ) -> Result<(Vec<(Face, EmotionScores)>, StageTimes)> {
        let t0 = Instant::now();
        let faces = self.detector.detect(image)?;
        let t1 = Instant::now();
        let mut out = Vec::with_capacity(faces.len());
        for face in faces {
            let scores = self.classifier.classify_face(image, &face)?;
            out.push((face, scores));
        }
        let times = StageTimes {
            detect: t1 - t0,
            classify: t1.elapsed(),
        };
        Ok((out, times))
    }
}
