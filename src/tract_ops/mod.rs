//! Our own operators inside tract's plans: a 3×3 depthwise convolution with its following
//! Clip/ReLU fused, and a max-pool, both faster than tract 0.23.9's generic
//! `DepthWiseConv` / `OptMaxPool` on the shapes of our models; and, on aarch64, pointwise (1×1)
//! and small dense convolutions through a hand-written NEON kernel, which beats tract's matrix
//! products there (numbers in docs/performance.md).
//!
//! Hook: [`install`] rewrites a *decluttered* `TypedModel` (after `into_decluttered`, before
//! `into_optimized`): every float `Conv` with `group == channels`, a 3×3 kernel, no dilation and
//! constant weights becomes a [`FastDepthwise`] (weights and bias folded into the operator),
//! absorbing the chain of `Max`/`Min`-with-a-constant nodes after it (ONNX `Clip` and `Relu`
//! decluttered); every float `MaxPool` without padding or index output becomes a
//! [`FastMaxPool`]. Where [`Choice::pointwise`] is on (aarch64's default), every `EinSum` that
//! tract made of a 1×1 convolution becomes a [`FastPointwise`] with the bias `Add` and the
//! clamp after it, and a dense channel-first convolution with a small patch matrix (the
//! classifier's stem) a [`FastConv`]. Anything else is left to tract. Our operators have no
//! declutter or codegen rules, so `into_optimized` keeps them as they are and optimizes the
//! rest of the graph around them.

pub mod kernels;

use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ops::binary::TypedBinOp;
use tract_onnx::tract_core::ops::cnn::{Conv, MaxPool, PoolSpec};
use tract_onnx::tract_core::ops::einsum::EinSum;
use tract_onnx::tract_core::ops::math::{Add, Max, Min};

use kernels::{
    Clamp, ConvGeometry, DwGeometry, Isa, PointwiseLayout, PointwisePack, PoolGeometry, TAPS,
};

/// How many nodes [`install`] replaced.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Installed {
    /// Depthwise convolutions now run by [`FastDepthwise`].
    pub depthwise: usize,
    /// Clip/ReLU nodes fused into them.
    pub fused_clamps: usize,
    /// Max-pools now run by [`FastMaxPool`].
    pub maxpools: usize,
    /// Pointwise (1×1) convolutions now run by [`FastPointwise`], with their bias and clamp.
    pub pointwise: usize,
    /// Other dense convolutions now run by [`FastConv`] (im2col and the pointwise kernel).
    pub dense: usize,
}

/// Which of our operators [`install_with`] puts in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Choice {
    pub depthwise: bool,
    pub maxpool: bool,
    /// Pointwise convolutions, and dense channel-first ones through im2col: on by default on
    /// aarch64 only, where the NEON kernel beats tract's matrix products; on x86 tract's
    /// AVX-512/AVX2 assembly is the faster one.
    pub pointwise: bool,
}

impl Default for Choice {
    fn default() -> Choice {
        Choice {
            depthwise: true,
            maxpool: true,
            pointwise: cfg!(target_arch = "aarch64"),
        }
    }
}

/// Channel position of a 2-D image tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Layout {
    /// `[N, C, H, W]` or `[C, H, W]`.
    ChannelFirst,
    /// `[N, H, W, C]` or `[H, W, C]`.
    ChannelLast,
}

/// A 3×3 depthwise convolution with constant weights and bias and a fused clamp.
#[derive(Debug, Clone, PartialEq)]
pub struct FastDepthwise {
    pub geometry: DwGeometry,
    pub layout: Layout,
    /// Images in the batch (1 without a batch axis).
    pub batch: usize,
    /// Tap-major: `[3][3][C]`.
    pub weights: Arc<Vec<f32>>,
    pub bias: Arc<Vec<f32>>,
    pub clamp: Clamp,
    pub output_shape: TVec<usize>,
    /// Instruction set of the kernels (the detected one by default).
    pub isa: Isa,
}

// The f32 fields are never NaN (clamp bounds come from constants checked in `next_clamp`).
impl Eq for FastDepthwise {}

impl Op for FastDepthwise {
    fn name(&self) -> StaticName {
        "EmonetDepthwise3x3".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![
            format!("{:?} {:?} batch {}", self.layout, self.geometry, self.batch),
            format!(
                "clamp {:?}..{:?}, {:?}",
                self.clamp.lo, self.clamp.hi, self.isa
            ),
        ])
    }

    op_as_typed_op!();
}

impl EvalOp for FastDepthwise {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        let x = f32s(&input)?;
        let g = &self.geometry;
        ensure!(
            x.len() == g.input_len() * self.batch,
            "{}: input length",
            self.name()
        );
        written_output(&self.output_shape, |out| {
            let images = x.chunks_exact(g.input_len());
            for (xi, oi) in images.zip(out.chunks_exact_mut(g.output_len())) {
                let (w, b) = (&self.weights[..], &self.bias[..]);
                match self.layout {
                    Layout::ChannelFirst => {
                        kernels::depthwise3x3_nchw(self.isa, g, xi, w, b, self.clamp, oi)
                    }
                    Layout::ChannelLast => {
                        kernels::depthwise3x3_nhwc(self.isa, g, xi, w, b, self.clamp, oi)
                    }
                }
            }
        })
    }
}

impl TypedOp for FastDepthwise {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        f32_image_fact(inputs, &self.output_shape)
    }

    fn cost(&self, _inputs: &[&TypedFact]) -> TractResult<TVec<(Cost, TDim)>> {
        let fmas = self.geometry.fmas() * self.batch;
        Ok(tvec!((Cost::FMA(f32::datum_type()), fmas.to_dim())))
    }

    as_op!();
}

/// A pointwise (1×1) convolution with its bias and following clamp fused; input and output each
/// channel-first or channel-last (tract's plans mix them: expansions read channel-first and
/// write channel-last for the depthwise convolution after them, projections the reverse).
#[derive(Debug, Clone, PartialEq)]
pub struct FastPointwise {
    pub pack: Arc<PointwisePack>,
    pub layout: PointwiseLayout,
    pub clamp: Clamp,
    pub output_shape: TVec<usize>,
}

impl Eq for FastPointwise {}

impl Op for FastPointwise {
    fn name(&self) -> StaticName {
        "EmonetPointwise".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!(
            "{} -> {} channels, {:?}, clamp {:?}..{:?}",
            self.pack.k, self.pack.co, self.layout, self.clamp.lo, self.clamp.hi
        )])
    }

    op_as_typed_op!();
}

impl EvalOp for FastPointwise {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        let x = f32s(&input)?;
        let px = x.len() / self.pack.k;
        ensure!(
            px * self.pack.co == self.output_shape.iter().product::<usize>(),
            "{}: input length",
            self.name()
        );
        written_output(&self.output_shape, |out| {
            kernels::pointwise(&self.pack, self.layout, px, x, self.clamp, out)
        })
    }
}

impl TypedOp for FastPointwise {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        f32_image_fact(inputs, &self.output_shape)
    }

    fn cost(&self, _inputs: &[&TypedFact]) -> TractResult<TVec<(Cost, TDim)>> {
        let px = self.output_shape.iter().product::<usize>() / self.pack.co;
        let fmas = px * self.pack.k * self.pack.co;
        Ok(tvec!((Cost::FMA(f32::datum_type()), fmas.to_dim())))
    }

    as_op!();
}

/// A dense (group 1) convolution of a channel-first image with constant weights, its bias and
/// following clamp fused: the image's patch matrix (im2col), then the pointwise kernel.
#[derive(Debug, Clone, PartialEq)]
pub struct FastConv {
    pub geometry: ConvGeometry,
    /// `k` = the patch rows.
    pub pack: Arc<PointwisePack>,
    pub clamp: Clamp,
    pub output_shape: TVec<usize>,
}

impl Eq for FastConv {}

impl Op for FastConv {
    fn name(&self) -> StaticName {
        "EmonetConv".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!(
            "{:?} -> {} channels, clamp {:?}..{:?}",
            self.geometry, self.pack.co, self.clamp.lo, self.clamp.hi
        )])
    }

    op_as_typed_op!();
}

impl EvalOp for FastConv {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        let x = f32s(&input)?;
        let g = &self.geometry;
        ensure!(
            x.len() == g.channels * g.in_h * g.in_w,
            "{}: input length",
            self.name()
        );
        written_output(&self.output_shape, |out| {
            kernels::conv_im2col(g, &self.pack, x, self.clamp, out)
        })
    }
}

impl TypedOp for FastConv {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        f32_image_fact(inputs, &self.output_shape)
    }

    fn cost(&self, _inputs: &[&TypedFact]) -> TractResult<TVec<(Cost, TDim)>> {
        let fmas = self.geometry.output_pixels() * self.pack.k * self.pack.co;
        Ok(tvec!((Cost::FMA(f32::datum_type()), fmas.to_dim())))
    }

    as_op!();
}

/// A max-pool over images without padding.
#[derive(Debug, Clone, PartialEq)]
pub struct FastMaxPool {
    pub geometry: PoolGeometry,
    pub layout: Layout,
    pub batch: usize,
    pub output_shape: TVec<usize>,
    pub isa: Isa,
}

impl Eq for FastMaxPool {}

impl Op for FastMaxPool {
    fn name(&self) -> StaticName {
        "EmonetMaxPool".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!(
            "{:?} {:?} batch {}",
            self.layout, self.geometry, self.batch
        )])
    }

    op_as_typed_op!();
}

impl EvalOp for FastMaxPool {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        let x = f32s(&input)?;
        let g = &self.geometry;
        let (in_len, out_len) = (g.channels * g.in_h * g.in_w, g.channels * g.out_h * g.out_w);
        ensure!(
            x.len() == in_len * self.batch,
            "{}: input length",
            self.name()
        );
        written_output(&self.output_shape, |out| {
            for (xi, oi) in x.chunks_exact(in_len).zip(out.chunks_exact_mut(out_len)) {
                match self.layout {
                    Layout::ChannelLast => kernels::maxpool_nhwc(self.isa, g, xi, oi),
                    Layout::ChannelFirst => kernels::maxpool_nchw(self.isa, g, xi, oi),
                }
            }
        })
    }
}

impl TypedOp for FastMaxPool {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        f32_image_fact(inputs, &self.output_shape)
    }

    as_op!();
}

/// The output fact of our operators: one f32 input, one f32 output of `shape`.
fn f32_image_fact(inputs: &[&TypedFact], shape: &[usize]) -> TractResult<TVec<TypedFact>> {
    ensure!(inputs.len() == 1 && inputs[0].datum_type == f32::datum_type());
    Ok(tvec!(f32::fact(shape)))
}

/// A new f32 tensor of `shape` that `write` fills, as the operator's one output. `write` must
/// set every element: the tensor starts uninitialized.
fn written_output(shape: &[usize], write: impl FnOnce(&mut [f32])) -> TractResult<TVec<TValue>> {
    // SAFETY: f32 has no invalid bit patterns, and every caller's kernel writes each element of
    // its output (checked by the tests against tract's own operators).
    let mut output = unsafe { Tensor::uninitialized::<f32>(shape)? };
    write(output.try_as_plain_ram_mut()?.as_slice_mut::<f32>()?);
    Ok(tvec!(output.into_tvalue()))
}

/// The elements of a plain f32 tensor.
fn f32s(t: &Tensor) -> TractResult<&[f32]> {
    t.try_as_plain_ram()?.as_slice::<f32>()
}

/// Batch, layout and `(h, w)` of a 2-D image pool spec over `shape`, if it is one.
fn image_dims(spec: &PoolSpec, shape: &[usize]) -> Option<(usize, Layout, usize, usize)> {
    let df = spec.data_format;
    let rank = if df.has_n() { 4 } else { 3 };
    if shape.len() != rank || spec.kernel_shape.len() != 2 {
        return None;
    }
    let batch = if df.has_n() { shape[0] } else { 1 };
    let hw = &shape[df.has_n() as usize + !df.c_is_last() as usize..][..2];
    let layout = if df.c_is_last() {
        Layout::ChannelLast
    } else {
        Layout::ChannelFirst
    };
    Some((batch, layout, hw[0], hw[1]))
}

/// The concrete f32 input shape of `node`'s input 0, if it has one.
fn f32_input_shape(model: &TypedModel, node: &TypedNode) -> TractResult<Option<TVec<usize>>> {
    let fact = model.outlet_fact(node.inputs[0])?;
    if fact.datum_type != f32::datum_type() {
        return Ok(None);
    }
    Ok(fact.shape.as_concrete().map(|s| s.into()))
}

/// The 2-D geometry of a convolution or pool over a concrete input.
struct Spatial {
    strides: [usize; 2],
    pad_before: [usize; 2],
    out_hw: [usize; 2],
    /// No padding on any side.
    unpadded: bool,
}

/// Strides, leading padding and spatial output size of `spec` over `shape`.
fn spatial_geometry(spec: &PoolSpec, shape: &[usize]) -> TractResult<Spatial> {
    let dims: TVec<TDim> = shape.iter().map(|d| d.to_dim()).collect();
    let geo = spec.compute_geo(&dims)?.to_concrete(shape)?.into_owned();
    let p = &geo.patch;
    ensure!(p.pad_before.len() == 2 && p.output_shape.len() == 2);
    let strides = spec.strides();
    let unpadded = p.pad_before.iter().chain(&p.pad_after).all(|&x| x == 0);
    Ok(Spatial {
        strides: [strides[0], strides[1]],
        pad_before: [p.pad_before[0], p.pad_before[1]],
        out_hw: [p.output_shape[0], p.output_shape[1]],
        unpadded,
    })
}

/// The constant f32 value of `outlet`, if it is one.
fn konst_f32(model: &TypedModel, outlet: OutletId) -> Option<Arc<Tensor>> {
    let fact = model.outlet_fact(outlet).ok()?;
    let k = fact.konst.clone()?;
    (k.datum_type() == f32::datum_type()).then_some(k)
}

/// A [`FastDepthwise`] for `node`, if it is a depthwise 3×3 convolution we run.
fn depthwise_for(model: &TypedModel, node: &TypedNode) -> TractResult<Option<FastDepthwise>> {
    let Some(conv) = node.op_as::<Conv>() else {
        return Ok(None);
    };
    let spec = &conv.pool_spec;
    let c = spec.input_channels;
    let Some(shape) = f32_input_shape(model, node)? else {
        return Ok(None);
    };
    let Some((batch, layout, in_h, in_w)) = image_dims(spec, &shape) else {
        return Ok(None);
    };
    if conv.q_params.is_some()
        || conv.group != c
        || spec.output_channels != c
        || c < 2
        || spec.kernel_shape[..] != [3, 3]
        || spec.dilations().iter().any(|&d| d != 1)
        || node.inputs.len() != 3
    {
        return Ok(None);
    }
    let (Some(kernel), Some(bias)) = (
        konst_f32(model, node.inputs[1]),
        konst_f32(model, node.inputs[2]),
    ) else {
        return Ok(None);
    };
    let kernel = conv.kernel_fmt.kernel_as_group_o_ihw(&kernel, c)?;
    if kernel.shape() != [c, 1, TAPS] || !(bias.len() == c || bias.len() == 1) {
        return Ok(None);
    }
    let Spatial {
        strides,
        pad_before: pads,
        out_hw,
        ..
    } = spatial_geometry(spec, &shape)?;
    let geometry = DwGeometry {
        channels: c,
        in_h,
        in_w,
        stride_h: strides[0],
        stride_w: strides[1],
        pad_top: pads[0],
        pad_left: pads[1],
        out_h: out_hw[0],
        out_w: out_hw[1],
    };
    let output_shape: TVec<usize> = match model.outlet_fact(node.id.into())?.shape.as_concrete() {
        Some(s) => s.into(),
        None => return Ok(None),
    };
    if !geometry.is_valid()
        || output_shape.iter().product::<usize>() != geometry.output_len() * batch
    {
        return Ok(None);
    }
    let k = f32s(&kernel)?;
    // Tap-major, [3][3][C], for both layouts.
    let weights = (0..TAPS * c).map(|i| k[(i % c) * TAPS + i / c]).collect();
    let b = f32s(&bias)?;
    let bias = (0..c).map(|i| b[i % b.len()]).collect();
    Ok(Some(FastDepthwise {
        geometry,
        layout,
        batch,
        weights: Arc::new(weights),
        bias: Arc::new(bias),
        clamp: Clamp::NONE,
        output_shape,
        isa: kernels::detected_isa(),
    }))
}

/// The only consumer of `outlet`, if it is a binary op of `outlet` and a constant f32 tensor
/// with `outlet`'s shape as its output (and `outlet` is no model output): the node, its op and
/// the constant.
fn const_operand_successor(
    model: &TypedModel,
    outlet: OutletId,
) -> Option<(&TypedNode, &TypedBinOp, Arc<Tensor>)> {
    let succ = &model.outlet_successors(outlet);
    if succ.len() != 1 || model.output_outlets().ok()?.contains(&outlet) {
        return None;
    }
    let node = model.node(succ[0].node);
    let bin = node.op_as::<TypedBinOp>()?;
    if node.inputs.len() != 2 || succ[0].slot > 1 {
        return None;
    }
    let other = node.inputs[1 - succ[0].slot];
    if other == outlet {
        return None;
    }
    let k = konst_f32(model, other)?;
    let same_shape =
        model.outlet_fact(node.id.into()).ok()?.shape == model.outlet_fact(outlet).ok()?.shape;
    same_shape.then_some((node, bin, k))
}

/// If the only consumer of `outlet` is `max(·, k)` or `min(·, k)` with a scalar constant `k`
/// and the same output shape, that node and the clamp with it applied after `clamp`.
fn next_clamp(model: &TypedModel, outlet: OutletId, clamp: Clamp) -> Option<(usize, Clamp)> {
    let (node, bin, k) = const_operand_successor(model, outlet)?;
    let v = if k.len() == 1 {
        f32s(&k).ok()?[0]
    } else {
        return None;
    };
    if v.is_nan() {
        return None;
    }
    let clamp = if bin.0.is::<Max>() && v <= clamp.hi {
        Clamp {
            lo: clamp.lo.max(v),
            ..clamp
        }
    } else if bin.0.is::<Min>() {
        Clamp {
            hi: clamp.hi.min(v),
            ..clamp
        }
    } else {
        return None;
    };
    Some((node.id, clamp))
}

/// A [`FastMaxPool`] for `node`, if it is a max-pool we run.
fn maxpool_for(model: &TypedModel, node: &TypedNode) -> TractResult<Option<FastMaxPool>> {
    let Some(pool) = node.op_as::<MaxPool>() else {
        return Ok(None);
    };
    let spec = &pool.pool_spec;
    let Some(shape) = f32_input_shape(model, node)? else {
        return Ok(None);
    };
    let Some((batch, layout, in_h, in_w)) = image_dims(spec, &shape) else {
        return Ok(None);
    };
    if pool.with_index_outputs.is_some() || spec.dilations().iter().any(|&d| d != 1) {
        return Ok(None);
    }
    let Spatial {
        strides,
        out_hw,
        unpadded,
        ..
    } = spatial_geometry(spec, &shape)?;
    let geometry = PoolGeometry {
        channels: match layout {
            Layout::ChannelLast => shape[shape.len() - 1],
            Layout::ChannelFirst => shape[shape.len() - 3],
        },
        in_h,
        in_w,
        k_h: spec.kernel_shape[0],
        k_w: spec.kernel_shape[1],
        stride_h: strides[0],
        stride_w: strides[1],
        out_h: out_hw[0],
        out_w: out_hw[1],
    };
    let Some(output_shape) = model.outlet_fact(node.id.into())?.shape.as_concrete() else {
        return Ok(None);
    };
    if !unpadded || !geometry.is_valid() {
        return Ok(None);
    }
    Ok(Some(FastMaxPool {
        geometry,
        layout,
        batch,
        output_shape: output_shape.into(),
        isa: kernels::detected_isa(),
    }))
}

/// Largest patch matrix [`FastConv`] builds, in floats (256 KiB: the classifier's stem needs
/// 28 × 1024; a detector's full-resolution stem, megabytes, stays with tract).
const MAX_PATCH_FLOATS: usize = 1 << 16;

/// A [`FastConv`] for `node`, if it is a float dense convolution of one channel-first image
/// (batch 1) with constant weights and bias, kernel larger than 1×1, at least 16 output
/// channels, no dilation and a patch matrix of at most [`MAX_PATCH_FLOATS`].
fn dense_conv_for(model: &TypedModel, node: &TypedNode) -> TractResult<Option<FastConv>> {
    let Some(conv) = node.op_as::<Conv>() else {
        return Ok(None);
    };
    let spec = &conv.pool_spec;
    let Some(shape) = f32_input_shape(model, node)? else {
        return Ok(None);
    };
    let Some((batch, Layout::ChannelFirst, in_h, in_w)) = image_dims(spec, &shape) else {
        return Ok(None);
    };
    let (ci, co) = (spec.input_channels, spec.output_channels);
    if conv.q_params.is_some()
        || conv.group != 1
        || batch != 1
        || co < 16
        || spec.kernel_shape.iter().product::<usize>() < 2
        || spec.dilations().iter().any(|&d| d != 1)
        || node.inputs.len() != 3
    {
        return Ok(None);
    }
    let (Some(kernel), Some(bias)) = (
        konst_f32(model, node.inputs[1]),
        konst_f32(model, node.inputs[2]),
    ) else {
        return Ok(None);
    };
    let taps = spec.kernel_shape[0] * spec.kernel_shape[1];
    let kernel = conv.kernel_fmt.kernel_as_group_o_ihw(&kernel, 1)?;
    if kernel.shape() != [1, co, ci * taps] || !(bias.len() == co || bias.len() == 1) {
        return Ok(None);
    }
    let Spatial {
        strides,
        pad_before,
        out_hw,
        ..
    } = spatial_geometry(spec, &shape)?;
    let Some(output_shape) = model.outlet_fact(node.id.into())?.shape.as_concrete() else {
        return Ok(None);
    };
    let geometry = ConvGeometry {
        channels: ci,
        in_h,
        in_w,
        k_h: spec.kernel_shape[0],
        k_w: spec.kernel_shape[1],
        stride_h: strides[0],
        stride_w: strides[1],
        pad_top: pad_before[0],
        pad_left: pad_before[1],
        out_h: out_hw[0],
        out_w: out_hw[1],
    };
    let px = geometry.output_pixels();
    if output_shape.iter().product::<usize>() != co * px
        || geometry.patch_rows() * px > MAX_PATCH_FLOATS
    {
        return Ok(None);
    }
    // Weights [co][patch rows], the rows past ci·taps zero.
    let (k, rows) = (ci * taps, geometry.patch_rows());
    let kv = f32s(&kernel)?;
    let weights: Vec<f32> = (0..co * rows)
        .map(|n| {
            if n % rows < k {
                kv[n / rows * k + n % rows]
            } else {
                0.0
            }
        })
        .collect();
    let b = f32s(&bias)?;
    let bias: Vec<f32> = (0..co).map(|j| b[j % b.len()]).collect();
    Ok(Some(FastConv {
        geometry,
        pack: Arc::new(PointwisePack::new(rows, co, &weights, &bias)),
        clamp: Clamp::NONE,
        output_shape: output_shape.into(),
    }))
}

/// A float 1×1 convolution, as found in a decluttered model.
struct PointwiseConv {
    k: usize,
    co: usize,
    /// `[co][k]`.
    weights: Vec<f32>,
    layout: PointwiseLayout,
    /// Position of the output channel axis.
    output_axis: usize,
    output_shape: TVec<usize>,
}

/// The convolution of `node`, if it is the `EinSum` that tract makes of a float 1×1
/// convolution with constant weights (`oi` or `io`) and at least 16 output channels: input
/// `P i`, `i P` or `n i P` (n of size 1), output `P o` or `o P`, `P` the pixel axes in the same
/// order.
fn pointwise_for(model: &TypedModel, node: &TypedNode) -> TractResult<Option<PointwiseConv>> {
    let Some(einsum) = node.op_as::<EinSum>() else {
        return Ok(None);
    };
    if einsum.q_params.is_some()
        || einsum.operating_dt != f32::datum_type()
        || node.inputs.len() != 2
    {
        return Ok(None);
    }
    let (ins, outs) = einsum.axes.to_strs();
    let (x, w, y): (Vec<char>, Vec<char>, Vec<char>) = match (&ins[..], &outs[..]) {
        ([x, w], [y]) => (
            x.chars().collect(),
            w.chars().collect(),
            y.chars().collect(),
        ),
        _ => return Ok(None),
    };
    let (Some(shape), Some(kernel)) = (
        f32_input_shape(model, node)?,
        konst_f32(model, node.inputs[1]),
    ) else {
        return Ok(None);
    };
    let Some(output_shape) = model.outlet_fact(node.id.into())?.shape.as_concrete() else {
        return Ok(None);
    };
    let (&[w0, w1], true) = (&w[..], x.len() == shape.len()) else {
        return Ok(None);
    };
    // The input channel axis is the weight axis that the input has.
    let (i, o, weights_co_k) = if x.contains(&w1) {
        (w1, w0, true)
    } else {
        (w0, w1, false)
    };
    let Some((input_cf, pixels)) = split_channel(&x, &shape, i) else {
        return Ok(None);
    };
    let Some((output_cf, out_pixels)) = split_channel(&y, output_shape, o) else {
        return Ok(None);
    };
    let output_axis = y.iter().position(|&c| c == o).unwrap_or(0);
    let k = shape[x.iter().position(|&c| c == i).unwrap_or(0)];
    let co = output_shape[output_axis];
    let px = output_shape.iter().product::<usize>() / co.max(1);
    // Shapes the NEON kernel takes (elsewhere only tests run the plain loops).
    let neon_shape = k >= 4 && k.is_multiple_of(4) && px >= 4;
    let contracted = !x.contains(&o) && !y.contains(&i);
    if pixels != out_pixels || !contracted || kernel.len() != k * co || co < 16 || !neon_shape {
        return Ok(None);
    }
    let kv = f32s(&kernel)?;
    let weights: Vec<f32> = if weights_co_k {
        kv.to_vec()
    } else {
        (0..k * co).map(|n| kv[(n % k) * co + n / k]).collect()
    };
    Ok(Some(PointwiseConv {
        k,
        co,
        weights,
        layout: PointwiseLayout {
            input_cf,
            output_cf,
        },
        output_axis,
        output_shape: output_shape.into(),
    }))
}

/// Whether channel axis `ch` of `axes` (dims `shape`) is channel-last (`false`: no axis longer
/// than 1 after it) or channel-first (`true`: none before it), with the other axes longer than
/// 1, the pixels, in order.
fn split_channel(axes: &[char], shape: &[usize], ch: char) -> Option<(bool, Vec<char>)> {
    let at = axes.iter().position(|&c| c == ch)?;
    let long = |a: &usize| shape.get(*a).is_some_and(|&d| d > 1);
    let pixels = (0..axes.len())
        .filter(|a| *a != at && long(a))
        .map(|a| axes[a])
        .collect();
    match (
        (0..at).any(|a| long(&a)),
        (at + 1..axes.len()).any(|a| long(&a)),
    ) {
        (_, false) => Some((false, pixels)),
        (false, true) => Some((true, pixels)),
        (true, true) => None,
    }
}

/// If the only consumer of `outlet` is an `Add` of a constant that varies along axis `axis`
/// only (a convolution's bias), that node and the bias per output channel (`co` of them).
fn next_bias(
    model: &TypedModel,
    outlet: OutletId,
    axis: usize,
    co: usize,
) -> Option<(usize, Vec<f32>)> {
    let (node, bin, k) = const_operand_successor(model, outlet)?;
    let shape = k.shape();
    let per_channel =
        shape.get(axis) == Some(&co) && shape.iter().enumerate().all(|(a, &d)| a == axis || d == 1);
    if !bin.0.is::<Add>() || !(per_channel || k.len() == 1) {
        return None;
    }
    let b = f32s(&k).ok()?;
    Some((node.id, (0..co).map(|j| b[j % b.len()]).collect()))
}

/// Replaces `last`'s output by `op` applied to `node`'s input 0.
fn swap_in(
    model: &mut TypedModel,
    node: usize,
    last: usize,
    op: impl Into<Box<dyn TypedOp>>,
) -> TractResult<()> {
    let mut patch = TypedModelPatch::new(format!("emonet {}", model.node(node).name));
    let x = patch.tap_model(model, model.node(node).inputs[0])?;
    let name = model.node(node).name.clone();
    let y = patch.wire_node(name, op.into(), &[x])?[0];
    patch.shunt_outside(model, last.into(), y)?;
    patch.apply(model)
}

/// Swaps tract's depthwise convolutions (with their Clip/ReLU), max-pools and, on aarch64,
/// pointwise convolutions (with their bias and Clip/ReLU) in a decluttered model for ours (see
/// the module documentation). Run `into_optimized` afterwards.
pub fn install(model: &mut TypedModel) -> TractResult<Installed> {
    install_with(model, Choice::default())
}

/// [`install`] with an explicit choice of operators.
pub fn install_with(model: &mut TypedModel, choice: Choice) -> TractResult<Installed> {
    let mut done = Installed::default();
    for id in model.eval_order()? {
        let node = model.node(id);
        if let Some(mut op) = depthwise_for(model, node)?.filter(|_| choice.depthwise) {
            let last;
            (last, op.clamp) = absorb_clamps(model, id, op.clamp, &mut done);
            swap_in(model, id, last, op)?;
            done.depthwise += 1;
        } else if let Some(op) = maxpool_for(model, node)?.filter(|_| choice.maxpool) {
            swap_in(model, id, id, op)?;
            done.maxpools += 1;
        } else if !choice.pointwise {
            continue;
        } else if let Some(conv) = pointwise_for(model, node)? {
            let (mut last, mut bias) = (id, vec![0.0; conv.co]);
            if let Some((next, b)) = next_bias(model, id.into(), conv.output_axis, conv.co) {
                (last, bias) = (next, b);
            }
            let (last, clamp) = absorb_clamps(model, last, Clamp::NONE, &mut done);
            let op = FastPointwise {
                pack: Arc::new(PointwisePack::new(conv.k, conv.co, &conv.weights, &bias)),
                layout: conv.layout,
                clamp,
                output_shape: conv.output_shape,
            };
            swap_in(model, id, last, op)?;
            done.pointwise += 1;
        } else if let Some(mut op) = dense_conv_for(model, node)? {
            let last;
            (last, op.clamp) = absorb_clamps(model, id, op.clamp, &mut done);
            swap_in(model, id, last, op)?;
            done.dense += 1;
        }
    }
    model.compact()?;
    Ok(done)
}

/// The last of the clamp nodes that follow node `from` (itself if none) and the clamp they
/// make after `clamp`, counted in `done`.
fn absorb_clamps(
    model: &TypedModel,
    from: usize,
    clamp: Clamp,
    done: &mut Installed,
) -> (usize, Clamp) {
    let (mut last, mut clamp) = (from, clamp);
    while let Some((next, c)) = next_clamp(model, last.into(), clamp) {
        (last, clamp) = (next, c);
        done.fused_clamps += 1;
    }
    (last, clamp)
}
