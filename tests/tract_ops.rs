//! Our tract operators (`emonet::tract_ops`) against tract's own, on the shipped models:
//! - every depthwise convolution and max-pool of the classifier and the detector, rebuilt alone
//!   with its exact geometry and random weights, bias and input, run by tract and by our
//!   operator for every instruction set this CPU has: max abs difference ≤ 1e-5 (with and
//!   without a fused Clip);
//! - every pointwise (1×1) convolution (tract's `EinSum` of it) and the classifier's dense stem
//!   convolution, likewise alone, ours (the NEON kernel on aarch64, plain loops elsewhere)
//!   against tract's: max abs difference ≤ 1e-5;
//! - both whole models on real images, with and without our operators (with the pointwise ones,
//!   which only aarch64 installs by default, on every architecture): outputs within 1e-4, and
//!   the optimized plan really runs our operators (and no tract depthwise / max-pool is left).

mod common;

use std::path::{Path, PathBuf};

use emonet::tract_ops::kernels::{usable, Isa};
use emonet::tract_ops::{install, install_with, Choice, FastDepthwise, FastMaxPool};
use emonet::vision::model;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::ops::cnn::{Conv, MaxPool};
use tract_onnx::tract_core::ops::einsum::EinSum;
use tract_onnx::tract_core::ops::math;

use common::root;

const CLASSIFIER: &str = "models/emotion-mnv2-w8.onnx";
const DETECTOR: &str = "models/blazeface-short.onnx";

fn input_shape(file: &str) -> [usize; 4] {
    if file == DETECTOR {
        [1, 128, 128, 3]
    } else {
        [1, 3, 64, 64]
    }
}

/// The model as tract declutters it, before our operators are installed.
fn decluttered(file: &str) -> TypedModel {
    tract_onnx::onnx()
        .model_for_path(root().join(file))
        .unwrap()
        .with_input_fact(0, f32::fact(input_shape(file)).into())
        .unwrap()
        .into_typed()
        .unwrap()
        .into_decluttered()
        .unwrap()
}

/// Deterministic values in [-scale, scale).
fn noise(seed: &mut u64, shape: &[usize], scale: f32) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n)
        .map(|_| {
            *seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((*seed >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
        })
        .collect();
    tract_ndarray::ArrayD::from_shape_vec(shape, v)
        .unwrap()
        .into_tensor()
}

/// Noise of `model`'s (concrete) input shape.
fn input_noise(model: &TypedModel, seed: &mut u64, scale: f32) -> Tensor {
    let fact = model.input_fact(0).unwrap();
    noise(seed, fact.shape.as_concrete().unwrap(), scale)
}

fn run(model: &TypedModel, input: &Tensor) -> Vec<Tensor> {
    let plan = model
        .clone()
        .into_optimized()
        .unwrap()
        .into_runnable()
        .unwrap();
    plan.run(tvec!(input.clone().into_tvalue()))
        .unwrap()
        .into_iter()
        .map(|t| t.into_tensor())
        .collect()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.shape(), b.shape());
    let f = |t: &Tensor| {
        t.try_as_plain_ram()
            .unwrap()
            .as_slice::<f32>()
            .unwrap()
            .to_vec()
    };
    let (a, b) = (f(a), f(b));
    a.iter()
        .zip(b)
        .map(|(x, y)| {
            if x.is_finite() {
                (x - y).abs()
            } else {
                f32::INFINITY
            }
        })
        .fold(0.0, f32::max)
}

/// Op names of the optimized plan of `model`.
fn optimized_ops(model: &TypedModel) -> Vec<String> {
    let m = model.clone().into_optimized().unwrap();
    m.nodes.iter().map(|n| n.op.name().to_string()).collect()
}

/// One node of a model, rebuilt alone: source → op (random constants for its other inputs)
/// → optionally a ReLU6 written as ONNX's Clip declutters (`max(·, 0)`, `min(·, 6)`).
fn single_op_model(
    model: &TypedModel,
    node: &TypedNode,
    relu6: bool,
    seed: &mut u64,
) -> TypedModel {
    let mut m = TypedModel::default();
    let x_fact = model.outlet_fact(node.inputs[0]).unwrap().clone();
    let mut inputs = tvec!(m.add_source("x", x_fact.without_value()).unwrap());
    for (i, &outlet) in node.inputs.iter().enumerate().skip(1) {
        let shape = model
            .outlet_fact(outlet)
            .unwrap()
            .shape
            .as_concrete()
            .unwrap()
            .to_vec();
        let k = m
            .add_const(format!("k{i}"), noise(seed, &shape, 0.5))
            .unwrap();
        inputs.push(k);
    }
    let mut y = m.wire_node("op", node.op.clone(), &inputs).unwrap()[0];
    if relu6 {
        for (name, op, v) in [("lo", math::max(), 0f32), ("hi", math::min(), 6f32)] {
            let shape = tvec![1usize; m.outlet_fact(y).unwrap().rank()];
            let k = tensor0(v).broadcast_into_rank(shape.len()).unwrap();
            let k = m.add_const(format!("{name}.k"), k).unwrap();
            y = m.wire_node(name, op, &[y, k]).unwrap()[0];
        }
    }
    m.select_output_outlets(&[y]).unwrap();
    m
}

fn set_isa(model: &mut TypedModel, isa: Isa) {
    for node in &mut model.nodes {
        if let Some(op) = node.op_as_mut::<FastDepthwise>() {
            op.isa = isa;
        } else if let Some(op) = node.op_as_mut::<FastMaxPool>() {
            op.isa = isa;
        }
    }
}

/// Runs every depthwise conv / max-pool node of `file` alone, ours against tract's.
fn compare_each_node(file: &str) -> (usize, usize) {
    let model = decluttered(file);
    let mut seed = 7u64;
    let (mut convs, mut pools) = (0, 0);
    for node in &model.nodes {
        let is_dw = node
            .op_as::<Conv>()
            .is_some_and(|c| c.group > 1 && c.group == c.pool_spec.input_channels);
        let is_pool = node.op_is::<MaxPool>();
        if !is_dw && !is_pool {
            continue;
        }
        for relu6 in [false, true] {
            let tract_model = single_op_model(&model, node, relu6, &mut seed);
            let mut ours = tract_model.clone();
            let done = install(&mut ours).unwrap();
            assert_eq!(
                (done.depthwise, done.maxpools, done.fused_clamps),
                (
                    is_dw as usize,
                    is_pool as usize,
                    2 * (relu6 && is_dw) as usize
                ),
                "{file} {}: {done:?}",
                node.name
            );
            let x = input_noise(&tract_model, &mut seed, 4.0);
            let want = &run(&tract_model, &x)[0];
            for isa in [Isa::Baseline, Isa::Avx2, Isa::Avx512] {
                if usable(isa) != isa {
                    continue;
                }
                set_isa(&mut ours, isa);
                let got = &run(&ours, &x)[0];
                let d = max_abs_diff(got, want);
                assert!(
                    d <= 1e-5,
                    "{file} {} relu6={relu6} {isa:?}: max diff {d}",
                    node.name
                );
            }
            let ops = optimized_ops(&ours);
            assert!(
                !ops.iter()
                    .any(|o| o == "DepthWiseConv"
                        || o.contains("MaxPool") && !o.starts_with("Emonet")),
                "{ops:?}"
            );
        }
        if is_dw {
            convs += 1;
        } else {
            pools += 1;
        }
    }
    (convs, pools)
}

#[test]
fn classifier_depthwise_nodes_match_tract() {
    // MobileNetV2: 17 depthwise convolutions, each followed by a ReLU6 in the file.
    assert_eq!(compare_each_node(CLASSIFIER), (17, 0));
}

#[test]
fn detector_depthwise_and_maxpool_nodes_match_tract() {
    // BlazeFace short range: 16 depthwise convolutions and 3 max-pools.
    assert_eq!(compare_each_node(DETECTOR), (16, 3));
}

/// Only our pointwise and dense convolutions.
const POINTWISE_ONLY: Choice = Choice {
    depthwise: false,
    maxpool: false,
    pointwise: true,
};

/// Runs every pointwise convolution (an `EinSum` with two inputs) and every dense convolution
/// of `file` alone, ours against tract's; returns how many of each.
fn compare_pointwise_nodes(file: &str) -> (usize, usize) {
    let model = decluttered(file);
    let mut seed = 11u64;
    let (mut pointwise, mut dense) = (0, 0);
    for node in &model.nodes {
        let is_pw = node.op_is::<EinSum>() && node.inputs.len() == 2;
        let is_dense = node.op_as::<Conv>().is_some_and(|c| c.group == 1);
        if !is_pw && !is_dense {
            continue;
        }
        for relu6 in [false, true] {
            let tract_model = single_op_model(&model, node, relu6, &mut seed);
            let mut ours = tract_model.clone();
            let done = install_with(&mut ours, POINTWISE_ONLY).unwrap();
            if done.pointwise + done.dense == 0 {
                // What stays with tract: the classifier's heads (a Gemm, no pixel axes), a
                // channel-last stem (the detector's), and pointwise shapes outside the NEON
                // kernel's (fewer than 16 outputs, inputs not in fours).
                let w = model
                    .outlet_fact(node.inputs[node.inputs.len() - 1])
                    .unwrap();
                let dims = w.shape.as_concrete().unwrap_or(&[]).to_vec();
                let odd = dims.iter().any(|d| d % 4 != 0) || dims.iter().any(|&d| d < 16);
                assert!(
                    is_dense || odd || node.outputs[0].fact.rank() == 2,
                    "{file} {}: {node}",
                    node.name
                );
                break;
            }
            assert_eq!(
                (done.pointwise, done.dense, done.fused_clamps),
                (is_pw as usize, is_dense as usize, 2 * relu6 as usize),
                "{file} {}",
                node.name
            );
            let x = input_noise(&tract_model, &mut seed, 1.0);
            let want = &run(&tract_model, &x)[0];
            let got = &run(&ours, &x)[0];
            let d = max_abs_diff(got, want);
            assert!(
                d <= 1e-5,
                "{file} {} relu6={relu6}: max diff {d}",
                node.name
            );
            if !relu6 {
                if is_pw {
                    pointwise += 1;
                } else {
                    dense += 1;
                }
            }
        }
    }
    (pointwise, dense)
}

#[test]
fn classifier_pointwise_and_stem_nodes_match_tract() {
    // MobileNetV2: 34 pointwise convolutions and the 3×3 stride-2 stem.
    assert_eq!(compare_pointwise_nodes(CLASSIFIER), (34, 1));
}

#[test]
fn detector_pointwise_nodes_match_tract() {
    // BlazeFace short range: 17 of its 20 pointwise convolutions (one has 42 input channels, two
    // have fewer than 16 outputs: tract's); its 5×5 stem is channel-last (tract's too).
    assert_eq!(compare_pointwise_nodes(DETECTOR), (17, 0));
}

/// A real image as the model input: `samples/frames/*.jpg` resized, values in [-1, 1].
fn image_input(path: &Path, shape: [usize; 4], nhwc: bool) -> Tensor {
    let img = image::open(path).unwrap().to_rgb8();
    let (h, w) = if nhwc {
        (shape[1], shape[2])
    } else {
        (shape[2], shape[3])
    };
    let img = image::imageops::resize(
        &img,
        w as u32,
        h as u32,
        image::imageops::FilterType::Triangle,
    );
    let px =
        |y: usize, x: usize, c: usize| img.get_pixel(x as u32, y as u32)[c] as f32 / 127.5 - 1.0;
    let t = if nhwc {
        tract_ndarray::Array4::from_shape_fn((1, h, w, 3), |(_, y, x, c)| px(y, x, c))
    } else {
        tract_ndarray::Array4::from_shape_fn((1, 3, h, w), |(_, c, y, x)| px(y, x, c))
    };
    t.into_tensor()
}

fn whole_model_matches(file: &str, choice: Choice, expect_dw: usize, expect_pools: usize) {
    let path = root().join(file);
    let proto = model::read_proto(&path).unwrap();
    let shape = input_shape(file);
    let tract = model::build_plan_with(&proto, &path, &shape, None).unwrap();
    let ours = model::build_plan_with(&proto, &path, &shape, Some(choice)).unwrap();
    let names = |m: &model::OnnxModel| -> Vec<String> {
        m.plan
            .model()
            .nodes
            .iter()
            .map(|n| n.op.name().to_string())
            .collect()
    };
    let ours_ops = names(&ours);
    let count = |ops: &[String], name: &str| ops.iter().filter(|o| *o == name).count();
    assert_eq!(
        count(&ours_ops, "EmonetDepthwise3x3"),
        expect_dw,
        "{ours_ops:?}"
    );
    assert_eq!(count(&ours_ops, "DepthWiseConv"), 0, "{ours_ops:?}");
    assert_eq!(count(&names(&tract), "DepthWiseConv"), expect_dw);
    let mut frames: Vec<PathBuf> = std::fs::read_dir(root().join("samples/frames"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jpg"))
        .collect();
    frames.sort();
    for frame in frames.iter().take(6) {
        let x = image_input(frame, shape, file == DETECTOR);
        let a = tract.plan.run(tvec!(x.clone().into_tvalue())).unwrap();
        let b = ours.plan.run(tvec!(x.into_tvalue())).unwrap();
        for (ta, tb) in a.iter().zip(b.iter()) {
            // The detector's outputs are compared as the daemon uses them: box geometry (the
            // 16-wide output, in input pixels) divided by the input side, scores through the
            // sigmoid of the clipped logit. Emotion logits are compared as they are.
            let d = if file == DETECTOR {
                let side = shape[1] as f32;
                let used = |t: &Tensor| -> Tensor {
                    let wide = t.shape().last() == Some(&16);
                    let v: Vec<f32> = t
                        .try_as_plain_ram()
                        .unwrap()
                        .as_slice::<f32>()
                        .unwrap()
                        .iter()
                        .map(|&v| {
                            if wide {
                                v / side
                            } else {
                                1.0 / (1.0 + (-v.clamp(-100.0, 100.0)).exp())
                            }
                        })
                        .collect();
                    Tensor::from_shape(t.shape(), &v).unwrap()
                };
                max_abs_diff(&used(ta), &used(tb))
            } else {
                max_abs_diff(ta, tb)
            };
            assert!(
                d <= 1e-4,
                "{file} on {}: outputs differ by {d}",
                frame.display()
            );
        }
    }
    // Last, so that a missing max-pool does not hide the comparison above.
    assert_eq!(
        count(&ours_ops, "EmonetMaxPool"),
        expect_pools,
        "{ours_ops:?}"
    );
}

#[test]
fn classifier_end_to_end_matches_tract() {
    whole_model_matches(CLASSIFIER, Choice::default(), 17, 0);
}

#[test]
fn detector_end_to_end_matches_tract() {
    whole_model_matches(DETECTOR, Choice::default(), 16, 3);
}

/// With the pointwise and stem convolutions ours as well (aarch64's default), whatever the
/// architecture: the plan runs them, and the outputs stay within 1e-4 of tract's.
#[test]
fn classifier_with_our_pointwise_matches_tract() {
    let all = Choice {
        pointwise: true,
        ..Choice::default()
    };
    whole_model_matches(CLASSIFIER, all, 17, 0);
}

#[test]
fn detector_with_our_pointwise_matches_tract() {
    let all = Choice {
        pointwise: true,
        ..Choice::default()
    };
    whole_model_matches(DETECTOR, all, 16, 3);
}
