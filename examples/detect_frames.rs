//! Runs emonet's face detector (the daemon's `FaceDetector`, tract) over image files and prints
//! one JSON line per image: the boxes in pixels and the detector's time for that image.
//! Used by `models/tools/detection_bench/run.sh`.
//!
//! ```text
//! cargo run --release --example detect_frames -- --range far FRAME…
//! {"frame":"a.png","ms":4.1,"faces":[[x, y, w, h, score], …]}
//! ```
//! `--tiles` runs the model on the whole frame and on six overlapping 256×256 tiles of a
//! 640×480 frame (3 × 2, scaled to the frame size otherwise), merging the boxes by plain NMS:
//! the "short range on tiles" alternative to the full-range model.
//! `--follow` detects on the frame, then follows those faces on the same frame once, as the
//! daemon does between full detections (`detector.follow`, the short-range model in a region
//! around each face), and reports the followed faces and the time of that followed frame: what a
//! face that stays in place keeps between full detections (`--follow-motion PX`: a face that
//! moved PX pixels to the right since).

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;
use emonet::follow::{FaceFollower, FollowSettings};
use emonet::vision::{BBox, DetectorRange, DetectorSettings, Face, FaceDetector};
use image::RgbImage;

#[derive(Parser)]
struct Args {
    /// `short`, `full` or `far`: which shipped detector (in `models/`).
    #[arg(long, default_value = "short")]
    range: String,
    /// Minimum face score (default: the range's).
    #[arg(long)]
    score_threshold: Option<f32>,
    /// At most this many faces per image (the daemon's default is 8; the benchmark's group-photo
    /// windows hold more).
    #[arg(long, default_value_t = 100)]
    max_faces: usize,
    /// Also run on 3 × 2 overlapping tiles and merge.
    #[arg(long)]
    tiles: bool,
    /// Report the faces followed on the frame after a full detection (see above).
    #[arg(long)]
    follow: bool,
    /// `detector.follow.zoom` for `--follow`.
    #[arg(long, default_value_t = FollowSettings::default().zoom)]
    zoom: f32,
    /// With `--follow`: the full detection sees the frame this many pixels to the left, so the
    /// faces have moved that far right when they are followed.
    #[arg(long, default_value_t = 0)]
    follow_motion: u32,
    /// `detector.follow.score_threshold` for `--follow` (default: the daemon's).
    #[arg(long)]
    follow_threshold: Option<f32>,
    /// Runs per image; the reported time is the median.
    #[arg(long, default_value_t = 1)]
    repeat: usize,
    frames: Vec<PathBuf>,
}

/// Tiles (x, y, side) covering a `w`×`h` frame: 3 columns, 2 rows, side 0.4 × width.
fn tiles(w: u32, h: u32) -> Vec<(u32, u32, u32)> {
    let side = (w * 2 / 5).min(h);
    let xs = [0, (w - side) / 2, w - side];
    let ys = [0, h - side];
    ys.iter()
        .flat_map(|&y| xs.iter().map(move |&x| (x, y, side)))
        .collect()
}

/// Faces in pixels: `[x, y, w, h, score]`.
fn detect(det: &FaceDetector, img: &RgbImage, use_tiles: bool) -> Result<Vec<[f32; 5]>> {
    let (w, h) = (img.width() as f32, img.height() as f32);
    let px = |f: &Face, ox: f32, oy: f32, sw: f32, sh: f32| {
        [
            ox + f.bbox.x * sw,
            oy + f.bbox.y * sh,
            f.bbox.w * sw,
            f.bbox.h * sh,
            f.score,
        ]
    };
    let mut out: Vec<[f32; 5]> = det
        .detect(img)?
        .iter()
        .map(|f| px(f, 0.0, 0.0, w, h))
        .collect();
    if use_tiles {
        for (x, y, s) in tiles(img.width(), img.height()) {
            let tile = image::imageops::crop_imm(img, x, y, s, s).to_image();
            for f in det.detect(&tile)? {
                out.push(px(&f, x as f32, y as f32, s as f32, s as f32));
            }
        }
        out.sort_by(|a, b| b[4].total_cmp(&a[4]));
        let bbox = |d: &[f32; 5]| BBox {
            x: d[0],
            y: d[1],
            w: d[2],
            h: d[3],
        };
        let mut kept: Vec<[f32; 5]> = Vec::new();
        for d in out {
            if kept.iter().all(|k| bbox(k).iou(&bbox(&d)) <= 0.3) {
                kept.push(d);
            }
        }
        out = kept;
    }
    Ok(out)
}

/// `img` with everything `dx` pixels further left (the right edge repeated): the frame before,
/// if everything has since moved `dx` pixels right.
fn moved_back(img: &RgbImage, dx: u32) -> RgbImage {
    RgbImage::from_fn(img.width(), img.height(), |x, y| {
        *img.get_pixel((x + dx).min(img.width() - 1), y)
    })
}

/// The faces `det` finds on `img` (as it was `motion` pixels to the left, one frame earlier),
/// followed on `img` by `follower`, in pixels, and the time of the followed frame.
fn follow_once(
    det: &FaceDetector,
    follower: &FaceDetector,
    zoom: f32,
    motion: u32,
    img: &RgbImage,
) -> Result<(Vec<[f32; 5]>, Duration)> {
    let mut follow = FaceFollower::new(FollowSettings {
        every: Some(2),
        zoom,
        ..FollowSettings::default()
    });
    let before = moved_back(img, motion);
    follow.faces(&before, || det.detect(&before), |_| unreachable!())?;
    let t = Instant::now();
    let (faces, followed) = follow.faces(
        img,
        || unreachable!(),
        |region| follower.detect_in(img, region),
    )?;
    let t = t.elapsed();
    anyhow::ensure!(followed, "the second frame was not followed");
    let (w, h) = (img.width() as f32, img.height() as f32);
    let px = |f: &Face| {
        [
            f.bbox.x * w,
            f.bbox.y * h,
            f.bbox.w * w,
            f.bbox.h * h,
            f.score,
        ]
    };
    Ok((faces.iter().map(px).collect(), t))
}

fn main() -> Result<()> {
    let args = Args::parse();
    let range = match args.range.as_str() {
        "short" => DetectorRange::Short,
        "full" => DetectorRange::Full,
        "far" => DetectorRange::Far,
        r => anyhow::bail!("--range {r:?}: expected short, full or far"),
    };
    let settings = DetectorSettings {
        range,
        model: PathBuf::from("models").join(range.default_file()),
        score_threshold: args.score_threshold,
        max_faces: args.max_faces,
        ..DetectorSettings::default()
    };
    let det = FaceDetector::load(&settings)?;
    let follower = if args.follow {
        let mut follow = settings.follow;
        if let Some(t) = args.follow_threshold {
            follow.score_threshold = t;
        }
        Some(FaceDetector::load(
            &DetectorSettings {
                follow,
                ..settings.clone()
            }
            .follower(),
        )?)
    } else {
        None
    };
    let mut stdout = std::io::stdout().lock();
    for path in &args.frames {
        let img = image::open(path)
            .with_context(|| format!("cannot read {}", path.display()))?
            .to_rgb8();
        let mut times = Vec::with_capacity(args.repeat);
        let mut faces = Vec::new();
        for _ in 0..args.repeat.max(1) {
            let t = match &follower {
                None => {
                    let t = Instant::now();
                    faces = detect(&det, &img, args.tiles)?;
                    t.elapsed()
                }
                Some(follower) => {
                    let (followed, t) =
                        follow_once(&det, follower, args.zoom, args.follow_motion, &img)?;
                    faces = followed;
                    t
                }
            };
            times.push(t.as_secs_f64() * 1e3);
        }
        times.sort_by(f64::total_cmp);
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let line = serde_json::json!({"frame": name, "ms": times[times.len() / 2], "faces": faces});
        writeln!(stdout, "{line}")?;
    }
    Ok(())
}
