//! Classifying a face again only when it may have changed.
//!
//! The classifier is the most expensive stage per face, and at camera rate a face that has not
//! moved and whose pixels have not changed gives the same scores on the next frame. So each
//! classified face is kept with its box and a tiny luma thumbnail of the box; on the next frames a
//! detection reuses those scores when it overlaps the kept box by at least `min_iou`, its
//! thumbnail differs from the kept one by at most `max_change` grey levels (mean absolute
//! difference), and the scores are at most `max_frames` frames old. Both comparisons are against
//! the frame that was classified, so slow drift cannot accumulate into a stale result, and the age
//! limit bounds the delay before any change (an expression that alters no 8×8 cell enough) shows.
//!
//! `max_frames = 0` turns reuse off: every face is classified on every frame.

pub use crate::config::ReuseSettings;
use crate::vision::{luma, BBox, EmotionScores, Face};
use anyhow::Result;
use image::RgbImage;

/// Side of the thumbnail grid over the face box.
const GRID: usize = 8;
/// Samples per grid cell along each axis.
const SAMPLES: usize = 4;

/// Mean luma of each cell of a GRID×GRID grid laid over a face box.
#[derive(Debug, Clone, PartialEq)]
struct Thumb([f32; GRID * GRID]);

impl Thumb {
    fn of(image: &RgbImage, bbox: &BBox) -> Thumb {
        let (w, h) = image.dimensions();
        let mut cells = [0.0f32; GRID * GRID];
        let n = GRID * SAMPLES;
        for (gy, row) in cells.chunks_exact_mut(GRID).enumerate() {
            for (gx, cell) in row.iter_mut().enumerate() {
                let mut sum = 0.0;
                for sy in 0..SAMPLES {
                    let fy = bbox.y + bbox.h * ((gy * SAMPLES + sy) as f32 + 0.5) / n as f32;
                    let py = ((fy * h as f32) as i64).clamp(0, h as i64 - 1) as u32;
                    for sx in 0..SAMPLES {
                        let fx = bbox.x + bbox.w * ((gx * SAMPLES + sx) as f32 + 0.5) / n as f32;
                        let px = ((fx * w as f32) as i64).clamp(0, w as i64 - 1) as u32;
                        sum += luma(image.get_pixel(px, py).0);
                    }
                }
                *cell = sum / (SAMPLES * SAMPLES) as f32;
            }
        }
        Thumb(cells)
    }

    fn mean_abs_diff(&self, other: &Thumb) -> f32 {
        let sum: f32 = self
            .0
            .iter()
            .zip(&other.0)
            .map(|(a, b)| (a - b).abs())
            .sum();
        sum / (GRID * GRID) as f32
    }
}

/// A classified face as it was when its scores were computed.
#[derive(Debug, Clone)]
struct Kept {
    bbox: BBox,
    thumb: Thumb,
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
            let thumb = Thumb::of(image, &face.bbox);
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
}
