//! Criterion benches, one per pipeline stage, on the bundled sample frame (640×480, one face) and
//! the shipped models. Run with `cargo bench --bench stages` (all) or e.g.
//! `cargo bench --bench stages -- classify` (one group). One thread throughout (tract's default).
//!
//! Extra classifier files can be timed with `EMONET_BENCH_CLASSIFIERS=a.onnx,b.onnx`.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use criterion::{criterion_group, criterion_main, Criterion};
use fast_image_resize::pixels::F32;
use fast_image_resize::Resizer;
use tract_onnx::prelude::*;

use emonet::config::{Settings, TrackerSettings, DEFAULT_CLASSIFIER_FILE, DEFAULT_DETECTOR_FILE};
use emonet::event::EventPayload;
use emonet::follow::FollowSettings;
use emonet::frame::decode_image;
use emonet::mqtt::Outbox;
use emonet::pipeline::{Pipeline, Stream};
use emonet::reuse::{ReuseSettings, SceneReuseSettings};
use emonet::track::Tracker;
use emonet::vision::classify::{face_crop_rect, resize_region};
use emonet::vision::{DetectorSettings, EmotionClassifier, FaceDetector};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn model(file: &str) -> PathBuf {
    root().join("models").join(file)
}

fn frame_bytes() -> Vec<u8> {
    std::fs::read(root().join("samples/frames/0000.jpg")).expect("samples/frames/0000.jpg")
}

fn classifiers() -> Vec<PathBuf> {
    let mut v = vec![
        model(DEFAULT_CLASSIFIER_FILE),
        model("emotion-mnv2-int8.onnx"),
        model("emotion-mnv2-fp32.onnx"),
    ];
    if let Ok(extra) = std::env::var("EMONET_BENCH_CLASSIFIERS") {
        v.extend(
            extra
                .split(',')
                .filter(|s| !s.is_empty())
                .map(PathBuf::from),
        );
    }
    v.into_iter().filter(|p| p.is_file()).collect()
}

fn short(p: &Path) -> String {
    p.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn detector() -> FaceDetector {
    FaceDetector::load(&DetectorSettings {
        model: model(DEFAULT_DETECTOR_FILE),
        ..DetectorSettings::default()
    })
    .expect("detector")
}

fn bench_decode(c: &mut Criterion) {
    let bytes = frame_bytes();
    c.bench_function("decode/jpeg_640x480", |b| {
        b.iter(|| decode_image(black_box(&bytes)).unwrap())
    });
}

fn bench_detect(c: &mut Criterion) {
    let img = decode_image(&frame_bytes()).unwrap();
    let det = detector();
    assert_eq!(
        det.detect(&img).unwrap().len(),
        1,
        "sample frame has one face"
    );
    c.bench_function("detect/blazeface_640x480", |b| {
        b.iter(|| det.detect(black_box(&img)).unwrap())
    });
}

fn bench_crop_resize(c: &mut Criterion) {
    // The classifier's crop + luma + float resize (vision::classify::resize_region), alone.
    let img = decode_image(&frame_bytes()).unwrap();
    let face = detector().detect(&img).unwrap().remove(0);
    let rect = face_crop_rect(img.width(), img.height(), &face.bbox, 0.1).unwrap();
    let (mut resizer, mut window) = (Resizer::new(), Vec::new());
    let mut out = vec![F32::new(0.0); 64 * 64];
    let luma = |p: [u8; 3]| F32::new(emonet::vision::luma(p));
    c.bench_function("crop_resize/face_to_64x64", |b| {
        b.iter(|| {
            let (img, rect) = (black_box(&img), black_box(rect));
            resize_region(
                &mut resizer,
                img,
                rect,
                luma,
                &mut window,
                &mut out,
                (64, 64),
            )
            .unwrap();
        })
    });
}

fn bench_classify(c: &mut Criterion) {
    let img = decode_image(&frame_bytes()).unwrap();
    let face = detector().detect(&img).unwrap().remove(0);
    let mut g = c.benchmark_group("classify");
    for path in classifiers() {
        let clf = EmotionClassifier::load(&path).expect("classifier");
        // crop + resize + normalise + tract + softmax
        g.bench_function(format!("face/{}", short(&path)), |b| {
            b.iter(|| clf.classify_face(black_box(&img), &face).unwrap())
        });
        // tract alone on the prepared input tensor
        let shape = clf.meta().input_shape();
        let model = emonet::vision::model::load(&path, &shape).expect("plan");
        let mut state = emonet::vision::model::PlanState::new(&model.plan).unwrap();
        let input = emonet::cli::bench::raw_input(&shape);
        g.bench_function(format!("tract/{}", short(&path)), |b| {
            b.iter(|| state.run(tvec!(input.clone().into_tvalue())).unwrap())
        });
    }
    g.finish();
}

fn bench_track_publish(c: &mut Criterion) {
    let img = decode_image(&frame_bytes()).unwrap();
    let det = detector();
    let clf = EmotionClassifier::load(model(DEFAULT_CLASSIFIER_FILE)).unwrap();
    let face = det.detect(&img).unwrap().remove(0);
    let scores = clf.classify_face(&img, &face).unwrap();
    let faces = vec![(face, scores)];
    let mut tracker = Tracker::new(TrackerSettings::default());
    let mut now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_764_000_000);
    c.bench_function("track/one_face_update", |b| {
        b.iter(|| {
            now += Duration::from_millis(33);
            tracker.update(black_box(&faces), now)
        })
    });
    // Produce a real event to serialise: a fresh tracker confirms the face after min_hits.
    let mut t = Tracker::new(TrackerSettings::default());
    let mut ev = None;
    for i in 0..10 {
        let evs = t.update(&faces, now + Duration::from_millis(33 * i));
        if let Some(e) = evs.into_iter().next() {
            ev = Some(e);
            break;
        }
    }
    let ev = ev.expect("tracker reports the face");
    let outbox = Outbox::new(Settings::default().mqtt.queue_capacity);
    let mut seq = 0u64;
    c.bench_function("serialize_publish/event", |b| {
        b.iter(|| {
            seq += 1;
            let payload = EventPayload::from_track_event(black_box(&ev), "bench", seq);
            outbox.push_event(serde_json::to_vec(&payload).unwrap());
        })
    });
}

fn bench_pipeline(c: &mut Criterion) {
    let img = decode_image(&frame_bytes()).unwrap();
    let mut g = c.benchmark_group("pipeline");
    for path in classifiers() {
        let mut s = Settings::default();
        s.detector.model = model(DEFAULT_DETECTOR_FILE);
        s.classifier.model = path.clone();
        let p = Pipeline::load(&s).unwrap();
        // every frame detected and every face classified (no reuse): the full per-frame cost
        let mut every_frame = Stream::new(
            SceneReuseSettings {
                max_frames: 0,
                ..SceneReuseSettings::default()
            },
            FollowSettings::default(),
            ReuseSettings {
                max_frames: 0,
                ..ReuseSettings::default()
            },
        );
        g.bench_function(format!("detect_classify/{}", short(&path)), |b| {
            b.iter(|| p.process(black_box(&img), &mut every_frame).unwrap())
        });
    }
    g.finish();
}

criterion_group! {
    name = stages;
    config = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    targets = bench_decode, bench_detect, bench_crop_resize, bench_classify,
        bench_track_publish, bench_pipeline
}
criterion_main!(stages);
