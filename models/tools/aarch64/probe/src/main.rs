use tract_onnx::prelude::*;

// emonet's own operators, compiled in from the main crate's source: the probe then loads a model
// exactly as emonet does (`EMONET_TRACT_OPS=tract` leaves tract's operators, as emonet does).
#[allow(dead_code)]
#[path = "../../../../../src/tract_ops/mod.rs"]
mod tract_ops;

fn main() -> TractResult<()> {
    let args: Vec<String> = std::env::args().collect();
    let path = args.get(1).expect("usage: tract-probe MODEL.onnx RUNS");
    let runs: usize = args.get(2).map_or(Ok(1), |s| s.parse())?;
    #[cfg(feature = "mt")]
    if let Some(t) = args.get(3) {
        let t: usize = t.parse()?;
        if t > 1 {
            tract_linalg::multithread::set_default_executor(
                tract_linalg::multithread::Executor::multithread(t),
            );
        }
    }
    let timed = std::env::var("PROBE_TIME").is_ok();
    if std::env::var("PROBE_BASE").is_ok() {
        // where the loader put this binary: profile_insns.py maps guest addresses to symbols
        println!("probe_main {:p}", main as fn() -> TractResult<()>);
    }
    let inference = tract_onnx::onnx().model_for_path(path)?;
    let shape = inference.input_fact(0)?.shape.as_concrete_finite()?.expect("fixed shape").to_vec();
    let mut typed = inference
        .with_input_fact(0, f32::fact(&shape).into())?
        .into_typed()?
        .into_decluttered()?;
    if std::env::var("PROBE_DECLUTTERED").is_ok() {
        // the graph our operators are installed into: op, input shapes, output shape
        for node in typed.nodes() {
            let ins: Vec<String> = node
                .inputs
                .iter()
                .map(|o| format!("{:?}", typed.outlet_fact(*o).map(|f| f.shape.clone())))
                .collect();
            println!("decl {} {} {:?} in {:?} out {:?}", node.id, node.op().name(), node.op().info()?, ins, typed.outlet_fact(node.id.into())?.shape);
        }
    }
    if std::env::var("EMONET_TRACT_OPS").map_or(true, |v| v != "tract") {
        tract_ops::install(&mut typed)?;
    }
    let plan = typed.into_optimized()?.into_runnable()?;
    if std::env::var("PROBE_OPS").is_ok() {
        // histogram of the optimized plan's operators (what tract actually runs)
        let mut ops = std::collections::BTreeMap::<String, usize>::new();
        for node in plan.model().nodes() {
            *ops.entry(node.op().name().to_string()).or_default() += 1;
            if std::env::var("PROBE_OPS").is_ok_and(|v| v == "info") {
                println!("node {} {} {:?}", node.name, node.op().name(), node.op().info()?);
            }
        }
        for (op, n) in &ops {
            println!("op {op} {n}");
        }
    }
    let n: usize = shape.iter().product();
    let data: Vec<f32> = (0..n).map(|i| ((i as u64 * 7919) % 256) as f32 / 127.5 - 1.0).collect();
    let input: Tensor = tract_ndarray::ArrayD::from_shape_vec(&*shape, data)?.into();
    let mut state = TypedSimpleState::new(&plan)?;
    let mut sum = 0f32;
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t0 = std::time::Instant::now();
        let out = state.run(tvec!(input.clone().into_tvalue()))?;
        times.push(t0.elapsed().as_secs_f64() * 1e3);
        sum += out[0].cast_to::<f32>()?.to_plain_array_view::<f32>()?.iter().sum::<f32>();
    }
    println!("{path} runs={runs} checksum={sum}");
    if timed && !times.is_empty() {
        times.sort_by(f64::total_cmp);
        println!("p50_ms={:.3} min_ms={:.3}", times[times.len() / 2], times[0]);
    }
    Ok(())
}
