//! Following faces between full detections (`detector.follow`).
//!
//! The detectors that see faces far away are expensive: CenterFace (`range = "far"`) looks at
//! the whole frame at 384×288 for ~30 ms per frame on one x86 core. Once it has found a face,
//! finding the same face on the next frame does not need the whole frame: the face is near where
//! it was. So the full detector runs on one frame in `every`, and on the frames between each face
//! is looked for again by the short-range BlazeFace in a square `zoom` face widths wide around its
//! last box, scaled to the model's 128×128 input — a 40 px face fills half of it, a size the
//! short-range model finds well. This is the detect-then-track design of MediaPipe's face
//! pipelines.
//!
//! What it costs in recall: a face that comes into view is found at the next full detection, up
//! to `every - 1` frames later; a face that moves more than about half its width between two
//! frames, or that the short-range model cannot see, is lost until then.

use anyhow::Result;
use image::RgbImage;

pub use crate::config::FollowSettings;
use crate::vision::{Face, PixelRect};

/// A region narrower than this (pixels) is not searched: the face is at the frame's edge.
const MIN_REGION: u32 = 8;
/// Two followed faces overlapping by more than this are one face found twice.
const SAME_FACE_IOU: f32 = 0.5;

/// The faces one video stream is following.
#[derive(Debug)]
pub struct FaceFollower {
    cfg: FollowSettings,
    faces: Vec<Face>,
    /// Frames since the last full detection; `None` before the first or after a failure.
    since_full: Option<u32>,
}

impl FaceFollower {
    pub fn new(cfg: FollowSettings) -> Self {
        FaceFollower {
            cfg,
            faces: Vec::new(),
            since_full: None,
        }
    }

    /// The faces of `image`: those `full` finds on one frame in `every`, else each face of the
    /// last frame found again by `find_in` in a region around it. `true`: followed.
    pub fn faces(
        &mut self,
        image: &RgbImage,
        full: impl FnOnce() -> Result<Vec<Face>>,
        find_in: impl FnMut(PixelRect) -> Result<Vec<Face>>,
    ) -> Result<(Vec<Face>, bool)> {
        // Off (the default): nothing to remember on the per-frame path.
        if !self.cfg.is_on() {
            return Ok((full()?, false));
        }
        let every = self.cfg.every.unwrap_or(0);
        let due = self.since_full.is_none_or(|n| n + 1 >= every);
        // Forgotten first, so that a failed detection leaves nothing stale behind.
        let last = std::mem::take(&mut self.faces);
        let since = self.since_full.take();
        let (faces, followed) = if due {
            (full()?, false)
        } else {
            (self.follow(image, &last, find_in)?, true)
        };
        self.since_full = Some(match since {
            Some(n) if followed => n + 1,
            _ => 0,
        });
        self.faces = faces.clone();
        Ok((faces, followed))
    }

    /// Each of `last` found again near its box; lost faces are dropped.
    fn follow(
        &self,
        image: &RgbImage,
        last: &[Face],
        mut find_in: impl FnMut(PixelRect) -> Result<Vec<Face>>,
    ) -> Result<Vec<Face>> {
        let (width, height) = image.dimensions();
        let mut found: Vec<Face> = Vec::with_capacity(last.len());
        for face in last {
            let Some(region) = search_region(face, self.cfg.zoom, width, height) else {
                continue;
            };
            let Some(again) = nearest(face, find_in(region)?) else {
                continue;
            };
            // Two faces that walked into each other: keep the one found first (the better
            // score, as `last` is best first).
            if found
                .iter()
                .all(|f| f.bbox.iou(&again.bbox) <= SAME_FACE_IOU)
            {
                found.push(again);
            }
        }
        Ok(found)
    }
}

/// The square `zoom` times the face's larger side, centred on it and cut to the frame.
fn search_region(face: &Face, zoom: f32, width: u32, height: u32) -> Option<PixelRect> {
    let (w, h) = (width as f32, height as f32);
    let b = &face.bbox;
    let side = zoom * (b.w * w).max(b.h * h);
    let (cx, cy) = ((b.x + b.w / 2.0) * w, (b.y + b.h / 2.0) * h);
    let x0 = (cx - side / 2.0).floor().clamp(0.0, w) as u32;
    let y0 = (cy - side / 2.0).floor().clamp(0.0, h) as u32;
    let x1 = (cx + side / 2.0).ceil().clamp(0.0, w) as u32;
    let y1 = (cy + side / 2.0).ceil().clamp(0.0, h) as u32;
    (x1 >= x0 + MIN_REGION && y1 >= y0 + MIN_REGION)
        .then(|| PixelRect::new(x0, y0, x1 - x0, y1 - y0))
}

/// The candidate whose centre is nearest the face's.
fn nearest(face: &Face, candidates: Vec<Face>) -> Option<Face> {
    let centre = |f: &Face| (f.bbox.x + f.bbox.w / 2.0, f.bbox.y + f.bbox.h / 2.0);
    let (cx, cy) = centre(face);
    let dist = |f: &Face| {
        let (x, y) = centre(f);
        (x - cx).powi(2) + (y - cy).powi(2)
    };
    candidates
        .into_iter()
        .min_by(|a, b| dist(a).total_cmp(&dist(b)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vision::BBox;
    use anyhow::bail;
    use std::cell::Cell;

    fn face(x: f32, y: f32, side: f32, score: f32) -> Face {
        Face {
            bbox: BBox {
                x,
                y,
                w: side,
                h: side * 4.0 / 3.0,
            },
            score,
            keypoints: vec![],
        }
    }

    fn frame() -> RgbImage {
        RgbImage::new(640, 480)
    }

    fn follower(every: u32) -> FaceFollower {
        FaceFollower::new(FollowSettings {
            every: Some(every),
            ..FollowSettings::default()
        })
    }

    /// A frame on which the full detector is due and finds `found`.
    fn full_pass(f: &mut FaceFollower, img: &RgbImage, found: Vec<Face>) -> (Vec<Face>, bool) {
        f.faces(img, || Ok(found), |_| unreachable!()).unwrap()
    }

    #[test]
    fn full_detection_runs_on_one_frame_in_every() {
        let mut f = follower(3);
        let img = frame();
        let fulls = Cell::new(0);
        let mut pattern = vec![];
        for _ in 0..7 {
            let (_, followed) = f
                .faces(
                    &img,
                    || {
                        fulls.set(fulls.get() + 1);
                        Ok(vec![face(0.4, 0.4, 0.1, 0.9)])
                    },
                    |_| Ok(vec![face(0.41, 0.4, 0.1, 0.8)]),
                )
                .unwrap();
            pattern.push(followed);
        }
        assert_eq!(
            pattern,
            [false, true, true, false, true, true, false],
            "full, follow, follow, full, ..."
        );
        assert_eq!(fulls.get(), 3);
    }

    #[test]
    fn every_zero_or_one_detects_every_frame() {
        for every in [0, 1] {
            let mut f = follower(every);
            for _ in 0..3 {
                let (faces, followed) = f
                    .faces(
                        &frame(),
                        || Ok(vec![face(0.4, 0.4, 0.1, 0.9)]),
                        |_| panic!("no following with every = {every}"),
                    )
                    .unwrap();
                assert!(!followed);
                assert_eq!(faces.len(), 1);
            }
        }
    }

    #[test]
    fn the_search_region_is_zoom_face_widths_around_the_face_cut_to_the_frame() {
        // A 64x64 px face at (288, 208) in 640x480: a 128 px square around its centre.
        let centred = face(288.0 / 640.0, 208.0 / 480.0, 64.0 / 640.0, 1.0);
        let mut centred = centred;
        centred.bbox.h = 64.0 / 480.0;
        assert_eq!(
            search_region(&centred, 2.0, 640, 480),
            Some(PixelRect::new(256, 176, 128, 128))
        );
        // At the left edge the square is cut at x = 0.
        let mut edge = centred.clone();
        edge.bbox.x = 0.0;
        let r = search_region(&edge, 2.0, 640, 480).unwrap();
        assert_eq!((r.x, r.w, r.y, r.h), (0, 96, 176, 128));
        // Gone off the frame: nothing to search.
        edge.bbox.x = 1.2;
        assert_eq!(search_region(&edge, 2.0, 640, 480), None);
    }

    #[test]
    fn each_face_is_followed_in_its_own_region_by_the_nearest_candidate() {
        let mut f = follower(10);
        let img = frame();
        let two = vec![face(0.1, 0.1, 0.1, 0.9), face(0.7, 0.5, 0.1, 0.8)];
        full_pass(&mut f, &img, two.clone());
        let mut regions = vec![];
        let (faces, followed) = f
            .faces(
                &img,
                || unreachable!(),
                |region| {
                    regions.push(region);
                    // Each region holds its face, moved a little, and a neighbour farther off.
                    let x = region.x as f32 / 640.0;
                    let y = region.y as f32 / 480.0;
                    Ok(vec![
                        face(x + 0.12, y + 0.1, 0.1, 0.95),
                        face(x + 0.06, y + 0.04, 0.1, 0.7),
                    ])
                },
            )
            .unwrap();
        assert!(followed);
        assert_eq!(regions.len(), 2);
        assert!(regions[0].x < regions[1].x, "{regions:?}");
        assert_eq!(faces.len(), 2);
        for (was, now) in two.iter().zip(&faces) {
            assert_eq!(
                now.score, 0.7,
                "the nearer candidate, not the better-scored one"
            );
            assert!((now.bbox.x - was.bbox.x).abs() < 0.02, "{was:?} -> {now:?}");
        }
    }

    #[test]
    fn a_face_not_found_again_is_dropped_until_the_next_full_detection() {
        let mut f = follower(3);
        let img = frame();
        full_pass(&mut f, &img, vec![face(0.4, 0.4, 0.1, 0.9)]);
        let (faces, followed) = f.faces(&img, || unreachable!(), |_| Ok(vec![])).unwrap();
        assert!(followed && faces.is_empty());
        // Nothing to follow: the next frame searches nowhere.
        let (faces, followed) = f
            .faces(&img, || unreachable!(), |_| panic!("no face to follow"))
            .unwrap();
        assert!(followed && faces.is_empty());
        let (faces, followed) = full_pass(&mut f, &img, vec![face(0.4, 0.4, 0.1, 0.9)]);
        assert!(!followed && faces.len() == 1);
    }

    #[test]
    fn two_faces_followed_onto_one_are_kept_once() {
        let mut f = follower(5);
        let img = frame();
        let close = vec![face(0.40, 0.4, 0.1, 0.9), face(0.43, 0.4, 0.1, 0.8)];
        full_pass(&mut f, &img, close);
        let (faces, _) = f
            .faces(
                &img,
                || unreachable!(),
                |_| Ok(vec![face(0.41, 0.4, 0.1, 0.9)]),
            )
            .unwrap();
        assert_eq!(faces.len(), 1);
    }

    #[test]
    fn a_failed_detection_forgets_the_faces_and_detects_in_full_next() {
        let mut f = follower(5);
        let img = frame();
        full_pass(&mut f, &img, vec![face(0.4, 0.4, 0.1, 0.9)]);
        let err = f.faces(&img, || unreachable!(), |_| bail!("model failed"));
        assert!(err.is_err());
        let fulls = Cell::new(0);
        let (faces, followed) = f
            .faces(
                &img,
                || {
                    fulls.set(1);
                    Ok(vec![])
                },
                |_| panic!("nothing may be followed after a failure"),
            )
            .unwrap();
        assert!(!followed && faces.is_empty() && fulls.get() == 1);
    }
}
