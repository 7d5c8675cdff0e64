//! Emotion classification of face crops with the shipped MobileNetV2 (or any ONNX classifier
//! carrying the `emonet.*` metadata, see [`super::model`]).
//!
//! A crop is converted to luma or kept RGB as the metadata says, resized to the model's input
//! size in floating point (bilinear, Pillow-style convolution, like the training pipeline's
//! float resize: rounding the resized pixels to 8 bits would cost the shipped model 0.25 point
//! on FER+ val), normalised with the metadata's mean / std and run; softmax turns the logits
//! into [`EmotionScores`].
//!
//! A model with several outputs (heads) computes all of them in one run; the `classify_*`
//! methods return the selected one ([`super::model::DEFAULT_OUTPUT`], `ferplus`, unless
//! [`EmotionClassifier::select_output`] picked another), `classify_crop_all` every one.
//!
//! Buffers: like the detector, a classifier keeps its resizer, buffers and tract state behind a
//! `Mutex`; calls from several threads are serialised.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{ensure, Context, Result};
use fast_image_resize::images::{TypedImage, TypedImageRef};
use fast_image_resize::pixels::{F32x3, F32};
use fast_image_resize::{FilterType, PixelTrait, ResizeAlg, ResizeOptions, Resizer};
use image::RgbImage;
use tract_onnx::prelude::*;

use super::model::{self, ClassifierMeta, ColorMode, PlanState};
use super::{BBox, EmotionScores, Face};
use tract_onnx::pb::ModelProto;

struct Scratch {
    resizer: Resizer,
    pixels: Pixels,
    /// Model input, NCHW.
    input: Vec<f32>,
    state: PlanState,
}

/// The resize's buffers, in the model's colour mode: the part of the image the resize reads
/// (`window`) and the resized crop, input_width × input_height (`out`).
enum Pixels {
    Gray { window: Vec<F32>, out: Vec<F32> },
    Rgb { window: Vec<F32x3>, out: Vec<F32x3> },
}

/// The emotion classifier. Load once, classify many crops.
pub struct EmotionClassifier {
    path: PathBuf,
    meta: ClassifierMeta,
    /// Labels of each output, in output order.
    labels: Vec<Arc<[String]>>,
    /// The output `classify_*` return.
    selected: usize,
    scratch: Mutex<Scratch>,
}

impl std::fmt::Debug for EmotionClassifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmotionClassifier")
            .field("path", &self.path)
            .field("meta", &self.meta)
            .finish()
    }
}

impl EmotionClassifier {
    /// Reads the model and its metadata, fixes the input shape and optimizes it.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let proto = model::read_proto(path)?;
        let meta = ClassifierMeta::from_props(&model::metadata_props(&proto), path)?;
        let m = model::build_plan(&proto, path, &meta.input_shape())
            .with_context(|| format!("loading emotion classifier {}", path.display()))?;
        check_outputs(&proto, &m.output_shapes, &meta, path)?;
        let state = PlanState::new(&m.plan)?;
        let [_, c, h, w] = meta.input_shape();
        let pixels = match meta.color {
            ColorMode::Gray => Pixels::Gray {
                window: Vec::new(),
                out: vec![F32::default(); w * h],
            },
            ColorMode::Rgb => Pixels::Rgb {
                window: Vec::new(),
                out: vec![F32x3::default(); w * h],
            },
        };
        Ok(EmotionClassifier {
            path: path.to_path_buf(),
            labels: meta
                .outputs
                .iter()
                .map(|o| o.labels.clone().into())
                .collect(),
            selected: meta.default_output,
            meta,
            scratch: Mutex::new(Scratch {
                resizer: Resizer::new(),
                pixels,
                input: vec![0.0; c * h * w],
                state,
            }),
        })
    }

    /// Makes `classify_*` return the output named `name` (see [`ClassifierMeta::outputs`]).
    pub fn select_output(&mut self, name: &str) -> Result<()> {
        self.selected = self.meta.output_index(name)?;
        Ok(())
    }

    /// Name of the output `classify_*` return.
    pub fn selected_output(&self) -> &str {
        &self.meta.outputs[self.selected].name
    }

    pub fn meta(&self) -> &ClassifierMeta {
        &self.meta
    }

    /// Class labels of the selected output, in output order (shared by every
    /// [`EmotionScores`] `classify_*` return).
    pub fn labels(&self) -> &Arc<[String]> {
        &self.labels[self.selected]
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Classifies a face crop (the whole image).
    pub fn classify_crop(&self, crop: &RgbImage) -> Result<EmotionScores> {
        let (w, h) = crop.dimensions();
        self.classify_region(crop, (0.0, 0.0, w as f64, h as f64))
    }

    /// Every output's scores for a face crop (the whole image), in output order.
    pub fn classify_crop_all(&self, crop: &RgbImage) -> Result<Vec<EmotionScores>> {
        let (w, h) = crop.dimensions();
        let outputs = self.run_region(crop, (0.0, 0.0, w as f64, h as f64))?;
        (0..outputs.len())
            .map(|i| self.scores(&outputs, i))
            .collect()
    }

    /// Classifies the face `face` of `frame`: a square around its box, enlarged by the model's
    /// `face_margin` on each side, clamped to the frame.
    pub fn classify_face(&self, frame: &RgbImage, face: &Face) -> Result<EmotionScores> {
        let (w, h) = frame.dimensions();
        let rect = face_crop_rect(w, h, &face.bbox, self.meta.face_margin)
            .context("face box lies outside the frame")?;
        self.classify_region(frame, rect)
    }

    /// Classifies the region (left, top, width, height in pixels, sub-pixel allowed) of `img`.
    pub fn classify_region(
        &self,
        img: &RgbImage,
        rect: (f64, f64, f64, f64),
    ) -> Result<EmotionScores> {
        let outputs = self.run_region(img, rect)?;
        self.scores(&outputs, self.selected)
    }

    /// Softmax of output `i`.
    fn scores(&self, outputs: &TVec<TValue>, i: usize) -> Result<EmotionScores> {
        let logits = outputs[i].to_plain_array_view::<f32>()?;
        Ok(EmotionScores {
            labels: self.labels[i].clone(),
            scores: softmax(logits.iter().copied()),
        })
    }

    /// Runs the model on the region (see [`Self::classify_region`]): every output's logits.
    fn run_region(&self, img: &RgbImage, rect: (f64, f64, f64, f64)) -> Result<TVec<TValue>> {
        let (width, height) = img.dimensions();
        ensure!(width > 0 && height > 0, "empty image");
        let m = &self.meta;
        let (iw, ih) = (m.input_width, m.input_height);
        let plane = iw * ih;
        let mut guard = self.scratch.lock().unwrap_or_else(|e| e.into_inner());
        let s = &mut *guard;

        let size = (iw as u32, ih as u32);
        match &mut s.pixels {
            Pixels::Gray { window, out } => {
                let to_luma = |p: [u8; 3]| F32::new(super::luma(p));
                resize_region(&mut s.resizer, img, rect, to_luma, window, out, size)?;
                for (i, p) in out.iter().enumerate() {
                    for c in 0..m.channels {
                        s.input[c * plane + i] = (p.0 / 255.0 - m.mean[c]) / m.std[c];
                    }
                }
            }
            Pixels::Rgb { window, out } => {
                let to_rgb = |p: [u8; 3]| F32x3::new(p.map(f32::from));
                resize_region(&mut s.resizer, img, rect, to_rgb, window, out, size)?;
                for (i, p) in out.iter().enumerate() {
                    for (c, &v) in p.0.iter().enumerate() {
                        s.input[c * plane + i] = (v / 255.0 - m.mean[c]) / m.std[c];
                    }
                }
            }
        }
        let input = Tensor::from_shape(&m.input_shape(), &s.input)?;
        let outputs = s
            .state
            .run(tvec!(input.into_tvalue()))
            .with_context(|| format!("running {}", self.path.display()))?;
        drop(guard);
        Ok(outputs)
    }
}

/// Resizes the region `rect` (left, top, width, height) of `img`, its pixels mapped by `pixel`,
/// into `out` (`size` = width, height) with a bilinear convolution in floating point. Only the
/// part of the image that the filter reads is converted (into `window`, kept the size of the
/// whole image), so the result is the resize of the whole converted image with the region as
/// its crop box.
pub fn resize_region<P: PixelTrait>(
    resizer: &mut Resizer,
    img: &RgbImage,
    rect: (f64, f64, f64, f64),
    pixel: impl Fn([u8; 3]) -> P,
    window: &mut Vec<P>,
    out: &mut [P],
    size: (u32, u32),
) -> Result<()> {
    let (l, t, rw, rh) = rect;
    let (x0, x1) = filter_span(l, rw, size.0, img.width());
    let (y0, y1) = filter_span(t, rh, size.1, img.height());
    // Sized for the whole image at once: grown face by face, it would step the daemon's memory
    // up each time a face larger than any before came along, at any point in a run.
    let whole = img.width() as usize * img.height() as usize;
    if window.len() < whole {
        window.resize(whole, P::default());
    }
    let (row_len, span_len) = (img.width() as usize * 3, (x1 - x0) as usize);
    let rows = img.as_raw().chunks_exact(row_len);
    let spans = window.chunks_exact_mut(span_len.max(1));
    for (row, dst) in rows.take(y1 as usize).skip(y0 as usize).zip(spans) {
        let src = row[x0 as usize * 3..x1 as usize * 3].chunks_exact(3);
        for (d, p) in dst.iter_mut().zip(src) {
            *d = pixel([p[0], p[1], p[2]]);
        }
    }
    let used = span_len * (y1 - y0) as usize;
    let src = TypedImageRef::new(x1 - x0, y1 - y0, &window[..used])?;
    let mut dst = TypedImage::from_pixels_slice(size.0, size.1, out)?;
    let crop = (l - x0 as f64, t - y0 as f64, rw, rh);
    resizer.resize_typed(
        &src,
        &mut dst,
        &ResizeOptions::new()
            .crop(crop.0, crop.1, crop.2, crop.3)
            .resize_alg(ResizeAlg::Convolution(FilterType::Bilinear)),
    )?;
    Ok(())
}

/// The pixels `[lo, hi)` of an axis of `size` pixels that a bilinear convolution of the span
/// `start .. start + len` to `out` pixels reads: the span widened by the filter's radius (1,
/// scaled by the reduction when shrinking) and a pixel of slack, clamped to the image.
fn filter_span(start: f64, len: f64, out: u32, size: u32) -> (u32, u32) {
    let radius = (len / out.max(1) as f64).max(1.0);
    let lo = ((start - radius).floor() - 1.0).clamp(0.0, size as f64) as u32;
    let hi = ((start + len + radius).ceil() + 1.0).clamp(0.0, size as f64) as u32;
    (lo, hi)
}

/// The plan's outputs must be the metadata's, in the same order, each with one score per label.
fn check_outputs(
    proto: &ModelProto,
    shapes: &[Vec<usize>],
    meta: &ClassifierMeta,
    path: &Path,
) -> Result<()> {
    let f = path.display();
    ensure!(
        shapes.len() == meta.outputs.len(),
        "{f}: the graph has {} outputs, the metadata describes {}",
        shapes.len(),
        meta.outputs.len()
    );
    let graph_names = proto.graph.as_ref().map(|g| &g.output[..]).unwrap_or(&[]);
    for (i, (o, shape)) in meta.outputs.iter().zip(shapes).enumerate() {
        let n = o.labels.len();
        ensure!(
            shape.iter().product::<usize>() == n,
            "{f}: output {i} (`{}`) has shape {shape:?}, not the {n} labels of its metadata",
            o.name
        );
        if meta.outputs.len() > 1 {
            let g = graph_names.get(i).map(|v| v.name.as_str()).unwrap_or("");
            ensure!(
                g == o.name,
                "{f}: graph output {i} is `{g}` but emonet.outputs lists `{}` there",
                o.name
            );
        }
    }
    Ok(())
}

/// How far the crop centre sits above the centre of a BlazeFace box, as a fraction of the box
/// height. BlazeFace boxes run from the brows to the chin, while FER-style training crops are
/// centred higher: run on 298 FER val crops, the detector's box was 0.84 of the crop side wide
/// (median; hence `emonet.face_margin` ≈ 0.1) and its centre 0.072 crop sides ≈ 0.085 box
/// heights below the crop centre. Shifting the crop by that much raised the FER2013 accuracy of
/// detect → classify_face on 800 val images (padded into larger frames) from 55.7 % to 57.1 %
/// (classifying the original crops directly: 58.9 %).
pub const FACE_CENTER_SHIFT_UP: f64 = 0.085;

/// The crop rectangle (left, top, width, height in whole pixels) for a face box: a square of side
/// `max(w, h) · (1 + 2·margin)` centred on the box (moved up by [`FACE_CENTER_SHIFT_UP`] box
/// heights), snapped to the pixel grid and intersected with the frame. `None` when nothing of it
/// is inside the frame.
///
/// Why whole pixels: the detector's boxes differ by ~1e-7 between CPU architectures (float
/// summation order), and a sub-pixel crop turns that into a different resampling of the face; the
/// int8 classifier moved by up to 3e-3 in score for such a shift. On the pixel grid the crop is the
/// same on every board unless a coordinate sits within ~1e-6 px of a half pixel, and the shift of
/// at most half a pixel is far below what the training augmentation covers (±8 % of the face).
pub fn face_crop_rect(
    frame_w: u32,
    frame_h: u32,
    bbox: &BBox,
    margin: f32,
) -> Option<(f64, f64, f64, f64)> {
    let (fw, fh) = (frame_w as f64, frame_h as f64);
    let bw = bbox.w as f64 * fw;
    let bh = bbox.h as f64 * fh;
    let cx = (bbox.x as f64 + bbox.w as f64 / 2.0) * fw;
    let cy = (bbox.y as f64 + bbox.h as f64 / 2.0) * fh - FACE_CENTER_SHIFT_UP * bh;
    let side = (bw.max(bh) * (1.0 + 2.0 * margin as f64)).round();
    let left = (cx - side / 2.0).round();
    let top = (cy - side / 2.0).round();
    let x0 = left.max(0.0);
    let y0 = top.max(0.0);
    let x1 = (left + side).min(fw);
    let y1 = (top + side).min(fh);
    (x1 - x0 >= 1.0 && y1 - y0 >= 1.0 && side.is_finite()).then_some((x0, y0, x1 - x0, y1 - y0))
}

/// Numerically stable softmax.
pub fn softmax(logits: impl Iterator<Item = f32>) -> Vec<f32> {
    let v: Vec<f32> = logits.collect();
    let max = v.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f32> = v.iter().map(|&x| (x - max).exp()).collect();
    let sum: f32 = e.iter().sum();
    e.into_iter().map(|x| x / sum).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_sums_to_one_and_orders() {
        let p = softmax([1.0f32, 2.0, 3.0, 1000.0].into_iter());
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(p[3] > 0.999);
        let p = softmax([0.0f32, (2.0f32).ln()].into_iter());
        assert!((p[0] - 1.0 / 3.0).abs() < 1e-6 && (p[1] - 2.0 / 3.0).abs() < 1e-6);
    }

    #[test]
    fn crop_rect_is_square_with_margin_and_clamped() {
        // 100×50 px box at (200, 100) in a 1000×500 frame, margin 0.1 → side 120 around
        // (250, 125 - 0.085·50 = 120.75): top 60.75 snaps to 61
        let b = BBox {
            x: 0.2,
            y: 0.2,
            w: 0.1,
            h: 0.1,
        };
        assert_eq!(
            face_crop_rect(1000, 500, &b, 0.1),
            Some((190.0, 61.0, 120.0, 120.0))
        );
        // a box differing by float noise (as between CPU architectures) gives the same crop
        let jittered = BBox {
            x: 0.2 + 1e-7,
            y: 0.2 - 1e-7,
            w: 0.1 + 1e-7,
            h: 0.1,
        };
        assert_eq!(
            face_crop_rect(1000, 500, &jittered, 0.1),
            face_crop_rect(1000, 500, &b, 0.1)
        );
        // a box at the corner is clamped: centre (5, 10 - 1.7), side 40 → left -15, top -12
        let b = BBox {
            x: 0.0,
            y: 0.0,
            w: 0.1,
            h: 0.2,
        };
        let (l, t, w, h) = face_crop_rect(100, 100, &b, 0.5).unwrap();
        assert_eq!((l, t, w, h), (0.0, 0.0, 25.0, 28.0));
        // entirely outside
        assert!(face_crop_rect(
            100,
            100,
            &BBox {
                x: 2.0,
                y: 2.0,
                w: 0.1,
                h: 0.1
            },
            0.1
        )
        .is_none());
    }

    /// Pillow's bilinear convolution along one axis, in f64: the weights of input pixels for
    /// output pixel `o` of the span `start .. start + len` resized to `out` pixels.
    fn pillow_weights(
        start: f64,
        len: f64,
        out: usize,
        size: usize,
        o: usize,
    ) -> Vec<(usize, f64)> {
        let scale = len / out as f64;
        let support = scale.max(1.0);
        let center = start + (o as f64 + 0.5) * scale;
        let lo = (center - support).floor().max(0.0) as usize;
        let hi = ((center + support).ceil() as usize).min(size);
        let w: Vec<(usize, f64)> = (lo..hi)
            .map(|i| {
                (
                    i,
                    (1.0 - ((i as f64 + 0.5 - center) / support).abs()).max(0.0),
                )
            })
            .collect();
        let sum: f64 = w.iter().map(|p| p.1).sum();
        w.into_iter().map(|(i, x)| (i, x / sum)).collect()
    }

    /// The region of a grey image resized by the definition above, in f64.
    fn reference_resize(img: &RgbImage, rect: (f64, f64, f64, f64), out: usize) -> Vec<f64> {
        let (w, h) = (img.width() as usize, img.height() as usize);
        let mut res = vec![0.0; out * out];
        for oy in 0..out {
            for ox in 0..out {
                for (y, wy) in pillow_weights(rect.1, rect.3, out, h, oy) {
                    for (x, wx) in pillow_weights(rect.0, rect.2, out, w, ox) {
                        let p = img.get_pixel(x as u32, y as u32).0[0] as f64;
                        res[oy * out + ox] += wy * wx * p;
                    }
                }
            }
        }
        res
    }

    /// A grey image with detail at every pixel (no two neighbours alike).
    fn textured(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| {
            let v = ((x * 37 + y * 101 + x * y * 7) % 256) as u8;
            image::Rgb([v, v, v])
        })
    }

    fn resized_gray(img: &RgbImage, rect: (f64, f64, f64, f64), out: u32) -> Vec<f32> {
        let mut buf = vec![F32::new(0.0); (out * out) as usize];
        let to_luma = |p: [u8; 3]| F32::new(super::super::luma(p));
        let (mut resizer, mut window) = (Resizer::new(), Vec::new());
        resize_region(
            &mut resizer,
            img,
            rect,
            to_luma,
            &mut window,
            &mut buf,
            (out, out),
        )
        .unwrap();
        buf.iter().map(|p| p.0).collect()
    }

    #[test]
    fn crops_are_resized_in_floating_point_like_pillow() {
        // The FER case (48 px face upscaled to the 64 px input: rounding the result to 8 bits
        // moved 0.25 % of val answers), then regions of a larger frame, shrunk and enlarged,
        // sub-pixel, against the image's edges: only the filter's footprint is converted, and
        // the result must be the resize of the whole image with the region as its crop box.
        let frame = textured(320, 240);
        let cases = [
            (textured(48, 48), (0.0, 0.0, 48.0, 48.0)),
            (frame.clone(), (100.0, 50.0, 150.0, 150.0)),
            (frame.clone(), (0.0, 0.0, 200.0, 200.0)),
            (frame.clone(), (170.5, 90.25, 149.5, 149.75)),
            (frame.clone(), (300.0, 220.0, 20.0, 20.0)),
            (frame, (12.3, 7.9, 40.0, 40.0)),
        ];
        for (img, rect) in cases {
            let ours = resized_gray(&img, rect, 64);
            let want = reference_resize(&img, rect, 64);
            let worst = ours
                .iter()
                .zip(&want)
                .map(|(a, b)| (*a as f64 - b).abs())
                .fold(0.0, f64::max);
            // 8-bit output would be off by up to 0.5 grey level
            assert!(worst < 2e-3, "{rect:?}: off by {worst} grey levels");
        }
    }

    #[test]
    fn filter_span_covers_the_footprint_and_stays_in_the_image() {
        assert_eq!(filter_span(0.0, 48.0, 64, 48), (0, 48));
        // shrinking 150 -> 64: radius 2.34 px, plus one of slack
        assert_eq!(filter_span(100.0, 150.0, 64, 320), (96, 254));
        assert_eq!(filter_span(300.0, 20.0, 64, 320), (298, 320));
    }
}
