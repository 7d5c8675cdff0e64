//! `emonet run`: wires the stages together and keeps them alive.
//!
//! ```text
//! capture thread ──LatestFrame──▶ inference worker (detect → classify → track) ──Outbox──▶ MQTT task
//! ```
//! Capture blocks in the kernel, inference is CPU-bound, publishing is async I/O: each gets the
//! execution model that suits it. Shutdown is one flag plus a watch channel seen by all three;
//! the worker finishes the frame in hand, the publisher flushes, says `offline` and disconnects.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};
use tokio::sync::watch;

use crate::camera::{FrameSource, ReplaySource, SourceError, V4l2Source};
use crate::config::{Settings, SourceKind};
use crate::event::{
    round3, EventPayload, FaceCounts, FrameCounts, LatencySummary, StatePayload, StatsPayload,
};
use crate::handoff::{LatestFrame, Take};
use crate::mqtt::{Outbox, Topics};
use crate::pipeline::Pipeline;
use crate::track::Tracker;

/// Counters shared by the stages, read by the stats task.
#[derive(Default)]
pub struct Counters {
    pub captured: AtomicU64,
    pub processed: AtomicU64,
    pub corrupt: AtomicU64,
    pub camera: Mutex<String>,
    pub faces_in_view: AtomicU64,
    pub classified: AtomicU64,
    pub reused: AtomicU64,
    /// Per-stage latencies (ms) since the last stats message.
    latencies: Mutex<BTreeMap<&'static str, Vec<f64>>>,
    /// Unix millis of the worker's last sign of life (for the systemd watchdog).
    heartbeat_ms: AtomicU64,
}

impl Counters {
    fn set_camera(&self, status: &str) {
        *self.camera.lock().expect("counters lock") = status.to_string();
    }

    fn record(&self, stage: &'static str, d: Duration) {
        let mut l = self.latencies.lock().expect("counters lock");
        let v = l.entry(stage).or_default();
        // Bounded: a stats interval at 30 fps is ~900 samples; keep memory flat regardless.
        if v.len() < 10_000 {
            v.push(d.as_secs_f64() * 1000.0);
        }
    }

    fn beat(&self) {
        self.heartbeat_ms
            .store(unix_ms(SystemTime::now()), Ordering::Relaxed);
    }

    fn take_latency_summary(&self) -> BTreeMap<String, LatencySummary> {
        let mut l = self.latencies.lock().expect("counters lock");
        let out = l
            .iter_mut()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| {
                v.sort_by(|a, b| a.total_cmp(b));
                let q = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
                let summary = LatencySummary {
                    p50: round3(q(0.5)),
                    p99: round3(q(0.99)),
                    max: round3(*v.last().expect("non-empty")),
                };
                (k.to_string(), summary)
            })
            .collect();
        l.values_mut().for_each(Vec::clear);
        out
    }
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Opens the configured source. At start-up any failure is fatal (a wrong device path should
/// stop the service with a clear message); later failures are retried by the capture loop.
pub fn open_source(settings: &Settings) -> Result<Box<dyn FrameSource>> {
    Ok(match settings.camera.source {
        SourceKind::V4l2 => Box::new(
            V4l2Source::open(&settings.camera)
                .map_err(|e| anyhow::anyhow!("{e}"))
                .context(
                    "camera.source = \"v4l2\" (check camera.device, permissions: the video group)",
                )?,
        ),
        SourceKind::Replay => Box::new(
            ReplaySource::open(
                &settings.replay.path,
                settings.replay.fps,
                settings.replay.looped,
            )
            .map_err(|e| anyhow::anyhow!("{e}"))?,
        ),
    })
}

/// Runs the daemon until SIGTERM/SIGINT, or until a non-looping replay runs out.
/// With `echo`, it also subscribes to its own topics and prints what the broker delivers
/// (the demo's "see it work" mode).
pub fn run(settings: Settings, echo: bool) -> Result<()> {
    let device_id = settings.device_id();
    let topics = Topics::new(&settings.mqtt.topic_prefix, &device_id);

    if settings.broker.enabled {
        crate::broker::start_embedded(&settings.broker.listen)?;
    }
    let pipeline = Pipeline::load(&settings)?;
    let source = open_source(&settings)?;
    log::info!(
        "emonet {} device {device_id}: source {}, classifier {}, publishing to {}:{} under {}/{device_id}/",
        env!("CARGO_PKG_VERSION"),
        source.describe(),
        pipeline.classifier.meta().name,
        settings.mqtt.host,
        settings.mqtt.port,
        settings.mqtt.topic_prefix
    );
    crate::cpu::log_features();
    let source_desc = source.describe();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .thread_name("emonet-io")
        .build()
        .context("cannot start the async runtime")?;

    let counters = Arc::new(Counters::default());
    counters.beat();
    let handoff = Arc::new(LatestFrame::new());
    let outbox = Outbox::new(settings.mqtt.queue_capacity);
    let stop = Arc::new(AtomicBool::new(false));
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let started = Instant::now();

    // The initial (empty) state, so `state` is retained from the first connection on.
    outbox.set_state(serde_json::to_vec(&StatePayload::from_tracks(
        &[],
        &device_id,
        SystemTime::now(),
    ))?);

    let publisher = runtime.spawn(crate::mqtt::run_publisher(
        settings.mqtt.clone(),
        topics.clone(),
        device_id.clone(),
        outbox.clone(),
        shutdown_rx.clone(),
    ));

    if echo {
        let (host, port) = (settings.mqtt.host.clone(), settings.mqtt.port);
        let filter = format!("{}/{device_id}/#", settings.mqtt.topic_prefix);
        runtime.spawn(async move {
            if let Err(e) = crate::mqtt::watch(&host, port, &filter, false, None).await {
                log::warn!("--watch: {e:#}");
            }
        });
    }

    let capture = {
        let (handoff, counters, stop) = (handoff.clone(), counters.clone(), stop.clone());
        let cam = settings.camera.clone();
        std::thread::Builder::new()
            .name("emonet-capture".into())
            .spawn(move || capture_loop(source, &handoff, &counters, &stop, &cam))?
    };

    let worker_done = Arc::new(tokio::sync::Notify::new());
    let worker = {
        let (handoff, counters, stop) = (handoff.clone(), counters.clone(), stop.clone());
        let (outbox, device_id, done) = (outbox.clone(), device_id.clone(), worker_done.clone());
        let tracker = Tracker::new(settings.tracker.clone());
        std::thread::Builder::new()
            .name("emonet-infer".into())
            .spawn(move || {
                inference_loop(
                    &pipeline, tracker, &handoff, &counters, &stop, &outbox, &device_id,
                );
                done.notify_one();
            })?
    };

    let models: BTreeMap<String, String> = [
        ("detector".to_string(), file_name(&settings.detector.model)),
        (
            "classifier".to_string(),
            file_name(&settings.classifier.model),
        ),
    ]
    .into_iter()
    .collect();

    runtime.block_on(async {
        // Handlers first: a SIGTERM right after READY must already mean a clean stop.
        let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("cannot install the SIGTERM handler")?;
        let mut sigint = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
            .context("cannot install the SIGINT handler")?;
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
        let watchdog = sd_notify::watchdog_enabled();
        let mut watchdog_tick = tokio::time::interval(
            watchdog.map(|d| d / 2).unwrap_or(Duration::from_secs(3600)),
        );
        let mut stats_tick =
            tokio::time::interval(Duration::from_secs(settings.mqtt.stats_interval_secs.max(1)));
        stats_tick.tick().await;
        loop {
            tokio::select! {
                _ = sigterm.recv() => { log::info!("SIGTERM: shutting down"); break; }
                _ = sigint.recv() => { log::info!("SIGINT: shutting down"); break; }
                _ = worker_done.notified() => { log::info!("no more frames: shutting down"); break; }
                _ = watchdog_tick.tick(), if watchdog.is_some() => {
                    // Only pet the watchdog while the worker is alive: a wedged model run
                    // should get the service restarted.
                    let age = unix_ms(SystemTime::now()).saturating_sub(counters.heartbeat_ms.load(Ordering::Relaxed));
                    if Duration::from_millis(age) < watchdog.unwrap_or_default() {
                        let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
                    } else {
                        log::error!("inference worker silent for {age} ms: not petting the watchdog");
                    }
                }
                _ = stats_tick.tick() => {
                    let stats = stats_payload(&counters, &handoff, &outbox, &device_id, started, &models, &source_desc);
                    outbox.set_stats(serde_json::to_vec(&stats).unwrap_or_default());
                }
            }
        }
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
        anyhow::Ok(())
    })?;

    stop.store(true, Ordering::SeqCst);
    handoff.close();
    // The worker finishes the frame in hand and publishes its events before we flush.
    if worker.join().is_err() {
        log::error!("inference worker panicked");
    }
    let _ = shutdown_tx.send(true);
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
    runtime.shutdown_timeout(Duration::from_millis(200));
    log::info!("stopped");
    Ok(())
}

fn file_name(p: &std::path::Path) -> String {
    p.file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn capture_loop(
    mut source: Box<dyn FrameSource>,
    handoff: &LatestFrame,
    counters: &Counters,
    stop: &AtomicBool,
    cam: &crate::config::CameraSettings,
) {
    counters.set_camera("streaming");
    let initial = Duration::from_millis(cam.reconnect_initial_ms.max(10));
    let max = Duration::from_millis(cam.reconnect_max_ms.max(cam.reconnect_initial_ms));
    while !stop.load(Ordering::Relaxed) {
        match source.next_frame() {
            Ok(Some(frame)) => {
                counters.captured.fetch_add(1, Ordering::Relaxed);
                handoff.put(frame);
            }
            Ok(None) => {
                counters.set_camera("ended");
                break;
            }
            Err(SourceError::Corrupt(msg)) => {
                counters.corrupt.fetch_add(1, Ordering::Relaxed);
                log::warn!("skipping corrupt frame: {msg}");
            }
            Err(SourceError::Unavailable(msg)) | Err(SourceError::Fatal(msg)) => {
                log::warn!("{msg}; reopening {}", source.describe());
                counters.set_camera("reconnecting");
                let mut backoff = initial;
                loop {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    std::thread::sleep(backoff);
                    match source.reopen() {
                        Ok(()) => {
                            log::info!("camera back: {}", source.describe());
                            counters.set_camera("streaming");
                            break;
                        }
                        Err(e) => {
                            log::debug!("reopen failed: {e}; next try in {backoff:?}");
                            backoff = (backoff * 2).min(max);
                        }
                    }
                }
            }
        }
    }
    handoff.close();
}

fn inference_loop(
    pipeline: &Pipeline,
    mut tracker: Tracker,
    handoff: &LatestFrame,
    counters: &Counters,
    stop: &AtomicBool,
    outbox: &Outbox,
    device_id: &str,
) {
    let mut seq = 0u64;
    let mut reuse = pipeline.new_stream();
    loop {
        counters.beat();
        let frame = match handoff.take(Duration::from_millis(500)) {
            Take::Frame(f) => f,
            Take::Timeout if stop.load(Ordering::Relaxed) => return,
            Take::Timeout => continue,
            Take::Closed => return,
        };
        let t0 = Instant::now();
        let faces = match pipeline.process(&frame.image, &mut reuse) {
            Ok((faces, times)) => {
                counters.record("detect", times.detect);
                counters.record("classify", times.classify);
                counters
                    .classified
                    .fetch_add(times.faces.classified as u64, Ordering::Relaxed);
                counters
                    .reused
                    .fetch_add(times.faces.reused as u64, Ordering::Relaxed);
                faces
            }
            Err(e) => {
                // A model error on one frame (odd size, NaNs) must not end the service.
                log::warn!("frame {} not processed: {e:#}", frame.seq);
                counters.corrupt.fetch_add(1, Ordering::Relaxed);
                continue;
            }
        };
        let t1 = Instant::now();
        let events = tracker.update(&faces, frame.captured);
        counters
            .faces_in_view
            .store(tracker.faces_in_view() as u64, Ordering::Relaxed);
        if !events.is_empty() {
            for ev in &events {
                seq += 1;
                let payload = EventPayload::from_track_event(ev, device_id, seq);
                log::info!(
                    "face {} {} {} ({:.0}%)",
                    payload.track_id,
                    payload.kind,
                    payload.emotion,
                    payload.confidence * 100.0
                );
                match serde_json::to_vec(&payload) {
                    Ok(bytes) => outbox.push_event(bytes),
                    Err(e) => log::error!("cannot serialise event: {e}"),
                }
            }
            let state = StatePayload::from_tracks(&tracker.snapshot(), device_id, frame.captured);
            if let Ok(bytes) = serde_json::to_vec(&state) {
                outbox.set_state(bytes);
            }
        }
        counters.record("track_publish", t1.elapsed());
        counters.record("frame", t0.elapsed());
        counters.processed.fetch_add(1, Ordering::Relaxed);
        if stop.load(Ordering::Relaxed) {
            return;
        }
    }
}

fn stats_payload(
    counters: &Counters,
    handoff: &LatestFrame,
    outbox: &Outbox,
    device_id: &str,
    started: Instant,
    models: &BTreeMap<String, String>,
    source: &str,
) -> StatsPayload {
    StatsPayload {
        schema: crate::event::SCHEMA_VERSION,
        device_id: device_id.into(),
        ts: crate::event::timestamp(SystemTime::now()),
        uptime_s: round3(started.elapsed().as_secs_f64()),
        camera: counters.camera.lock().expect("counters lock").clone(),
        source: source.into(),
        frames: FrameCounts {
            captured: counters.captured.load(Ordering::Relaxed),
            processed: counters.processed.load(Ordering::Relaxed),
            dropped: handoff.dropped(),
            corrupt: counters.corrupt.load(Ordering::Relaxed),
        },
        faces: FaceCounts {
            classified: counters.classified.load(Ordering::Relaxed),
            reused: counters.reused.load(Ordering::Relaxed),
        },
        latency_ms: counters.take_latency_summary(),
        mqtt: outbox.counts(),
        faces_in_view: counters.faces_in_view.load(Ordering::Relaxed) as usize,
        models: models.clone(),
    }
}
