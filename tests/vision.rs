//! The shipped vision models on real photos: BlazeFace finds the astronaut's face (and none on
//! a cup of coffee), the emotion classifier calls her smile `happy`, and `emonet classify`'s
//! library path reports the same as JSON.
//!
//! Test images (tests/data): `astronaut.png` (Eileen Collins, NASA, public domain) and
//! `coffee.png` (scikit-image data, BSD-3).

mod common;

use std::path::Path;

use common::{classifier_model, detector_model, root, short_detector_model};
use emonet::cli::classify::{self, ClassifyArgs};
use emonet::config::Settings;
use emonet::pipeline::Pipeline;
use emonet::vision::{DetectorSettings, EmotionClassifier, Face, FaceDetector, PixelRect};
use image::RgbImage;

/// The short-range BlazeFace: the follower of every range, and `range = "short"`.
fn detector_settings() -> DetectorSettings {
    DetectorSettings {
        range: emonet::config::DetectorRange::Short,
        model: short_detector_model(),
        ..DetectorSettings::default()
    }
}

fn detector() -> FaceDetector {
    FaceDetector::load(&detector_settings()).expect("load detector")
}

fn classifier() -> EmotionClassifier {
    let p = classifier_model();
    EmotionClassifier::load(&p).unwrap_or_else(|e| panic!("load {}: {e:#}", p.display()))
}

/// The daemon's default settings with the checkout's models: what `emonet classify` uses.
fn default_pipeline() -> Pipeline {
    let mut s = Settings::default();
    s.use_models_in(&root().join("models"));
    s.classifier.reuse.max_frames = 0;
    Pipeline::load(&s).expect("load pipeline")
}

fn load(name: &str) -> RgbImage {
    emonet::frame::read_image(&root().join("tests/data").join(name)).expect("test image")
}

fn center(f: &Face) -> (f32, f32) {
    (f.bbox.x + f.bbox.w / 2.0, f.bbox.y + f.bbox.h / 2.0)
}

/// The astronaut's face spans about x 170..280, y 60..190 of the 512×512 photo.
fn assert_astronaut_face(f: &Face) {
    let (cx, cy) = center(f);
    assert!((0.38..0.50).contains(&cx), "face centre x {cx}: {f:?}");
    assert!((0.17..0.32).contains(&cy), "face centre y {cy}: {f:?}");
    assert!(
        (0.12..0.35).contains(&f.bbox.w),
        "face width {}: {f:?}",
        f.bbox.w
    );
    assert!(
        (0.12..0.35).contains(&f.bbox.h),
        "face height {}: {f:?}",
        f.bbox.h
    );
    assert!(f.score > 0.7, "score {}", f.score);
    assert_eq!(f.keypoints.len(), 6);
    // eyes (key points 0, 1) inside the box, in its upper half, the subject's right eye on the
    // image's left; mouth (3) below the eyes
    let (re, le, mouth) = (f.keypoints[0], f.keypoints[1], f.keypoints[3]);
    for (x, y) in [re, le, mouth] {
        assert!(x > f.bbox.x && x < f.bbox.x + f.bbox.w, "{f:?}");
        assert!(y > f.bbox.y && y < f.bbox.y + f.bbox.h, "{f:?}");
    }
    assert!(re.0 < le.0, "{f:?}");
    assert!(mouth.1 > re.1 && mouth.1 > le.1, "{f:?}");
}

#[test]
fn detects_the_astronaut() {
    let faces = detector().detect(&load("astronaut.png")).unwrap();
    assert_eq!(faces.len(), 1, "{faces:#?}");
    assert_astronaut_face(&faces[0]);
}

#[test]
fn no_face_in_coffee() {
    let faces = detector().detect(&load("coffee.png")).unwrap();
    assert!(faces.is_empty(), "{faces:#?}");
}

/// Letterboxing maps back correctly: the astronaut's head and shoulders pasted into a wide and a
/// tall canvas are found at the corresponding place. (BlazeFace short range wants faces of
/// roughly 20 % of the frame or more, so the canvases stay small.)
#[test]
fn boxes_map_back_through_the_letterbox() {
    let astro = load("astronaut.png");
    let det = detector();
    let reference = det.detect(&astro).unwrap().remove(0);
    let (rx, ry) = center(&reference);
    // 300×300 crop at (100, 0) of the 512×512 photo: the face centre in crop pixels
    let crop = image::imageops::crop_imm(&astro, 100, 0, 300, 300).to_image();
    let (fx, fy) = (rx * 512.0 - 100.0, ry * 512.0);
    let face_w = reference.bbox.w * 512.0;

    // 450×300 canvas, crop at x = 150
    let mut wide = RgbImage::from_pixel(450, 300, image::Rgb([90, 90, 90]));
    image::imageops::replace(&mut wide, &crop, 150, 0);
    let faces = det.detect(&wide).unwrap();
    assert_eq!(faces.len(), 1, "{faces:#?}");
    let (cx, cy) = center(&faces[0]);
    let (wx, wy) = ((150.0 + fx) / 450.0, fy / 300.0);
    assert!((cx - wx).abs() < 0.02, "x {cx} vs {wx}");
    assert!((cy - wy).abs() < 0.03, "y {cy} vs {wy}");
    assert!(
        (faces[0].bbox.w * 450.0 - face_w).abs() < 0.15 * face_w,
        "{faces:?}"
    );

    // 300×450 canvas, crop at y = 100
    let mut tall = RgbImage::from_pixel(300, 450, image::Rgb([200, 200, 200]));
    image::imageops::replace(&mut tall, &crop, 0, 100);
    let faces = det.detect(&tall).unwrap();
    assert_eq!(faces.len(), 1, "{faces:#?}");
    let (cx, cy) = center(&faces[0]);
    let (wx, wy) = (fx / 300.0, (100.0 + fy) / 450.0);
    assert!((cx - wx).abs() < 0.03, "x {cx} vs {wx}");
    assert!((cy - wy).abs() < 0.02, "y {cy} vs {wy}");
    assert!(
        (faces[0].bbox.w * 300.0 - face_w).abs() < 0.15 * face_w,
        "{faces:?}"
    );
}

#[test]
fn settings_limit_and_threshold() {
    let img = load("astronaut.png");
    let mut det = detector();
    det.set_settings(DetectorSettings {
        score_threshold: Some(0.999),
        ..detector_settings()
    });
    assert!(det.detect(&img).unwrap().is_empty());
    det.set_settings(DetectorSettings {
        score_threshold: Some(0.5),
        max_faces: 0,
        ..detector_settings()
    });
    assert!(det.detect(&img).unwrap().is_empty());
    det.set_settings(DetectorSettings {
        weighted_nms: false,
        ..detector_settings()
    });
    let faces = det.detect(&img).unwrap();
    assert_eq!(faces.len(), 1);
    assert_astronaut_face(&faces[0]);
}

#[test]
fn classifier_metadata_is_read() {
    let c = classifier();
    let m = c.meta();
    assert!(m.labels.len() == 7 || m.labels.len() == 8, "{:?}", m.labels);
    for l in [
        "angry", "disgust", "fear", "happy", "neutral", "sad", "surprise",
    ] {
        assert!(
            m.labels.iter().any(|x| x == l),
            "missing {l} in {:?}",
            m.labels
        );
    }
    assert!(!m.name.is_empty());
    assert_eq!(m.mean.len(), m.channels);
}

#[test]
fn smiling_astronaut_is_happy() {
    let img = load("astronaut.png");
    let faces = detector().detect(&img).unwrap();
    assert_eq!(faces.len(), 1);
    let scores = classifier().classify_face(&img, &faces[0]).unwrap();
    assert!((scores.scores.iter().sum::<f32>() - 1.0).abs() < 1e-4);
    assert_eq!(scores.top_label(), "happy", "{scores:?}");
    assert!(scores.top().1 > 0.5, "{scores:?}");
}

#[test]
fn classify_crop_matches_face_path_on_the_same_region() {
    // Crop the face by hand (the square classify_face uses) and classify it as a crop: same
    // answer, close probabilities.
    let img = load("astronaut.png");
    let c = classifier();
    let face = detector().detect(&img).unwrap().remove(0);
    let (l, t, w, h) = emonet::vision::classify::face_crop_rect(
        img.width(),
        img.height(),
        &face.bbox,
        c.meta().face_margin,
    )
    .unwrap();
    let crop = image::imageops::crop_imm(&img, l as u32, t as u32, w as u32, h as u32).to_image();
    let a = c.classify_crop(&crop).unwrap();
    let b = c.classify_face(&img, &face).unwrap();
    assert_eq!(a.top_label(), b.top_label());
    assert!((a.top().1 - b.top().1).abs() < 0.1, "{a:?} vs {b:?}");
}

#[test]
fn detector_file_is_not_a_classifier() {
    for p in [detector_model(), short_detector_model()] {
        let e = format!("{:#}", EmotionClassifier::load(&p).unwrap_err());
        let file = p.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            e.contains(&file) && e.contains("metadata_props lacks `emonet."),
            "{e}"
        );
    }
    let e = format!(
        "{:#}",
        EmotionClassifier::load(Path::new("/nonexistent/m.onnx")).unwrap_err()
    );
    assert!(e.contains("/nonexistent/m.onnx"), "{e}");
}

#[test]
fn classify_image_json_and_errors() {
    let pipeline = default_pipeline();
    let cls = &pipeline.classifier;
    let r = classify::classify_image(&pipeline, &root().join("tests/data/astronaut.png")).unwrap();
    let v = serde_json::to_value(&r).unwrap();
    assert_eq!(v["width"], 512);
    assert_eq!(v["height"], 512);
    let faces = v["faces"].as_array().unwrap();
    assert_eq!(faces.len(), 1);
    let f = &faces[0];
    for k in ["x", "y", "w", "h"] {
        let x = f["box"][k].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&x), "{k} = {x}");
    }
    assert_eq!(f["emotion"], "happy");
    let scores = f["scores"].as_object().unwrap();
    assert_eq!(scores.len(), cls.meta().labels.len());
    assert_eq!(f["confidence"], scores["happy"]);

    let r = classify::classify_image(&pipeline, &root().join("tests/data/coffee.png")).unwrap();
    assert!(r.faces.is_empty());

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.png");
    std::fs::write(&bad, b"definitely not a png").unwrap();
    assert!(classify::classify_image(&pipeline, &bad).is_err());

    // run(): prints lines, then fails because one image failed
    let args = ClassifyArgs {
        images: vec![root().join("tests/data/coffee.png"), bad],
        model: classifier_model(),
        range: emonet::config::DetectorRange::Short,
        detector: Some(short_detector_model()),
        annotate: None,
        score_threshold: Some(0.5),
        nms_iou: 0.3,
        max_faces: 10,
    };
    let e = classify::run(&args).unwrap_err().to_string();
    assert!(e.contains("1 of 2"), "{e}");
}

/// The daemon shares loaded models with its inference worker thread.
#[test]
fn models_are_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<FaceDetector>();
    check::<EmotionClassifier>();
}

/// `emonet classify` (the binary, with its default options) and `emonet run`'s per-frame path
/// (frames from its replay source, the daemon's default `[detector]` and `[classifier]`
/// settings) find the same faces with the same detector scores and class probabilities on every
/// sample frame. Each frame is compared on its own: `classifier.reuse` only ever carries scores
/// between consecutive frames of one stream.
#[test]
fn classify_and_run_agree_on_the_sample_frames() {
    use emonet::camera::{FrameSource, ReplaySource};
    let frames = root().join("samples/frames");
    let mut source = ReplaySource::open(&frames, 0.0, false).unwrap();
    let files = emonet::camera::replay::list_images(&frames).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_emonet"))
        .current_dir(root())
        .arg("classify")
        .args(&files)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), files.len());

    let mut settings = Settings::default();
    settings.use_models_in(&root().join("models"));
    let pipeline = Pipeline::load(&settings).unwrap();
    let mut faces_seen = 0;
    for (file, line) in files.iter().zip(&lines) {
        let frame = source.next_frame().unwrap().expect("one frame per file");
        let (faces, _) = pipeline
            .process(&frame.image, &mut pipeline.new_stream())
            .unwrap();
        let got = line["faces"].as_array().unwrap();
        let name = file.display();
        assert_eq!(got.len(), faces.len(), "{name}: {line}");
        for (g, (face, scores)) in got.iter().zip(&faces) {
            let num = |v: &serde_json::Value| v.as_f64().unwrap() as f32;
            assert_eq!(num(&g["score"]), face.score, "{name}");
            let b = face.bbox;
            for (k, v) in [("x", b.x), ("y", b.y), ("w", b.w), ("h", b.h)] {
                assert_eq!(num(&g["box"][k]), v, "{name} box.{k}");
            }
            for (label, p) in scores.labels.iter().zip(&scores.scores) {
                assert_eq!(num(&g["scores"][label.as_str()]), *p, "{name} {label}");
            }
        }
        faces_seen += faces.len();
    }
    assert!(faces_seen > 0, "the sample frames hold faces");
}

fn far_detector() -> FaceDetector {
    FaceDetector::load(&DetectorSettings {
        range: emonet::config::DetectorRange::Far,
        model: common::model(emonet::config::FAR_RANGE_DETECTOR_FILE),
        ..DetectorSettings::default()
    })
    .expect("load far-range detector")
}

/// The shipped CenterFace computes its wide blocks in channel groups
/// (`models/tools/convert_centerface.py`), so no tensor of its optimized plan is larger than a few
/// MB: the original file's 96-channel 144×192 activation (10.6 MB) was most of the far
/// detector's working memory.
#[test]
fn far_detector_has_no_wide_activation() {
    let path = common::model(emonet::config::FAR_RANGE_DETECTOR_FILE);
    let (w, h) = emonet::config::DetectorRange::Far.input_dims();
    let m = emonet::vision::model::load(&path, &[1, 3, h, w]).unwrap();
    let largest = m
        .plan
        .model()
        .nodes()
        .iter()
        .flat_map(|n| n.outputs.iter())
        .filter_map(|o| Some(o.fact.shape.as_concrete()?.iter().product::<usize>() * 4))
        .max()
        .unwrap();
    eprintln!("largest activation of {}: {largest} B", path.display());
    assert!(largest <= 3_000_000, "largest activation {largest} B");
}

/// CenterFace (`range = "far"`) finds the astronaut, with its five landmarks, and draws the box
/// BlazeFace draws: square in pixels and overlapping the short-range box closely, so the
/// classifier crops the same face either way. Nothing on the coffee cup.
#[test]
fn far_range_finds_the_astronaut_with_a_blazeface_box() {
    let img = load("astronaut.png");
    let det = far_detector();
    assert_eq!(det.range(), emonet::config::DetectorRange::Far);
    let faces = det.detect(&img).unwrap();
    assert_eq!(faces.len(), 1, "{faces:#?}");
    let f = &faces[0];
    let (cx, cy) = center(f);
    assert!(
        (0.38..0.50).contains(&cx) && (0.17..0.32).contains(&cy),
        "{f:?}"
    );
    assert!((f.bbox.w - f.bbox.h).abs() < 1e-3, "not square: {f:?}");
    assert_eq!(f.keypoints.len(), 5);
    let (le, re, nose) = (f.keypoints[0], f.keypoints[1], f.keypoints[2]);
    assert!(le.0 < nose.0 && nose.0 < re.0, "{f:?}");
    assert!(nose.1 > le.1 && nose.1 > re.1, "{f:?}");
    let short = detector().detect(&img).unwrap().remove(0);
    let iou = f.bbox.iou(&short.bbox);
    assert!(
        iou > 0.7,
        "IoU with the short-range box {iou}: {f:?} vs {short:?}"
    );
    assert!(det.detect(&load("coffee.png")).unwrap().is_empty());
}

/// A visitor a few metres away: the astronaut's head scaled to a 48-px-wide face, twice, in a
/// 640×480 frame. The far range finds both where they are; the short range finds neither.
#[test]
fn far_range_finds_faces_the_short_range_misses() {
    let head = SmallHead::new(48.0);
    let mut frame = RgbImage::from_pixel(640, 480, image::Rgb([110, 120, 115]));
    let truth = [
        head.paste(&mut frame, 90, 140),
        head.paste(&mut frame, 470, 300),
    ];
    let faces = far_detector().detect(&frame).unwrap();
    assert_eq!(faces.len(), 2, "{faces:#?}");
    for want in &truth {
        let best = faces.iter().map(|f| f.bbox.iou(want)).fold(0.0, f32::max);
        assert!(best > 0.5, "no face near {want:?}: {faces:#?}");
    }
    let short = detector().detect(&frame).unwrap();
    assert!(
        short.is_empty(),
        "the short range now sees 48-px faces: {short:#?}"
    );
}

/// `detect_in` looks at a region only and maps what it finds back to the whole frame: the
/// astronaut's face found in a square around it has the box found on the whole photo; a region
/// outside the frame is refused.
#[test]
fn detection_in_a_region_maps_back_to_the_frame() {
    let img = load("astronaut.png");
    let det = detector();
    let whole = det.detect(&img).unwrap().remove(0);
    let region = PixelRect::new(130, 20, 240, 240);
    let found = det.detect_in(&img, region).unwrap();
    assert_eq!(found.len(), 1, "{found:#?}");
    let iou = found[0].bbox.iou(&whole.bbox);
    assert!(iou > 0.8, "IoU {iou}: {:?} vs {whole:?}", found[0]);
    let err = det
        .detect_in(&img, PixelRect::new(400, 400, 200, 200))
        .unwrap_err()
        .to_string();
    assert!(err.contains("outside the 512x512 frame"), "{err}");
}

/// The astronaut's head scaled so her face is `width` px wide, and the box the far detector
/// draws around it there, for pasting at (x, y) into a 640×480 frame.
struct SmallHead {
    head: RgbImage,
    /// The face box relative to the head image's top-left corner, in pixels: x, y, w, h.
    face: (f32, f32, f32, f32),
}

impl SmallHead {
    fn new(width: f32) -> SmallHead {
        let astro = load("astronaut.png");
        let reference = far_detector().detect(&astro).unwrap().remove(0);
        // head and shoulders region, scaled so the face (~110 px in the photo) is `width` wide
        let (rx, ry, rw, rh) = (120u32, 10u32, 220u32, 240u32);
        let scale = width / (reference.bbox.w * 512.0);
        let head = image::imageops::crop_imm(&astro, rx, ry, rw, rh).to_image();
        let (hw, hh) = (
            (rw as f32 * scale).round() as u32,
            (rh as f32 * scale).round() as u32,
        );
        let b = &reference.bbox;
        SmallHead {
            head: image::imageops::resize(&head, hw, hh, image::imageops::FilterType::Triangle),
            face: (
                (b.x * 512.0 - rx as f32) * scale,
                (b.y * 512.0 - ry as f32) * scale,
                b.w * 512.0 * scale,
                b.h * 512.0 * scale,
            ),
        }
    }

    /// Pastes the head at (x, y); returns the face's box in the frame.
    fn paste(&self, frame: &mut RgbImage, x: u32, y: u32) -> emonet::vision::BBox {
        image::imageops::replace(frame, &self.head, x as i64, y as i64);
        let (fx, fy, fw, fh) = self.face;
        let (w, h) = (frame.width() as f32, frame.height() as f32);
        emonet::vision::BBox {
            x: (x as f32 + fx) / w,
            y: (y as f32 + fy) / h,
            w: fw / w,
            h: fh / h,
        }
    }
}

/// `detector.follow`: two visitors far away (48-px faces) walking across the frame are found by
/// the far detector on one frame in five and followed by the short-range one on the frames
/// between — which on the whole frame finds neither — each box where the face is on every frame.
#[test]
fn far_faces_are_followed_between_full_detections() {
    let mut s = Settings::default();
    s.use_models_in(&root().join("models"));
    s.detector.range = emonet::config::DetectorRange::Far;
    s.detector.apply_range();
    s.detector.reuse.max_frames = 0;
    s.detector.follow.every = Some(5);
    s.classifier.reuse.max_frames = 0;
    let pipeline = Pipeline::load(&s).expect("load pipeline");
    let follower = pipeline.follower.as_ref().expect("a follower is loaded");
    assert_eq!(follower.range(), emonet::config::DetectorRange::Short);
    let head = SmallHead::new(48.0);
    let mut stream = pipeline.new_stream();
    let mut followed = 0;
    for i in 0..12u32 {
        let mut frame = RgbImage::from_pixel(640, 480, image::Rgb([110, 120, 115]));
        // one walks right 9 px a frame, the other left and down
        let truth = [
            head.paste(&mut frame, 60 + 9 * i, 140),
            head.paste(&mut frame, 480 - 7 * i, 260 + 4 * i),
        ];
        let (faces, t) = pipeline.process(&frame, &mut stream).unwrap();
        assert_eq!(t.detection_followed, i % 5 != 0, "frame {i}");
        followed += usize::from(t.detection_followed);
        assert_eq!(faces.len(), 2, "frame {i}: {faces:#?}");
        for want in &truth {
            let best = faces
                .iter()
                .map(|(f, _)| f.bbox.iou(want))
                .fold(0.0, f32::max);
            assert!(best > 0.5, "frame {i}: no face near {want:?}: {faces:#?}");
        }
        if i == 1 {
            assert!(
                follower.detect(&frame).unwrap().is_empty(),
                "the short range sees 48-px faces on the whole frame: following proves nothing"
            );
        }
    }
    assert_eq!(followed, 9);
}

/// Following needs the short-range model beside the configured detector: without it, loading
/// fails naming `detector.follow` and the missing file.
#[test]
fn follow_without_the_short_range_file_names_the_setting_and_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let far = dir.path().join(emonet::config::FAR_RANGE_DETECTOR_FILE);
    std::fs::copy(common::model(emonet::config::FAR_RANGE_DETECTOR_FILE), &far).unwrap();
    let mut s = Settings::default();
    s.use_models_in(&root().join("models"));
    s.detector.range = emonet::config::DetectorRange::Far;
    s.detector.model = far;
    s.detector.follow.every = Some(5);
    let e = match Pipeline::load(&s) {
        Ok(_) => panic!(
            "loaded without {}",
            emonet::config::SHORT_RANGE_DETECTOR_FILE
        ),
        Err(e) => format!("{e:#}"),
    };
    let missing = dir.path().join(emonet::config::SHORT_RANGE_DETECTOR_FILE);
    assert!(
        e.contains("detector.follow") && e.contains(&missing.display().to_string()),
        "{e}"
    );
    s.detector.follow.every = Some(0);
    Pipeline::load(&s).expect("without following the far file alone is enough");
}

/// A detector file of another range than `detector.range`, or no detector at all, is refused
/// with the file and both ranges named.
#[test]
fn detector_file_must_match_the_range() {
    let e = FaceDetector::load(&DetectorSettings {
        range: emonet::config::DetectorRange::Far,
        ..detector_settings()
    })
    .unwrap_err();
    let e = format!("{e:#}");
    assert!(
        e.contains(emonet::config::SHORT_RANGE_DETECTOR_FILE)
            && e.contains("short-range")
            && e.contains("detector.range = far"),
        "{e}"
    );
    let e = FaceDetector::load(&DetectorSettings {
        model: classifier_model(),
        ..detector_settings()
    })
    .unwrap_err();
    let e = format!("{e:#}");
    assert!(
        e.contains(emonet::config::DEFAULT_CLASSIFIER_FILE) && e.contains("[1, 3, 288, 384]"),
        "{e}"
    );
}

/// `detector.reuse` on real frames: a repeated frame, and the same frame with sensor-like noise,
/// take the last detection's faces (which a fresh detection of them matches); on the sample
/// frames, where the face moves and changes every frame, the detector runs on every one.
#[test]
fn detections_are_reused_only_on_an_unchanged_scene() {
    let pipeline = default_pipeline(); // detector.reuse at its default: 2 frames, 2 grey levels
    let frames: Vec<RgbImage> = (0..20)
        .map(|i| {
            let p = root().join(format!("samples/frames/{i:04}.jpg"));
            emonet::frame::read_image(&p).expect("sample frame")
        })
        .collect();
    let with_face = frames
        .iter()
        .find(|f| !pipeline.detector.detect(f).unwrap().is_empty())
        .expect("a sample frame with a face");
    let mut noisy = with_face.clone();
    let mut state = 0x9e37_79b9u32;
    for p in noisy.pixels_mut() {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let n = (state % 5) as i16 - 2; // ±2 levels
        p.0 = p.0.map(|v| (v as i16 + n).clamp(0, 255) as u8);
    }
    let mut stream = pipeline.new_stream();
    let (first, t) = pipeline.process(with_face, &mut stream).unwrap();
    assert!(!t.detection_reused && !first.is_empty());
    let (again, t) = pipeline.process(&noisy, &mut stream).unwrap();
    assert!(
        t.detection_reused,
        "a frame that only gained noise was detected again"
    );
    let fresh = pipeline.detector.detect(&noisy).unwrap();
    assert_eq!(again.len(), fresh.len());
    for ((kept, _), new) in again.iter().zip(&fresh) {
        assert!(kept.bbox.iou(&new.bbox) > 0.9, "{kept:?} vs {new:?}");
    }

    let mut stream = pipeline.new_stream();
    for (i, frame) in frames.iter().enumerate() {
        let (faces, t) = pipeline.process(frame, &mut stream).unwrap();
        let fresh = pipeline.detector.detect(frame).unwrap();
        assert_eq!(faces.len(), fresh.len(), "frame {i}");
        if i > 0 && frames[i - 1] != *frame {
            assert!(
                !t.detection_reused,
                "frame {i} took frame {}'s faces",
                i - 1
            );
        }
    }
}
