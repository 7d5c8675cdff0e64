//! `emonet run`: wires the stages together and keeps them alive.
//!
//! ```text
//! capture thread ──LatestFrame──▶ inference thread (Worker: detect → classify → track) ──Outbox──▶ MQTT task
//! ```
//! Capture blocks in the kernel, inference is CPU-bound, publishing is async I/O: each gets the
//! execution model that suits it. [`run`] reads as its steps: start the publisher, start capture,
//! start the worker, supervise (signals, watchdog, stats), shut down. One [`Shutdown`] stops
//! capture and the worker; the worker finishes the frame in hand; a second one then tells the
//! publisher to flush, say `offline` and disconnect.

pub mod capture;
pub mod stats;
pub mod worker;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context, Result};

use crate::camera::{FrameSource, ReplaySource, V4l2Source};
use crate::config::{Settings, SourceKind};
use crate::event::{encode, StatePayload};
use crate::handoff::{LatestFrame, Take};
use crate::mqtt::{Outbox, Topics};
use crate::pipeline::Pipeline;
use crate::ratelimit::{held_back, LogLimiter};
use crate::web::LiveView;

pub use crate::shutdown::Shutdown;
use stats::{stats_payload, Counters, StatsContext};
pub use worker::{FrameReport, Worker};

/// Opens the configured source. At start-up any failure is fatal (a wrong device path should
/// stop the service with a clear message); later failures are retried by the capture loop.
pub fn open_source(settings: &Settings) -> Result<Box<dyn FrameSource>> {
    Ok(match settings.camera.source {
        SourceKind::V4l2 => Box::new(V4l2Source::open(&settings.camera).context(
            "camera.source = \"v4l2\" (check camera.device, permissions: the video group)",
        )?),
        SourceKind::Replay => Box::new(ReplaySource::open(
            &settings.replay.path,
            settings.replay.fps,
            settings.replay.looped,
        )?),
    })
}

/// What the threads and the supervisor share (each thread holds a clone).
#[derive(Clone)]
struct Shared {
    counters: Arc<Counters>,
    handoff: Arc<LatestFrame>,
    outbox: Arc<Outbox>,
    /// Stops capture and inference.
    stop: Shutdown,
    /// The inference thread has returned (no more frames, or `stop`).
    worker_done: Arc<tokio::sync::Notify>,
}

/// Runs the daemon until SIGTERM/SIGINT, `shutdown` is triggered, or a non-looping replay runs
/// out. A source that fails fatally (a configuration problem) stops it with that error.
pub fn run(settings: Settings, shutdown: Shutdown) -> Result<()> {
    let device_id = settings.device_id();
    if settings.broker.enabled {
        crate::broker::start_embedded(&settings.broker.listen)?;
    }
    let pipeline = Pipeline::load(&settings)?;
    let source = open_source(&settings)?;
    log::info!(
        "emonet {} device {device_id}: source {}, detector {}, classifier {}, publishing to {}:{} under {}/{device_id}/",
        env!("CARGO_PKG_VERSION"),
        source.describe(),
        settings.detector.describe(),
        pipeline.classifier.meta().name,
        settings.mqtt.host,
        settings.mqtt.port,
        settings.mqtt.topic_prefix
    );
    crate::cpu::log_features();
    let stats_cx = StatsContext {
        device_id: device_id.clone(),
        started: Instant::now(),
        models: model_names(&settings),
        source: source.describe(),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .thread_name("emonet-io")
        .build()
        .context("cannot start the async runtime")?;
    let shared = Shared {
        counters: Arc::new(Counters::default()),
        handoff: Arc::new(LatestFrame::new()),
        outbox: Outbox::new(settings.mqtt.queue_capacity),
        stop: shutdown,
        worker_done: Arc::new(tokio::sync::Notify::new()),
    };
    shared.counters.beat();
    let flush = Shutdown::new();
    let publisher = start_publisher(&runtime, &settings, &device_id, &shared.outbox, &flush);
    let web = start_web(&settings, &shared, &device_id)?;
    let capture = start_capture(source, &shared, &settings)?;
    let view = web.as_ref().map(|(v, _)| v.clone());
    let worker = start_worker(pipeline, &shared, &settings, &device_id, view)?;
    let supervised = runtime.block_on(supervise(&shared, &settings, &stats_cx));
    shut_down(&shared, worker, capture, &flush, publisher, &runtime);
    if let Some((_, server)) = web {
        server.stop();
    }
    runtime.shutdown_timeout(Duration::from_millis(200));
    supervised?;
    if let Some(msg) = shared.counters.fatal() {
        bail!("the frame source failed and retrying cannot fix it: {msg}");
    }
    log::info!("stopped");
    Ok(())
}

fn model_names(settings: &Settings) -> BTreeMap<String, String> {
    let name = |p: &std::path::Path| {
        p.file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let mut names = BTreeMap::from([
        ("detector".to_string(), name(&settings.detector.model)),
        ("classifier".to_string(), name(&settings.classifier.model)),
    ]);
    if settings.detector.following().is_on() {
        let follower = settings.detector.follower().model;
        names.insert("follower".to_string(), name(&follower));
    }
    names
}

/// The MQTT task, with the initial (empty) state queued so that `state` is retained from the
/// first connection on.
fn start_publisher(
    runtime: &tokio::runtime::Runtime,
    settings: &Settings,
    device_id: &str,
    outbox: &Arc<Outbox>,
    flush: &Shutdown,
) -> tokio::task::JoinHandle<Result<()>> {
    let empty = StatePayload::from_tracks(&[], device_id, SystemTime::now());
    if let Some(bytes) = encode("state", &empty) {
        outbox.set_state(bytes);
    }
    let topics = Topics::new(&settings.mqtt.topic_prefix, device_id);
    runtime.spawn(crate::mqtt::run_publisher(
        settings.mqtt.clone(),
        topics,
        device_id.to_string(),
        outbox.clone(),
        flush.clone(),
    ))
}

fn start_capture(
    source: Box<dyn FrameSource>,
    shared: &Shared,
    settings: &Settings,
) -> Result<JoinHandle<()>> {
    let (s, cam) = (shared.clone(), settings.camera.clone());
    Ok(std::thread::Builder::new()
        .name("emonet-capture".into())
        .spawn(move || {
            crate::alloc::bypass_this_thread();
            capture::capture_loop(source, &s.handoff, &s.counters, &s.stop, &cam)
        })?)
}

/// The local web view when `[http] enabled`: the view the worker draws into and the server.
fn start_web(
    settings: &Settings,
    shared: &Shared,
    device_id: &str,
) -> Result<Option<(Arc<LiveView>, crate::web::Server)>> {
    let http = &settings.http;
    if !http.enabled {
        return Ok(None);
    }
    let view = Arc::new(LiveView::new(http.max_fps, http.jpeg_quality));
    let (s1, s2, s3) = (shared.clone(), shared.clone(), shared.clone());
    let (v, id) = (view.clone(), device_id.to_string());
    let sources = crate::web::Sources {
        view: view.clone(),
        metrics: Box::new(move || stats::metrics_text(&s1.counters, &s1.handoff, &s1.outbox)),
        state: Box::new(move || {
            let c = &s2.counters;
            let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
            serde_json::json!({
                "device_id": id,
                "max_fps": v.max_fps(),
                "faces": v.state().get("faces").cloned().unwrap_or_default(),
                "stats": {
                    "camera": c.camera.lock().map(|s| s.clone()).unwrap_or_default(),
                    "frames": {"captured": load(&c.captured), "processed": load(&c.processed),
                               "dropped": s2.handoff.dropped(), "corrupt": load(&c.corrupt)},
                    "faces_in_view": load(&c.faces_in_view),
                    "mqtt": s2.outbox.counts(),
                },
            })
        }),
        healthy: Box::new(move || s3.counters.silent_for() < Duration::from_secs(10)),
    };
    let token = Some(http.token.clone()).filter(|t| !t.is_empty());
    let server = crate::web::start(&http.listen, token, sources)?;
    Ok(Some((view, server)))
}

fn start_worker(
    pipeline: Pipeline,
    shared: &Shared,
    settings: &Settings,
    device_id: &str,
    view: Option<Arc<LiveView>>,
) -> Result<JoinHandle<()>> {
    let s = shared.clone();
    let (device_id, tracker) = (device_id.to_string(), settings.tracker.clone());
    Ok(std::thread::Builder::new()
        .name("emonet-infer".into())
        .spawn(move || {
            let mut worker = Worker::new(&pipeline, &tracker, s.outbox.clone(), &device_id);
            if let Some(view) = view {
                worker = worker.with_view(view);
            }
            inference_loop(&mut worker, &s.handoff, &s.counters, &s.stop);
            let left = worker.finish();
            if left > 0 {
                log::info!("stopping: {left} face(s) reported as left");
            }
            s.worker_done.notify_one();
        })?)
}

fn inference_loop(
    worker: &mut Worker,
    handoff: &LatestFrame,
    counters: &Counters,
    stop: &Shutdown,
) {
    let mut errors = LogLimiter::new(5, Duration::from_secs(10));
    loop {
        counters.beat();
        let frame = match handoff.take(Duration::from_millis(500)) {
            Take::Frame(f) => f,
            Take::Timeout if stop.is_triggered() => return,
            Take::Timeout => continue,
            Take::Closed => return,
        };
        match worker.handle(&frame) {
            Ok(report) => counters.record_frame(&report),
            Err(e) => {
                // A model error on one frame (odd size, NaNs) must not end the service.
                if let Some(n) = errors.allow(Instant::now()) {
                    let more = held_back(n, "frames not processed");
                    log::warn!("frame {} not processed: {e:#}{more}", frame.seq);
                }
                counters
                    .corrupt
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
        handoff.recycle(frame);
        if stop.is_triggered() {
            return;
        }
    }
}

/// Waits for a reason to stop (a signal, `stop`, the worker running out of frames), petting the
/// systemd watchdog while the worker is alive and queuing a stats message every interval.
async fn supervise(shared: &Shared, settings: &Settings, stats_cx: &StatsContext) -> Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    // Handlers first: a SIGTERM right after READY must already mean a clean stop.
    let mut sigterm =
        signal(SignalKind::terminate()).context("cannot install the SIGTERM handler")?;
    let mut sigint =
        signal(SignalKind::interrupt()).context("cannot install the SIGINT handler")?;
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    let watchdog = sd_notify::watchdog_enabled();
    let mut watchdog_tick =
        tokio::time::interval(watchdog.map_or(Duration::from_secs(3600), |d| d / 2));
    let mut stats_tick = tokio::time::interval(Duration::from_secs(
        settings.mqtt.stats_interval_secs.max(1),
    ));
    stats_tick.tick().await;
    loop {
        tokio::select! {
            _ = sigterm.recv() => { log::info!("SIGTERM: shutting down"); break; }
            _ = sigint.recv() => { log::info!("SIGINT: shutting down"); break; }
            _ = shared.stop.triggered() => { log::info!("shutting down"); break; }
            _ = shared.worker_done.notified() => { log::info!("no more frames: shutting down"); break; }
            _ = watchdog_tick.tick(), if watchdog.is_some() => {
                // Only pet the watchdog while the worker is alive: a wedged model run
                // should get the service restarted.
                let silent = shared.counters.silent_for();
                if silent < watchdog.unwrap_or_default() {
                    let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
                } else {
                    log::error!("inference worker silent for {} ms: not petting the watchdog", silent.as_millis());
                }
            }
            _ = stats_tick.tick() => {
                let stats = stats_payload(&shared.counters, &shared.handoff, &shared.outbox, stats_cx);
                if let Some(bytes) = encode("stats", &stats) {
                    shared.outbox.set_stats(bytes);
                }
            }
        }
    }
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    Ok(())
}

/// Stops capture and the worker (which publishes the events of the frame in hand), then lets
/// the publisher flush, say `offline` and disconnect, bounded in time.
fn shut_down(
    shared: &Shared,
    worker: JoinHandle<()>,
    capture: JoinHandle<()>,
    flush: &Shutdown,
    publisher: tokio::task::JoinHandle<Result<()>>,
    runtime: &tokio::runtime::Runtime,
) {
    shared.stop.trigger();
    shared.handoff.close();
    if worker.join().is_err() {
        log::error!("inference worker panicked");
    }
    let c = &shared.counters;
    log::info!(
        "frames: {} captured, {} processed, {} corrupt, {} dropped",
        c.captured.load(std::sync::atomic::Ordering::Relaxed),
        c.processed.load(std::sync::atomic::Ordering::Relaxed),
        c.corrupt.load(std::sync::atomic::Ordering::Relaxed),
        shared.handoff.dropped()
    );
    flush.trigger();
    runtime.block_on(async {
        match tokio::time::timeout(Duration::from_secs(5), publisher).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => log::error!("publisher: {e:#}"),
            Ok(Err(e)) => log::error!("publisher task failed: {e}"),
            Err(_) => log::error!("publisher did not stop in time"),
        }
    });
    // The capture thread may be blocked in the driver; it notices `stop` after at most one frame.
    // Exiting does not wait for it.
    drop(capture);
}
