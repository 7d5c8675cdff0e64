//! `emonet bench`: replays recorded frames through the whole pipeline — JPEG decode, face
//! detection, crop/resize + classification of every face, tracking, event serialisation and
//! queuing for MQTT — and reports per-stage latency (p50/p99), end-to-end frame rate, peak RSS and
//! the frames a camera would have dropped.
//!
//! Two phases:
//! 1. **throughput**: frames back to back on one thread, every stage timed separately; the frame
//!    rate is `frames / Σ frame time` (decode included, as if the camera delivered JPEG).
//! 2. **real time** (`--camera-fps`, default 30; 0 skips it): a capture thread decodes the frames
//!    at the camera rate into the daemon's newest-frame-wins hand-off
//!    ([`crate::handoff::LatestFrame`]) while a worker runs detect → classify → track → publish,
//!    as the daemon does; frames replaced before the worker took them are the dropped frames.
//!
//! `--raw-model PATH` (repeatable) also times tract alone on that ONNX file (its fixed input
//! shape, input element `i` = `((i·7919) mod 256) / 127.5 − 1`, one thread), the numbers
//! `models/train/compare_runtimes.py` sets against onnxruntime on the same tensor.
//!
//! Both phases drive the daemon's own [`Worker`] (tracking, serialisation, queuing), and
//! percentiles are the daemon's ([`crate::daemon::stats::percentile`], nearest rank).
//!
//! Peak RSS is the process's `VmHWM` (it includes both models, the decoded frames and this
//! harness). Timing numbers vary with the machine's load: the table header shows the load
//! average when the run started.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context, Result};
use serde::Serialize;
use tract_onnx::prelude::*;

use crate::config::Settings;
use crate::daemon::stats::percentile;
use crate::daemon::Worker;
use crate::event::round3;
use crate::follow::FaceFollower;
use crate::frame::decode_image;
use crate::handoff::{LatestFrame, Take};
use crate::mqtt::Outbox;
use crate::pipeline::Pipeline;

/// `emonet bench` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Daemon config: models, detector/tracker settings and `replay.path` as the frames.
    #[arg(long, short, value_name = "FILE", conflicts_with_all = ["frames", "models"])]
    pub config: Option<PathBuf>,
    /// Folder (or single file) of JPEG/PNG frames to replay, in file-name order, cycled.
    #[arg(long, value_name = "DIR", default_value = "samples/frames")]
    pub frames: PathBuf,
    /// Folder holding the default config's model files (detector and classifier).
    #[arg(long, value_name = "DIR", default_value = "models")]
    pub models: PathBuf,
    /// Emotion classifier to use instead of the default (e.g. models/emotion-mnv2-fp32.onnx).
    #[arg(long, value_name = "PATH")]
    pub classifier: Option<PathBuf>,
    /// `classifier.reuse.max_frames` for the real-time run (0 = classify every face on every
    /// frame; default: the config's, 2 without one). The throughput table always classifies.
    #[arg(long, value_name = "N")]
    pub reuse_max_frames: Option<u32>,
    /// `detector.reuse.max_frames` for the real-time run (0 = detect on every frame; default:
    /// the config's, 2 without one). The throughput table always detects.
    #[arg(long, value_name = "N")]
    pub detect_reuse_max_frames: Option<u32>,
    /// `detector.follow.every` (0 = the full detector on every frame; default: the config's, the
    /// range's default without one: 5 for `far`, 0 for `short` and `full`). Applies to both
    /// runs: it is how faces are found, not a cache.
    #[arg(long, value_name = "N")]
    pub follow_every: Option<u32>,
    /// Face detector to use instead of the default.
    #[arg(long, value_name = "PATH")]
    pub detector: Option<PathBuf>,
    /// `detector.range` (`short`, `full` or `far`) instead of the config's / the default.
    #[arg(long, value_enum)]
    pub range: Option<crate::config::DetectorRange>,
    /// Frames to time (after the warm-up), cycling through the folder.
    #[arg(long, value_name = "N", default_value_t = 300)]
    pub frames_count: usize,
    /// Untimed frames first (tract's and the allocator's first runs are slower).
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub warmup: usize,
    /// Camera rate of the real-time phase; 0 skips it.
    #[arg(long, value_name = "FPS", default_value_t = 30.0)]
    pub camera_fps: f64,
    /// Also time tract alone on this ONNX file (repeatable).
    #[arg(long, value_name = "PATH")]
    pub raw_model: Vec<PathBuf>,
    /// Runs per --raw-model.
    #[arg(long, value_name = "N", default_value_t = 200)]
    pub raw_runs: usize,
    /// Print one JSON document instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// Latency distribution of one stage, milliseconds.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StageStats {
    pub stage: String,
    /// Number of samples (frames, or faces for `classify_per_face`).
    pub n: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub mean_ms: f64,
    pub max_ms: f64,
}

impl StageStats {
    /// Nearest-rank percentiles of `samples`.
    pub fn from_samples(stage: &str, samples: &[Duration]) -> StageStats {
        let mut ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        ms.sort_by(f64::total_cmp);
        let n = ms.len();
        StageStats {
            stage: stage.to_string(),
            n,
            p50_ms: round3(percentile(&ms, 50.0)),
            p99_ms: round3(percentile(&ms, 99.0)),
            mean_ms: round3(if n == 0 {
                0.0
            } else {
                ms.iter().sum::<f64>() / n as f64
            }),
            max_ms: round3(ms.last().copied().unwrap_or(0.0)),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cpu: String,
    pub logical_cpus: usize,
    pub simd: Vec<&'static str>,
    /// 1-minute load average when the run started (another job competing for the CPU shows here).
    pub loadavg_1m: f64,
    pub os: String,
    pub arch: &'static str,
    pub profile: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct Throughput {
    pub frames: usize,
    pub faces: usize,
    pub stages: Vec<StageStats>,
    /// frames / Σ(decode + detect + classify + track + publish).
    pub fps: f64,
    /// frames / Σ(detect + classify + track + publish): the worker alone (decode happens on the
    /// capture thread in the daemon).
    pub worker_fps: f64,
    /// `detector.follow.every` of this run, and the timed frames whose faces were followed.
    pub follow_every: u32,
    pub followed: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct RealTime {
    pub camera_fps: f64,
    pub offered: u64,
    pub processed: u64,
    pub dropped: u64,
    pub seconds: f64,
    pub processed_fps: f64,
    pub worker_frame: StageStats,
    /// `classifier.reuse.max_frames` of this run.
    pub reuse_max_frames: u32,
    pub faces_classified: usize,
    pub faces_reused: usize,
    /// `detector.reuse.max_frames` of this run, and the frames that took a recent frame's faces.
    pub detect_reuse_max_frames: u32,
    pub detections_reused: usize,
    /// Frames whose faces were followed from the last one (`detector.follow`).
    pub detections_followed: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct RawModel {
    pub path: String,
    pub input_shape: Vec<usize>,
    pub runs: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub min_ms: f64,
    pub load_ms: f64,
    /// Every output, flattened, for comparison with another runtime.
    pub outputs: Vec<Vec<f32>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub machine: Machine,
    pub detector: String,
    pub classifier: String,
    pub frames_dir: String,
    pub load_ms: f64,
    pub throughput: Throughput,
    pub realtime: Option<RealTime>,
    pub raw_models: Vec<RawModel>,
    /// `VmHWM` of this process at the end, MiB.
    pub peak_rss_mib: f64,
    /// The large-block pool at the end, its peaks since the models were loaded (all zero where
    /// the binary does not install it).
    pub pool: crate::alloc::PoolStats,
}

/// Peak resident set size (`VmHWM`) of this process in KiB, if the kernel reports it.
pub fn peak_rss_kib() -> Option<u64> {
    crate::cpu::proc_status_kib("self", "VmHWM")
}

fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            matches!(k.trim(), "model name" | "Model" | "Hardware").then(|| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let loadavg_1m = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN);
    Machine {
        cpu,
        logical_cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        simd: crate::cpu::features(),
        loadavg_1m,
        os: std::env::consts::OS.into(),
        arch: std::env::consts::ARCH,
        profile: if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
    }
}

/// The frames to replay, read into memory as encoded bytes (decoding is a timed stage).
fn read_frames(path: &Path) -> Result<Vec<(PathBuf, Vec<u8>)>> {
    let files = crate::camera::replay::list_images(path)
        .with_context(|| format!("frames {}", path.display()))?;
    files
        .into_iter()
        .map(|f| {
            let bytes = std::fs::read(&f).with_context(|| format!("reading {}", f.display()))?;
            Ok((f, bytes))
        })
        .collect()
}

fn settings_for(args: &BenchArgs) -> Result<(Settings, PathBuf)> {
    let (mut s, frames) = match &args.config {
        Some(c) => {
            let mut s = Settings::load(c)?;
            s.resolve_paths(c);
            let frames = s.replay.path.clone();
            (s, frames)
        }
        None => {
            // the default config's model files, looked up in --models
            let mut s = Settings::default();
            s.use_models_in(&args.models);
            (s, args.frames.clone())
        }
    };
    if let Some(c) = &args.classifier {
        s.classifier.model = c.clone();
    }
    if let Some(r) = args.range {
        s.detector.range = r;
        s.detector.apply_range();
    }
    if let Some(d) = &args.detector {
        s.detector.model = d.clone();
    }
    if let Some(n) = args.reuse_max_frames {
        s.classifier.reuse.max_frames = n;
    }
    if let Some(n) = args.detect_reuse_max_frames {
        s.detector.reuse.max_frames = n;
    }
    if let Some(n) = args.follow_every {
        s.detector.follow.every = Some(n);
    }
    Ok((s, frames))
}

fn throughput(
    pipeline: &Pipeline,
    settings: &Settings,
    frames: &[(PathBuf, Vec<u8>)],
    args: &BenchArgs,
) -> Result<Throughput> {
    let outbox = Outbox::new(settings.mqtt.queue_capacity);
    let mut worker = Worker::new(pipeline, &settings.tracker, outbox, "bench");
    let (mut decode_t, mut detect_t, mut classify_t, mut per_face_t, mut track_t, mut frame_t) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    let mut one_face_t = vec![];
    let mut follow = FaceFollower::new(pipeline.follow);
    let mut followed = 0;
    let mut worker_total = Duration::ZERO;
    let mut faces_seen = 0;
    let mut clock = SystemTime::now();
    for i in 0..args.warmup + args.frames_count {
        let (path, bytes) = &frames[i % frames.len()];
        let t0 = Instant::now();
        let image = decode_image(bytes).with_context(|| format!("decoding {}", path.display()))?;
        let t1 = Instant::now();
        let (faces, was_followed) = pipeline.detect(&image, &mut follow)?;
        let t2 = Instant::now();
        let mut out = Vec::with_capacity(faces.len());
        let mut face_times = Vec::with_capacity(faces.len());
        for face in faces {
            let tf = Instant::now();
            let scores = pipeline.classifier.classify_face(&image, &face)?;
            face_times.push(tf.elapsed());
            out.push((face, scores));
        }
        let t3 = Instant::now();
        // frames are 1/30 s apart for the tracker's timestamps, whatever the bench speed
        clock += Duration::from_micros(33_333);
        worker.publish(&out, clock);
        let t4 = Instant::now();
        if i < args.warmup {
            continue;
        }
        faces_seen += out.len();
        followed += usize::from(was_followed);
        decode_t.push(t1 - t0);
        detect_t.push(t2 - t1);
        classify_t.push(t3 - t2);
        per_face_t.extend(face_times);
        track_t.push(t4 - t3);
        frame_t.push(t4 - t0);
        if out.len() == 1 {
            one_face_t.push(t4 - t0);
        }
        worker_total += t4 - t1;
    }
    let total: Duration = frame_t.iter().sum();
    let n = frame_t.len();
    Ok(Throughput {
        frames: n,
        faces: faces_seen,
        stages: vec![
            StageStats::from_samples("decode", &decode_t),
            StageStats::from_samples("detect", &detect_t),
            StageStats::from_samples("classify (all faces)", &classify_t),
            StageStats::from_samples("classify per face", &per_face_t),
            StageStats::from_samples("track+serialize+queue", &track_t),
            StageStats::from_samples("frame total", &frame_t),
            StageStats::from_samples("frame total, 1 face", &one_face_t),
        ],
        fps: round3(n as f64 / total.as_secs_f64().max(1e-9)),
        worker_fps: round3(n as f64 / worker_total.as_secs_f64().max(1e-9)),
        follow_every: pipeline.follow.every.unwrap_or(0),
        followed,
    })
}

fn realtime(
    pipeline: &Pipeline,
    settings: &Settings,
    frames: &[(PathBuf, Vec<u8>)],
    args: &BenchArgs,
) -> Result<RealTime> {
    let handoff = LatestFrame::new();
    let outbox = Outbox::new(settings.mqtt.queue_capacity);
    let mut worker = Worker::new(pipeline, &settings.tracker, outbox, "bench");
    let period = Duration::from_secs_f64(1.0 / args.camera_fps);
    let count = args.frames_count;
    let failed = AtomicBool::new(false);
    let started = Instant::now();
    let mut worker_t = Vec::with_capacity(count);
    let (mut faces_classified, mut faces_reused) = (0, 0);
    let (mut detections_reused, mut detections_followed) = (0, 0);
    std::thread::scope(|scope| -> Result<()> {
        let handoff = &handoff;
        let failed = &failed;
        scope.spawn(move || {
            let mut due = Instant::now();
            for i in 0..count {
                let now = Instant::now();
                if due > now {
                    std::thread::sleep(due - now);
                }
                due += period;
                let Ok(image) = decode_image(&frames[i % frames.len()].1) else {
                    failed.store(true, Ordering::Relaxed);
                    break;
                };
                handoff.put(crate::frame::Frame {
                    seq: i as u64,
                    image,
                    captured: SystemTime::now(),
                });
            }
            handoff.close();
        });
        loop {
            let frame = match handoff.take(Duration::from_millis(500)) {
                Take::Frame(f) => f,
                Take::Timeout => continue,
                Take::Closed => break,
            };
            let report = worker.handle(&frame)?;
            faces_classified += report.times.faces.classified;
            faces_reused += report.times.faces.reused;
            detections_reused += usize::from(report.times.detection_reused);
            detections_followed += usize::from(report.times.detection_followed);
            worker_t.push(report.total);
        }
        Ok(())
    })?;
    if failed.load(Ordering::Relaxed) {
        bail!("a frame could not be decoded");
    }
    let seconds = started.elapsed().as_secs_f64();
    let processed = worker_t.len() as u64;
    Ok(RealTime {
        camera_fps: args.camera_fps,
        offered: count as u64,
        processed,
        dropped: handoff.dropped(),
        seconds: round3(seconds),
        processed_fps: round3(processed as f64 / seconds),
        worker_frame: StageStats::from_samples("worker frame", &worker_t),
        reuse_max_frames: pipeline.reuse.max_frames,
        faces_classified,
        faces_reused,
        detect_reuse_max_frames: pipeline.scene_reuse.max_frames,
        detections_reused,
        detections_followed,
    })
}

/// The deterministic input shared with `compare_runtimes.py`.
pub fn raw_input(shape: &[usize]) -> Tensor {
    let n: usize = shape.iter().product();
    let data: Vec<f32> = (0..n)
        .map(|i| ((i as u64 * 7919) % 256) as f32 / 127.5 - 1.0)
        .collect();
    tract_ndarray::ArrayD::from_shape_vec(shape, data)
        .expect("shape matches")
        .into()
}

/// Times tract alone on `path` with its declared (fixed) input shape.
pub fn time_raw_model(path: &Path, runs: usize) -> Result<RawModel> {
    let t0 = Instant::now();
    let inference = tract_onnx::onnx()
        .model_for_path(path)
        .with_context(|| format!("reading {}", path.display()))?;
    let shape = inference
        .input_fact(0)?
        .shape
        .as_concrete_finite()?
        .with_context(|| format!("{}: input shape is not fixed", path.display()))?
        .to_vec();
    drop(inference);
    let model = crate::vision::model::load(path, &shape)?;
    let load_ms = t0.elapsed().as_secs_f64() * 1e3;
    let mut state = crate::vision::model::PlanState::new(&model.plan)?;
    let input = raw_input(&shape);
    let mut times = Vec::with_capacity(runs);
    let mut outputs = Vec::new();
    for i in 0..runs + runs.div_ceil(10) {
        let x = input.clone().into_tvalue();
        let t = Instant::now();
        let out = state.run(tvec!(x))?;
        let d = t.elapsed();
        if i >= runs.div_ceil(10) {
            times.push(d);
        }
        if outputs.is_empty() {
            outputs = out
                .iter()
                .map(|o| -> Result<Vec<f32>> {
                    Ok(o.cast_to::<f32>()?
                        .to_plain_array_view::<f32>()?
                        .iter()
                        .copied()
                        .collect())
                })
                .collect::<Result<_>>()?;
        }
    }
    let s = StageStats::from_samples("raw", &times);
    let min = times.iter().min().copied().unwrap_or_default();
    Ok(RawModel {
        path: path.display().to_string(),
        input_shape: shape,
        runs,
        p50_ms: s.p50_ms,
        p99_ms: s.p99_ms,
        min_ms: round3(min.as_secs_f64() * 1e3),
        load_ms: round3(load_ms),
        outputs,
    })
}

/// Runs the benchmark and prints the table (or JSON).
pub fn run(args: &BenchArgs) -> Result<()> {
    let report = measure(args)?;
    let out = std::io::stdout();
    let mut out = out.lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &report)?;
        use std::io::Write;
        writeln!(out)?;
    } else {
        print_table(&mut out, &report)?;
    }
    Ok(())
}

/// Runs the benchmark and returns its report.
pub fn measure(args: &BenchArgs) -> Result<Report> {
    if args.frames_count == 0 {
        bail!("--frames-count must be at least 1");
    }
    if !(args.camera_fps >= 0.0 && args.camera_fps.is_finite()) {
        bail!("--camera-fps must be a number >= 0");
    }
    let machine = machine();
    let (settings, frames_dir) = settings_for(args)?;
    let frames = read_frames(&frames_dir)?;
    let t0 = Instant::now();
    let pipeline = Pipeline::load(&settings)?;
    let load_ms = round3(t0.elapsed().as_secs_f64() * 1e3);

    let throughput = throughput(&pipeline, &settings, &frames, args)?;
    let realtime = if args.camera_fps > 0.0 {
        Some(realtime(&pipeline, &settings, &frames, args)?)
    } else {
        None
    };
    let raw_models = args
        .raw_model
        .iter()
        .map(|p| time_raw_model(p, args.raw_runs.max(1)))
        .collect::<Result<Vec<_>>>()?;
    let report = Report {
        machine,
        detector: settings.detector.model.display().to_string(),
        classifier: settings.classifier.model.display().to_string(),
        frames_dir: frames_dir.display().to_string(),
        load_ms,
        throughput,
        realtime,
        raw_models,
        peak_rss_mib: peak_rss_kib().map_or(f64::NAN, |k| round3(k as f64 / 1024.0)),
        pool: crate::alloc::stats(),
    };
    Ok(report)
}

/// The human-readable report.
pub fn print_table(out: &mut impl std::io::Write, r: &Report) -> Result<()> {
    let m = &r.machine;
    writeln!(
        out,
        "# {} ({} logical CPUs, {}; {} {} {}), load average {:.2} at start",
        m.cpu,
        m.logical_cpus,
        m.simd.join(" "),
        m.os,
        m.arch,
        m.profile,
        m.loadavg_1m
    )?;
    writeln!(out, "# detector   {}", r.detector)?;
    writeln!(out, "# classifier {}", r.classifier)?;
    writeln!(
        out,
        "# frames     {} (models loaded in {:.0} ms)",
        r.frames_dir, r.load_ms
    )?;
    print_throughput(out, &r.throughput)?;
    if let Some(rt) = &r.realtime {
        print_realtime(out, rt)?;
    }
    if !r.raw_models.is_empty() {
        print_raw_models(out, &r.raw_models)?;
    }
    writeln!(out)?;
    writeln!(out, "peak RSS (VmHWM) {:.1} MiB", r.peak_rss_mib)?;
    if r.pool.peak_top > 0 {
        let mib = |b: usize| b as f64 / (1 << 20) as f64;
        writeln!(
            out,
            "large-block pool since loading: at most {:.1} MiB in use, {:.1} MiB spanned",
            mib(r.pool.peak_in_use),
            mib(r.pool.peak_top)
        )?;
    }
    Ok(())
}

fn print_throughput(out: &mut impl std::io::Write, t: &Throughput) -> Result<()> {
    writeln!(out)?;
    writeln!(
        out,
        "throughput: {} frames, {} faces, one thread, back to back; {} frames followed \
         (detector.follow.every = {})",
        t.frames, t.faces, t.followed, t.follow_every
    )?;
    writeln!(
        out,
        "{:<24} {:>6} {:>9} {:>9} {:>9} {:>9}",
        "stage", "n", "p50 ms", "p99 ms", "mean ms", "max ms"
    )?;
    for s in &t.stages {
        writeln!(
            out,
            "{:<24} {:>6} {:>9.3} {:>9.3} {:>9.3} {:>9.3}",
            s.stage, s.n, s.p50_ms, s.p99_ms, s.mean_ms, s.max_ms
        )?;
    }
    writeln!(
        out,
        "end-to-end {:.1} fps (decode included), worker alone {:.1} fps",
        t.fps, t.worker_fps
    )?;
    Ok(())
}

fn print_realtime(out: &mut impl std::io::Write, rt: &RealTime) -> Result<()> {
    writeln!(out)?;
    writeln!(
        out,
        "real time: camera at {:.1} fps, {} frames offered in {:.2} s: {} processed ({:.1} fps), \
         {} dropped; worker frame p50 {:.3} ms, p99 {:.3} ms; faces classified {}, \
         reused {} (classifier.reuse.max_frames = {}); frames with a recent frame's faces {} \
         (detector.reuse.max_frames = {}), followed {}",
        rt.camera_fps,
        rt.offered,
        rt.seconds,
        rt.processed,
        rt.processed_fps,
        rt.dropped,
        rt.worker_frame.p50_ms,
        rt.worker_frame.p99_ms,
        rt.faces_classified,
        rt.faces_reused,
        rt.reuse_max_frames,
        rt.detections_reused,
        rt.detect_reuse_max_frames,
        rt.detections_followed
    )?;
    Ok(())
}

fn print_raw_models(out: &mut impl std::io::Write, raw: &[RawModel]) -> Result<()> {
    writeln!(out)?;
    writeln!(out, "tract alone, one thread, fixed input:")?;
    writeln!(
        out,
        "{:<44} {:>16} {:>9} {:>9} {:>9}",
        "model", "input", "p50 ms", "p99 ms", "min ms"
    )?;
    for m in raw {
        writeln!(
            out,
            "{:<44} {:>16} {:>9.3} {:>9.3} {:>9.3}",
            m.path,
            format!("{:?}", m.input_shape),
            m.p50_ms,
            m.p99_ms,
            m.min_ms
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let d: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let s = StageStats::from_samples("x", &d);
        assert_eq!(
            (s.n, s.p50_ms, s.p99_ms, s.max_ms),
            (100, 50.0, 99.0, 100.0)
        );
        assert!((s.mean_ms - 50.5).abs() < 1e-9);
        let s = StageStats::from_samples("one", &[Duration::from_micros(1500)]);
        assert_eq!((s.p50_ms, s.p99_ms), (1.5, 1.5));
        let s = StageStats::from_samples("none", &[]);
        assert_eq!((s.n, s.p50_ms), (0, 0.0));
    }

    #[test]
    fn peak_rss_is_read_on_linux() {
        if cfg!(target_os = "linux") {
            let kib = peak_rss_kib().expect("VmHWM in /proc/self/status");
            assert!(kib > 100, "{kib} KiB");
        } else {
            eprintln!("skipped: /proc/self/status is Linux-only");
        }
    }

    /// The checkout's sample frames and models, 20 frames after 1 of warm-up, no raw model.
    fn sample_args() -> BenchArgs {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        BenchArgs {
            config: None,
            frames: root.join("samples/frames"),
            models: root.join("models"),
            classifier: None,
            detector: None,
            range: None,
            reuse_max_frames: None,
            detect_reuse_max_frames: None,
            follow_every: None,
            frames_count: 20,
            warmup: 1,
            camera_fps: 200.0,
            raw_model: vec![],
            raw_runs: 0,
            json: true,
        }
    }

    #[test]
    fn replays_the_sample_frames_through_every_stage() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let args = BenchArgs {
            raw_model: vec![root.join("models/blazeface-short.onnx")],
            raw_runs: 2,
            ..sample_args()
        };
        let r = measure(&args).unwrap();
        let t = &r.throughput;
        assert_eq!(t.frames, 20);
        // samples/frames: one face in 0000-0011, none in the other 8
        assert_eq!(t.faces, 12, "{t:?}");
        let stage = |name: &str| t.stages.iter().find(|s| s.stage == name).unwrap();
        assert_eq!(stage("classify per face").n, 12);
        assert_eq!(stage("frame total, 1 face").n, 12);
        assert!(stage("detect").p50_ms > 0.0 && t.fps > 0.0);
        let rt = r.realtime.as_ref().unwrap();
        assert_eq!(rt.processed + rt.dropped, rt.offered);
        assert_eq!(r.raw_models[0].input_shape, vec![1, 128, 128, 3]);
        assert_eq!(
            r.raw_models[0].outputs.iter().map(Vec::len).sum::<usize>(),
            896 * 17
        );
        assert!(r.peak_rss_mib > 1.0);
        let mut text = Vec::new();
        print_table(&mut text, &r).unwrap();
        let text = String::from_utf8(text).unwrap();
        assert!(
            text.contains("classify per face") && text.contains("peak RSS"),
            "{text}"
        );
        serde_json::to_string(&r).unwrap();
    }

    /// `--range far --follow-every 4`: CenterFace on one frame in four, the sample face followed
    /// on the others and found on every one of its frames, in both runs.
    #[test]
    fn follow_every_applies_to_both_runs() {
        let args = BenchArgs {
            range: Some(crate::config::DetectorRange::Far),
            reuse_max_frames: Some(0),
            detect_reuse_max_frames: Some(0),
            follow_every: Some(4),
            // the 12 frames with the face
            frames_count: 12,
            warmup: 0,
            ..sample_args()
        };
        let r = measure(&args).unwrap();
        let t = &r.throughput;
        assert_eq!((t.follow_every, t.followed), (4, 9), "{t:?}");
        assert_eq!(t.faces, 12, "{t:?}");
        let rt = r.realtime.as_ref().unwrap();
        assert!(rt.detections_followed > 0, "{rt:?}");
    }

    #[test]
    fn raw_input_matches_the_python_formula() {
        let t = raw_input(&[1, 2, 2, 2]);
        let v = t.to_plain_array_view::<f32>().unwrap();
        let v: Vec<f32> = v.iter().copied().collect();
        // i·7919 mod 256 for i = 0..8: 0, 239, 222, 205, 188, 171, 154, 137
        let expect: Vec<f32> = [0u32, 239, 222, 205, 188, 171, 154, 137]
            .iter()
            .map(|&k| k as f32 / 127.5 - 1.0)
            .collect();
        assert_eq!(v, expect);
    }
}
