//! Per-operator profile of one ONNX model in tract, with tract's own operators and with ours
//! (`emonet::tract_ops`), in the same process, runs interleaved so that both see the same
//! machine state. Each node's `eval` is timed inside tract's plan (`run_plan_with_eval`, the
//! hook tract-cli's `--profile` uses); times are summed per operator name per run, and the
//! median over runs is printed.
//!
//!     cargo run --release --example op_profile -- models/emotion-mnv2-w8.onnx [RUNS]
//!
//! Input: the deterministic tensor of `emonet bench --raw-model` and `compare_runtimes.py`.
//! One thread (tract's default).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use emonet::vision::model::{self, OnnxModel, PlanState};
use tract_onnx::prelude::*;
use tract_onnx::tract_core::plan::eval;

/// Per-op-name nanoseconds of each run, and node counts.
#[derive(Default)]
struct Profile {
    runs: Vec<BTreeMap<String, u64>>,
    nodes: BTreeMap<String, usize>,
    totals: Vec<Duration>,
}

impl Profile {
    fn median_us(&self, name: &str) -> f64 {
        let mut v: Vec<u64> = self
            .runs
            .iter()
            .map(|r| r.get(name).copied().unwrap_or(0))
            .collect();
        v.sort_unstable();
        v[v.len() / 2] as f64 / 1e3
    }

    fn median_total_ms(&self) -> f64 {
        let mut v = self.totals.clone();
        v.sort_unstable();
        v[v.len() / 2].as_secs_f64() * 1e3
    }
}

fn profile_once(m: &OnnxModel, state: &mut PlanState, x: &Tensor, p: &mut Profile) -> Result<()> {
    let mut this = BTreeMap::new();
    let t0 = Instant::now();
    state.run_plan_with_eval(tvec!(x.clone().into_tvalue()), |ctx, st, node, inputs| {
        let t = Instant::now();
        let r = eval(ctx, st, node, inputs);
        *this.entry(node.op.name().to_string()).or_insert(0u64) += t.elapsed().as_nanos() as u64;
        r
    })?;
    p.totals.push(t0.elapsed());
    p.runs.push(this);
    if p.nodes.is_empty() {
        for n in &m.plan.model().nodes {
            *p.nodes.entry(n.op.name().to_string()).or_insert(0) += 1;
        }
    }
    Ok(())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let path = PathBuf::from(args.get(1).context("usage: op_profile MODEL.onnx [RUNS]")?);
    let runs: usize = args.get(2).map_or(Ok(300), |s| s.parse())?;
    let proto = model::read_proto(&path)?;
    let shape = tract_onnx::onnx()
        .model_for_path(&path)?
        .input_fact(0)?
        .shape
        .as_concrete_finite()?
        .context("input shape is not fixed")?
        .to_vec();
    let n: usize = shape.iter().product();
    let data: Vec<f32> = (0..n)
        .map(|i| ((i as u64 * 7919) % 256) as f32 / 127.5 - 1.0)
        .collect();
    let x = tract_ndarray::ArrayD::from_shape_vec(shape.clone(), data)?.into_tensor();
    let own = Some(emonet::tract_ops::Choice::default());
    let plans = [None, own].map(|own| model::build_plan_with(&proto, &path, &shape, own));
    let [tract, ours] = plans;
    let (tract, ours) = (tract?, ours?);
    let mut st_t = PlanState::new(&tract.plan)?;
    let mut st_o = PlanState::new(&ours.plan)?;
    let (mut p_t, mut p_o) = (Profile::default(), Profile::default());
    for i in 0..runs + runs / 10 {
        let (mut a, mut b) = (Profile::default(), Profile::default());
        profile_once(
            &tract,
            &mut st_t,
            &x,
            if i < runs / 10 { &mut a } else { &mut p_t },
        )?;
        profile_once(
            &ours,
            &mut st_o,
            &x,
            if i < runs / 10 { &mut b } else { &mut p_o },
        )?;
    }
    println!(
        "# {} · input {:?} · {runs} runs · medians · one thread",
        path.display(),
        shape
    );
    println!("| plan | op | nodes | µs per run | share |\n|---|---|---:|---:|---:|");
    for (label, p) in [("tract", &p_t), ("emonet ops", &p_o)] {
        let total_us = p.median_total_ms() * 1e3;
        let mut rows: Vec<(String, usize, f64)> = p
            .nodes
            .iter()
            .map(|(k, &c)| (k.clone(), c, p.median_us(k)))
            .collect();
        rows.sort_by(|a, b| b.2.total_cmp(&a.2));
        for (name, count, us) in rows.iter().filter(|r| r.2 >= 1.0) {
            println!(
                "| {label} | {name} | {count} | {us:.1} | {:.1} % |",
                us / total_us * 100.0
            );
        }
        println!(
            "| {label} | **total (run)** | {} | {total_us:.1} | |",
            p.nodes.values().sum::<usize>()
        );
    }
    Ok(())
}
