//! Emotion classification of face crops with the shipped MobileNetV2 (or any ONNX classifier
//! carrying the `emonet.*` metadata, see [`super::model`]).
//!
//! A crop is resized to the model's input size (bilinear, Pillow-style convolution as in the
//! training pipeline), converted to luma or kept RGB as the metadata says, normalised with the
//! metadata's mean / std and run; softmax turns the logits into [`EmotionScores`].
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
use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::RgbImage;
use tract_onnx::prelude::*;

use super::model::{self, ClassifierMeta, ColorMode, PlanState};
use super::{BBox, EmotionScores, Face};
use tract_onnx::pb::ModelProto;

struct Scratch {
    resizer: Resizer,
    /// Resized crop, input_width × input_height RGB.
    resized: Vec<u8>,
    /// Model input, NCHW.
    input: Vec<f32>,
    state: PlanState,
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
                resized: vec![0; w * h * 3],
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

        let src = ImageRef::new(width, height, img.as_raw(), PixelType::U8x3)?;
        let mut dst = Image::from_slice_u8(iw as u32, ih as u32, &mut s.resized, PixelType::U8x3)?;
        let (l, t, rw, rh) = rect;
        s.resizer.resize(
            &src,
            &mut dst,
            &ResizeOptions::new()
                .crop(l, t, rw, rh)
                .resize_alg(ResizeAlg::Convolution(FilterType::Bilinear)),
        )?;

        match m.color {
            ColorMode::Gray => {
                for (i, p) in s.resized.chunks_exact(3).enumerate() {
                    let luma = super::luma([p[0], p[1], p[2]]) / 255.0;
                    for c in 0..m.channels {
                        s.input[c * plane + i] = (luma - m.mean[c]) / m.std[c];
                    }
                }
            }
            ColorMode::Rgb => {
                for (i, p) in s.resized.chunks_exact(3).enumerate() {
                    for (c, &v) in p.iter().enumerate() {
                        s.input[c * plane + i] = (v as f32 / 255.0 - m.mean[c]) / m.std[c];
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
}
