//! Classifiers with several outputs (heads), run by tract on the tiny two-head fixture
//! `tests/data/two-head-tiny.onnx` (made by `tests/data/make_two_head.py`; it has the shipped
//! model's `ferplus` / `fer2013` output contract, and its heads read the crop's brightness:
//! ferplus says `happy` for bright crops and `sad` for dark ones, fer2013 `surprise` / `angry`).

use std::path::{Path, PathBuf};

use emonet::cli::eval::{evaluate, EvalOptions};
use emonet::vision::EmotionClassifier;
use image::{Rgb, RgbImage};

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/two-head-tiny.onnx")
}

fn gray(v: u8) -> RgbImage {
    RgbImage::from_pixel(24, 24, Rgb([v, v, v]))
}

#[test]
fn ferplus_is_the_default_output_and_every_head_is_computed() {
    let mut c = EmotionClassifier::load(fixture()).unwrap();
    assert_eq!(c.selected_output(), "ferplus");
    assert_eq!(c.labels().len(), 8);
    let white = gray(255);
    let s = c.classify_crop(&white).unwrap();
    assert_eq!((s.top_label(), s.scores.len()), ("happy", 8));
    let all = c.classify_crop_all(&white).unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0], s);
    assert_eq!((all[1].top_label(), all[1].scores.len()), ("surprise", 7));

    c.select_output("fer2013").unwrap();
    assert_eq!(c.labels().len(), 7);
    assert_eq!(c.classify_crop(&gray(0)).unwrap().top_label(), "angry");
    let e = c.select_output("logits").unwrap_err().to_string();
    assert!(
        e.contains("`logits`") && e.contains("ferplus, fer2013"),
        "{e}"
    );
}

/// DIR/<label>/<i>.png, one crop per (label, brightness).
fn tree(dir: &Path, crops: &[(&str, u8)]) {
    for (i, (label, v)) in crops.iter().enumerate() {
        std::fs::create_dir_all(dir.join(label)).unwrap();
        gray(*v)
            .save(dir.join(label).join(format!("{i}.png")))
            .unwrap();
    }
}

#[test]
fn eval_scores_the_head_whose_labels_match_the_folders() {
    let c = EmotionClassifier::load(fixture()).unwrap();
    // surprise/angry exist in both heads: fer2013 matches with no label left over
    let d = tempfile::tempdir().unwrap();
    tree(
        d.path(),
        &[("surprise", 255), ("angry", 0), ("surprise", 230)],
    );
    let r = evaluate(&c, d.path(), &EvalOptions::default()).unwrap();
    assert_eq!((r.output.as_str(), r.metrics.n), ("fer2013", 3));
    assert_eq!(r.metrics.accuracy, 1.0);
    // the ferplus head does not tell these two classes apart (equal logits)
    let opts = EvalOptions {
        head: Some("ferplus".into()),
        ..Default::default()
    };
    let r = evaluate(&c, d.path(), &opts).unwrap();
    assert_eq!(r.output, "ferplus");
    assert!(r.metrics.accuracy < 1.0, "{}", r.metrics.accuracy);

    // a contempt folder only the ferplus head knows
    let d = tempfile::tempdir().unwrap();
    tree(d.path(), &[("happy", 255), ("sad", 0), ("contempt", 255)]);
    let r = evaluate(&c, d.path(), &EvalOptions::default()).unwrap();
    assert_eq!(r.output, "ferplus");
    assert_eq!(r.metrics.n, 3);
    assert!(
        (r.metrics.accuracy - 2.0 / 3.0).abs() < 1e-9,
        "{}",
        r.metrics.accuracy
    );
    let opts = EvalOptions {
        head: Some("fer2013".into()),
        ..Default::default()
    };
    let r = evaluate(&c, d.path(), &opts).unwrap();
    assert_eq!(r.output, "fer2013");
    assert_eq!(r.unknown_folders, ["contempt"]);
    let opts = EvalOptions {
        head: Some("nope".into()),
        ..Default::default()
    };
    let e = evaluate(&c, d.path(), &opts).unwrap_err().to_string();
    assert!(e.contains("nope") && e.contains("ferplus, fer2013"), "{e}");
}
