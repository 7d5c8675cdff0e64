//! Running the models again only when their input may have changed.
//!
//! **Faces** (`classifier.reuse`, [`ScoreReuse`]). The classifier is the most expensive stage
//! per face, and at camera rate a face that has not moved and whose pixels have not changed gives
//! the same scores on the next frame. So each classified face is kept with its box and a tiny
//! luma thumbnail of the box; on the next frames a detection reuses those scores when it overlaps
//! the kept box by at least `min_iou`, its thumbnail differs from the kept one by at most
//! `max_change` grey levels (mean absolute difference), and the scores are at most `max_frames`
//! frames old.
//!
//! **Frames** (`detector.reuse`, [`DetectionReuse`]). The same holds for the detector and a whole
//! frame: when no cell of a 16×12 luma grid over the frame (40×40 px at 640×480, the size of a
//! face at 2–3 m) has changed by more than `max_change` grey levels since the last detection, and
//! that detection is at most `max_frames` frames old, its faces stand. A face that enters or
//! leaves changes its cells by far more than sensor noise moves a cell's mean, so it is detected
//! on that frame; a slighter change waits at most `max_frames` frames. This is what makes the
//! far-range detector affordable on a still scene.
//!
//! Both comparisons are against the input that was last run through the model, so slow drift
//! cannot accumulate into a stale result, and the age limits bound the delay before any change
//! too small to cross the thresholds shows. `max_frames = 0` turns either off.

pub use crate::config::{ReuseSettings, SceneReuseSettings};
use crate::vision::{luma, BBox, EmotionScores, Face};
use anyhow::Result;
use image::RgbImage;

/// Mean luma of each cell of a grid laid over a region of an image (normalised box).
#[derive(Debug, Clone, PartialEq)]
struct Grid(Vec<f32>);

impl Grid {
    /// `cols × rows` cells over `region`, each the mean of `samples × samples` pixels.
    fn of(image: &RgbImage, region: &BBox, (cols, rows): (usize, usize), samples: usize) -> Grid {
        let (w, h) = image.dimensions();
        let mut cells = vec![0.0f32; cols * rows];
        let (nx, ny) = (cols * samples, rows * samples);
        for (gy, row) in cells.chunks_exact_mut(cols).enumerate() {
            for (gx, cell) in row.iter_mut().enumerate() {
                let mut sum = 0.0;
                for sy in 0..samples {
                    let fy = region.y + region.h * ((gy * samples + sy) as f32 + 0.5) / ny as f32;
                    let py = ((fy * h as f32) as i64).clamp(0, h as i64 - 1) as u32;
                    for sx in 0..samples {
                        let fx =
                            region.x + region.w * ((gx * samples + sx) as f32 + 0.5) / nx as f32;
                        let px = ((fx * w as f32) as i64).clamp(0, w as i64 - 1) as u32;
                        sum += luma(image.get_pixel(px, py).0);
                    }
                }
                *cell = sum / (samples * samples) as f32;
            }
        }
        Grid(cells)
    }

    fn abs_diffs<'a>(&'a self, other: &'a Grid) -> impl Iterator<Item = f32> + 'a {
        self.0.iter().zip(&other.0).map(|(a, b)| (a - b).abs())
    }

    fn mean_abs_diff(&self, other: &Grid) -> f32 {
        self.abs_diffs(other).sum::<f32>() / self.0.len() as f32
    }

    fn max_abs_diff(&self, other: &Grid) -> f32 {
        self.abs_diffs(other).fold(0.0, f32::max)
    }
}

/// A face's thumbnail: 8×8 cells of 4×4 samples over its box.
fn face_thumb(image: &RgbImage, bbox: &BBox) -> Grid {
    Grid::of(image, bbox, (8, 8), 4)
}

/// A frame's thumbnail: 16×12 cells of 8×8 samples over the whole frame.
fn scene_thumb(image: &RgbImage) -> Grid {
    let whole = BBox {
        x: 0.0,
        y: 0.0,
        w: 1.0,
        h: 1.0,
    };
    Grid::of(image, &whole, (16, 12), 8)
}

/// The faces of the last detection, with the frame they were found on.
#[derive(Debug)]
struct KeptScene {
    dims: (u32, u32),
    thumb: Grid,
    faces: Vec<Face>,
    /// Frames since the detection.
    age: u32,
}

/// The last detection of one video stream (it compares consecutive frames).
#[derive(Debug)]
pub struct DetectionReuse {
    cfg: SceneReuseSettings,
    kept: Option<KeptScene>,
}

impl DetectionReuse {
    pub fn new(cfg: SceneReuseSettings) -> Self {
        DetectionReuse { cfg, kept: None }
    }

    /// The faces of `image`: the last detection's while the frame has not changed since it and
    /// the detection is recent enough, else those `detect` finds. `true`: reused.
    pub fn faces(
        &mut self,
        image: &RgbImage,
        detect: impl FnOnce() -> Result<Vec<Face>>,
    ) -> Result<(Vec<Face>, bool)> {
        if self.cfg.max_frames == 0 {
            return Ok((detect()?, false));
        }
        let thumb = scene_thumb(image);
        if let Some(k) = &mut self.kept {
            let still = k.dims == image.dimensions()
                && k.age < self.cfg.max_frames
                && k.thumb.max_abs_diff(&thumb) <= self.cfg.max_change;
            if still {
                k.age += 1;
                return Ok((k.faces.clone(), true));
            }
        }
        // Forgotten before detecting, so a failed detection leaves nothing stale behind.
        self.kept = None;
        let faces = detect()?;
        self.kept = Some(KeptScene {
            dims: image.dimensions(),
            thumb,
            faces: faces.clone(),
            age: 0,
        });
        Ok((faces, false))
    }
}

/// A classified face as it was when its scores were computed.
#[derive(Debug, Clone)]
struct Kept {
    bbox: BBox,
    thumb: Grid,
    scores: EmotionScores,
    /// Frames since the classification.
    age: u32,
}

/// How many faces of a frame were classified and how many reused earlier scores.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReuseCounts {
    pub classified: usize,
    pub reused: usize,
}

/// The faces classified on recent frames. One per video stream (it compares consecutive frames).
#[derive(Debug)]
pub struct ScoreReuse {
    cfg: ReuseSettings,
    kept: Vec<Kept>,
}

impl ScoreReuse {
    pub fn new(cfg: ReuseSettings) -> Self {
        ScoreReuse {
            cfg,
            kept: Vec::new(),
        }
    }

    /// Scores for each face of `image`, from `classify` or from a kept classification that still
    /// holds. Faces not seen on this frame are forgotten.
    pub fn scores(
        &mut self,
        image: &RgbImage,
        faces: Vec<Face>,
        mut classify: impl FnMut(&Face) -> Result<EmotionScores>,
    ) -> Result<(Vec<(Face, EmotionScores)>, ReuseCounts)> {
        let mut counts = ReuseCounts::default();
        if self.cfg.max_frames == 0 {
            let mut out = Vec::with_capacity(faces.len());
            for face in faces {
                let scores = classify(&face)?;
                out.push((face, scores));
            }
            counts.classified = out.len();
            return Ok((out, counts));
        }
        let mut previous = std::mem::take(&mut self.kept);
        let mut out = Vec::with_capacity(faces.len());
        for face in faces {
            let thumb = face_thumb(image, &face.bbox);
            let matched = previous
                .iter()
                .enumerate()
                .filter(|(_, k)| k.age < self.cfg.max_frames)
                .map(|(i, k)| (i, k.bbox.iou(&face.bbox)))
                .filter(|&(_, iou)| iou >= self.cfg.min_iou)
                .max_by(|a, b| a.1.total_cmp(&b.1))
                .map(|(i, _)| i)
                .filter(|&i| previous[i].thumb.mean_abs_diff(&thumb) <= self.cfg.max_change);
            let kept = match matched {
                Some(i) => {
                    let mut k = previous.swap_remove(i);
                    k.age += 1;
                    counts.reused += 1;
                    k
                }
                None => {
                    counts.classified += 1;
                    Kept {
                        bbox: face.bbox,
                        thumb,
                        scores: classify(&face)?,
                        age: 0,
                    }
                }
            };
            out.push((face, kept.scores.clone()));
            self.kept.push(kept);
        }
        Ok((out, counts))
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::sync::Arc;

    use super::*;

    fn face(x: f32) -> Face {
        Face {
            bbox: BBox {
                x,
                y: 0.25,
                w: 0.5,
                h: 0.5,
            },
            score: 0.9,
            keypoints: vec![],
        }
    }

    /// A 64×64 grey frame with a darker square (the "mouth") in the lower middle.
    fn frame(mouth: u8) -> RgbImage {
        RgbImage::from_fn(64, 64, |x, y| {
            if (26..38).contains(&x) && (36..44).contains(&y) {
                image::Rgb([mouth; 3])
            } else {
                image::Rgb([120; 3])
            }
        })
    }

    /// A classifier that counts its calls and returns them as the score.
    fn counting(calls: &Cell<u32>) -> impl FnMut(&Face) -> Result<EmotionScores> + '_ {
        move |_| {
            calls.set(calls.get() + 1);
            Ok(EmotionScores {
                labels: Arc::from(vec!["n".to_string()]),
                scores: vec![calls.get() as f32],
            })
        }
    }

    #[test]
    fn a_still_face_is_classified_once_per_max_frames_plus_one() {
        let calls = Cell::new(0);
        let mut reuse = ScoreReuse::new(ReuseSettings::default()); // max_frames 2
        let img = frame(40);
        let mut got = vec![];
        for _ in 0..7 {
            let (out, counts) = reuse
                .scores(&img, vec![face(0.25)], counting(&calls))
                .unwrap();
            got.push((out[0].1.scores[0], counts.classified, counts.reused));
        }
        // classified on frames 0, 3, 6; reused (with the scores of that call) in between
        let want = [1., 1., 1., 2., 2., 2., 3.];
        assert_eq!(got.iter().map(|g| g.0).collect::<Vec<_>>(), want);
        assert_eq!(got.iter().map(|g| g.1).sum::<usize>(), 3);
        assert_eq!(got.iter().map(|g| g.2).sum::<usize>(), 4);
    }

    #[test]
    fn a_changed_face_or_a_moved_box_is_classified_again() {
        let calls = Cell::new(0);
        let mut reuse = ScoreReuse::new(ReuseSettings {
            max_frames: 100,
            ..ReuseSettings::default()
        });
        reuse
            .scores(&frame(40), vec![face(0.25)], counting(&calls))
            .unwrap();
        // the same pixels: reused
        reuse
            .scores(&frame(40), vec![face(0.25)], counting(&calls))
            .unwrap();
        assert_eq!(calls.get(), 1);
        // the mouth changed by 80 levels over 9 % of the box: ≈ 7.5 levels on average
        let (_, c) = reuse
            .scores(&frame(120), vec![face(0.25)], counting(&calls))
            .unwrap();
        assert_eq!((calls.get(), c.classified, c.reused), (2, 1, 0));
        // the box moved by 0.1 of the frame (IoU 0.67 < 0.85)
        reuse
            .scores(&frame(120), vec![face(0.35)], counting(&calls))
            .unwrap();
        assert_eq!(calls.get(), 3);
        // a face that was absent for a frame is classified again
        reuse.scores(&frame(120), vec![], counting(&calls)).unwrap();
        reuse
            .scores(&frame(120), vec![face(0.35)], counting(&calls))
            .unwrap();
        assert_eq!(calls.get(), 4);
    }

    #[test]
    fn two_faces_never_share_one_kept_result_and_zero_turns_reuse_off() {
        let calls = Cell::new(0);
        let mut reuse = ScoreReuse::new(ReuseSettings::default());
        let img = frame(40);
        reuse
            .scores(&img, vec![face(0.25)], counting(&calls))
            .unwrap();
        // two detections on the same box: only one may take the kept scores
        let (out, c) = reuse
            .scores(&img, vec![face(0.25), face(0.25)], counting(&calls))
            .unwrap();
        assert_eq!((c.classified, c.reused), (1, 1));
        assert_ne!(out[0].1.scores, out[1].1.scores);

        let calls = Cell::new(0);
        let mut off = ScoreReuse::new(ReuseSettings {
            max_frames: 0,
            ..ReuseSettings::default()
        });
        for _ in 0..3 {
            off.scores(&img, vec![face(0.25)], counting(&calls))
                .unwrap();
        }
        assert_eq!(calls.get(), 3);
    }

    /// A 640×480 mid-grey frame with sensor-like noise (±`noise` levels, seeded) and, when
    /// `face` is set, a 40×40 darker square (a face at 2–3 m) with its top-left corner there.
    fn scene(seed: u32, noise: u8, face: Option<(u32, u32)>) -> RgbImage {
        let mut state = seed.wrapping_mul(2_654_435_761).max(1);
        RgbImage::from_fn(640, 480, |x, y| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            let n = (state % (2 * noise as u32 + 1)) as i32 - noise as i32;
            let inside = face
                .is_some_and(|(fx, fy)| (fx..fx + 40).contains(&x) && (fy..fy + 40).contains(&y));
            let base = if inside { 80 } else { 128 };
            image::Rgb([(base + n) as u8; 3])
        })
    }

    /// A detector that counts its calls and finds one face per call (its x tells the call).
    fn counting_detector(calls: &Cell<u32>) -> impl FnOnce() -> Result<Vec<Face>> + '_ {
        move || {
            calls.set(calls.get() + 1);
            Ok(vec![face(calls.get() as f32 / 100.0)])
        }
    }

    #[test]
    fn a_still_frame_is_detected_once_per_max_frames_plus_one() {
        let calls = Cell::new(0);
        let mut reuse = DetectionReuse::new(SceneReuseSettings::default()); // max_frames 2
        let mut got = vec![];
        for i in 0..7 {
            // new sensor noise on every frame: ±3 levels per pixel
            let (faces, reused) = reuse
                .faces(&scene(i, 3, None), counting_detector(&calls))
                .unwrap();
            got.push((faces[0].bbox.x, reused));
        }
        let want = [
            (0.01, false),
            (0.01, true),
            (0.01, true),
            (0.02, false),
            (0.02, true),
            (0.02, true),
            (0.03, false),
        ];
        assert_eq!(got, want);
        assert_eq!(calls.get(), 3);
    }

    #[test]
    fn a_face_entering_the_frame_is_detected_on_that_frame() {
        let calls = Cell::new(0);
        let mut reuse = DetectionReuse::new(SceneReuseSettings {
            max_frames: 100,
            ..SceneReuseSettings::default()
        });
        reuse
            .faces(&scene(1, 3, None), counting_detector(&calls))
            .unwrap();
        // a 40×40 face appears anywhere, even straddling four grid cells
        for (i, at) in [(100, 60), (300, 220), (580, 420), (20, 20)]
            .into_iter()
            .enumerate()
        {
            let (_, reused) = reuse
                .faces(&scene(2 + i as u32, 3, Some(at)), counting_detector(&calls))
                .unwrap();
            assert!(!reused, "face at {at:?} not detected");
            let (_, reused) = reuse
                .faces(
                    &scene(20 + i as u32, 3, Some(at)),
                    counting_detector(&calls),
                )
                .unwrap();
            assert!(reused, "still face at {at:?} detected again");
            // ... and leaving it again
            let (_, reused) = reuse
                .faces(&scene(40 + i as u32, 3, None), counting_detector(&calls))
                .unwrap();
            assert!(!reused, "face at {at:?} leaving not noticed");
        }
        assert_eq!(calls.get(), 9);
    }

    #[test]
    fn a_new_size_a_failed_detection_or_zero_frames_detects_again() {
        let calls = Cell::new(0);
        let mut reuse = DetectionReuse::new(SceneReuseSettings::default());
        reuse
            .faces(&scene(1, 0, None), counting_detector(&calls))
            .unwrap();
        let small = RgbImage::from_pixel(320, 240, image::Rgb([128; 3]));
        let (_, reused) = reuse.faces(&small, counting_detector(&calls)).unwrap();
        assert!(!reused, "a frame of another size took the last faces");
        // the scene changes and the detector fails on it: whatever comes next is detected,
        // even the frame whose faces were kept before the failure
        let darker = RgbImage::from_pixel(320, 240, image::Rgb([60; 3]));
        assert!(reuse
            .faces(&darker, || anyhow::bail!("model error"))
            .is_err());
        let (_, reused) = reuse.faces(&small, counting_detector(&calls)).unwrap();
        assert!(!reused, "a failed detection left faces to reuse");
        assert_eq!(calls.get(), 3);

        let calls = Cell::new(0);
        let mut off = DetectionReuse::new(SceneReuseSettings {
            max_frames: 0,
            ..SceneReuseSettings::default()
        });
        for _ in 0..3 {
            off.faces(&small, counting_detector(&calls)).unwrap();
        }
        assert_eq!(calls.get(), 3);
    }
}
