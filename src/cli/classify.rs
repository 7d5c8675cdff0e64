//! `emonet classify IMAGE…`: faces and their emotions in still images, one JSON line per image.
//!
//! ```json
//! {"image":"a.png","width":512,"height":512,"faces":[{"box":{"x":0.36,"y":0.11,"w":0.2,"h":0.2},
//!  "score":0.93,"emotion":"happy","confidence":0.97,"scores":{"angry":0.001,…}}]}
//! ```
//! Boxes are normalised to the image (0..1, x/y = top-left corner). An image that cannot be
//! read gives `{"image": …, "error": "…"}` and the run goes on; the command then fails at the end.
//!
//! `--annotate OUT_DIR` also writes a copy of each image into OUT_DIR (same file name) with each
//! face's box and label (`happy 97%`) drawn on it: what emonet reports, as a picture.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;

use crate::config::{
    ClassifierSettings, DetectorRange, DetectorSettings, Settings, DEFAULT_CLASSIFIER_FILE,
};
use crate::pipeline::Pipeline;
use crate::vision::annotate::{self, Annotation};
use crate::vision::{BBox, EmotionScores};

/// `emonet classify` arguments; the detector defaults are the daemon's (`[detector]`).
#[derive(Debug, Clone, clap::Args)]
pub struct ClassifyArgs {
    /// Images to analyse (PNG or JPEG).
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<PathBuf>,
    /// Emotion classifier (ONNX with emonet.* metadata).
    #[arg(
        long,
        value_name = "PATH",
        default_value_os_t = Path::new("models").join(DEFAULT_CLASSIFIER_FILE)
    )]
    pub model: PathBuf,
    /// Face detector model: `short` or `full` range BlazeFace, or `far` (CenterFace), as
    /// `detector.range`.
    #[arg(long, value_enum, default_value_t = DetectorSettings::default().range)]
    pub range: DetectorRange,
    /// Face detector file (default: the range's file in `models/`).
    #[arg(long, value_name = "PATH")]
    pub detector: Option<PathBuf>,
    /// Also write each image with the faces' boxes and labels drawn on it into this folder.
    #[arg(long, value_name = "OUT_DIR")]
    pub annotate: Option<PathBuf>,
    /// Minimum face detection score, 0..1 (default: the range's, 0.6 short/full, 0.5 far).
    #[arg(long)]
    pub score_threshold: Option<f32>,
    /// IoU above which overlapping detections are merged, 0..1.
    #[arg(long, default_value_t = DetectorSettings::default().nms_iou)]
    pub nms_iou: f32,
    /// At most this many faces per image.
    #[arg(long, default_value_t = DetectorSettings::default().max_faces)]
    pub max_faces: usize,
}

impl ClassifyArgs {
    /// The daemon's settings with these models and detector options; every face is classified
    /// (no reuse between images).
    pub fn settings(&self) -> Settings {
        let mut classifier = ClassifierSettings {
            model: self.model.clone(),
            ..ClassifierSettings::default()
        };
        classifier.reuse.max_frames = 0;
        Settings {
            detector: DetectorSettings {
                range: self.range,
                model: self
                    .detector
                    .clone()
                    .unwrap_or_else(|| Path::new("models").join(self.range.default_file())),
                score_threshold: self.score_threshold,
                nms_iou: self.nms_iou,
                max_faces: self.max_faces,
                ..DetectorSettings::default()
            },
            classifier,
            ..Settings::default()
        }
    }
}

/// Class probabilities as a JSON object in label order.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelScores(pub EmotionScores);

impl Serialize for LabelScores {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.labels.len()))?;
        for (l, p) in self.0.labels.iter().zip(&self.0.scores) {
            map.serialize_entry(l, p)?;
        }
        map.end()
    }
}

/// One face of an image.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FaceResult {
    #[serde(rename = "box")]
    pub bbox: BBox,
    /// Detector score, 0..1.
    pub score: f32,
    pub emotion: String,
    /// Probability of `emotion`.
    pub confidence: f32,
    pub scores: LabelScores,
}

/// One line of `emonet classify` output.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ImageResult {
    pub image: String,
    pub width: u32,
    pub height: u32,
    pub faces: Vec<FaceResult>,
}

/// Detects the faces of `img` and classifies each, best detection first: the daemon's
/// per-frame path ([`Pipeline::process`]) without tracking.
pub fn analyze(pipeline: &Pipeline, img: &image::RgbImage) -> Result<Vec<FaceResult>> {
    let (faces, _) = pipeline.process(img, &mut pipeline.new_stream())?;
    Ok(faces
        .into_iter()
        .map(|(face, scores)| {
            let (top, confidence) = scores.top();
            FaceResult {
                bbox: face.bbox,
                score: face.score,
                emotion: scores.labels[top].clone(),
                confidence,
                scores: LabelScores(scores),
            }
        })
        .collect())
}

/// Reads `path` and analyses it.
pub fn classify_image(pipeline: &Pipeline, path: &Path) -> Result<ImageResult> {
    classify_and_annotate(pipeline, path, None)
}

/// Reads `path`, analyses it and, with `annotate`, writes the image with the faces drawn on it
/// to `annotate/<file name>`.
pub fn classify_and_annotate(
    pipeline: &Pipeline,
    path: &Path,
    annotate: Option<&Path>,
) -> Result<ImageResult> {
    let mut img = crate::frame::read_image(path)?;
    let result = ImageResult {
        image: path.display().to_string(),
        width: img.width(),
        height: img.height(),
        faces: analyze(pipeline, &img)?,
    };
    if let Some(dir) = annotate {
        let faces: Vec<Annotation> = result
            .faces
            .iter()
            .map(|f| Annotation::for_face(f.bbox, None, &f.emotion, f.confidence))
            .collect();
        annotate::draw(&mut img, &faces);
        let out = dir.join(path.file_name().context("image path has no file name")?);
        img.save(&out)
            .with_context(|| format!("cannot write {}", out.display()))?;
    }
    Ok(result)
}

/// `emonet classify`: one JSON line per image on stdout. Fails at the end when any image could
/// not be analysed (after printing its `error` line).
pub fn run(args: &ClassifyArgs) -> Result<()> {
    let pipeline = Pipeline::load(&args.settings())?;
    if let Some(dir) = &args.annotate {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("--annotate: cannot create {}", dir.display()))?;
    }
    let mut out = std::io::stdout().lock();
    let mut failed = 0;
    for path in &args.images {
        let line = match classify_and_annotate(&pipeline, path, args.annotate.as_deref()) {
            Ok(r) => serde_json::to_string(&r)?,
            Err(e) => {
                failed += 1;
                serde_json::json!({ "image": path.display().to_string(), "error": format!("{e:#}") })
                    .to_string()
            }
        };
        writeln!(out, "{line}")?;
        out.flush()?;
    }
    if failed > 0 {
        bail!(
            "{failed} of {} images could not be analysed",
            args.images.len()
        );
    }
    Ok(())
}
