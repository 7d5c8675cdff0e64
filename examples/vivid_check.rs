//! Camera unplug test against a real V4L2 driver: run inside the vivid VM by `.ci/vivid`.
//!
//! Opens the camera with emonet's V4L2 source, runs the daemon's own capture loop (the code
//! `emonet run` uses), and checks: frames are captured and decoded → the device is unplugged
//! (the vivid platform device is unbound from its driver) → the loop reports the loss and retries
//! with backoff while the device is gone → the device is plugged back (bound again) → frames flow
//! again, all without restarting anything. Prints `VIVID-CHECK PASS` or `VIVID-CHECK FAIL: why`.
//!
//! Usage: `vivid_check DEVICE DRIVER_SYSFS_DIR PLATFORM_DEVICE` e.g.
//! `vivid_check /dev/video0 /sys/bus/platform/drivers/vivid vivid.0`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use emonet::camera::{FrameSource, V4l2Source};
use emonet::config::{CameraSettings, PixelFormat, SourceKind};
use emonet::daemon::capture::capture_loop;
use emonet::daemon::stats::Counters;
use emonet::handoff::{LatestFrame, Take};
use emonet::shutdown::Shutdown;

/// Frames to capture and decode before the unplug and again after the replug.
const FRAMES: usize = 10;
/// How long the device stays unplugged: several reopen attempts must fail in between.
const UNPLUGGED: Duration = Duration::from_millis(2500);
const WAIT: Duration = Duration::from_secs(60);

fn main() -> ExitCode {
    let _ = emonet::logging::init(log::LevelFilter::Debug);
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [device, driver, platform_dev] = args.as_slice() else {
        eprintln!("usage: vivid_check DEVICE DRIVER_SYSFS_DIR PLATFORM_DEVICE");
        return ExitCode::from(2);
    };
    match check(Path::new(device), Path::new(driver), platform_dev) {
        Ok(()) => {
            println!("VIVID-CHECK PASS");
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("VIVID-CHECK FAIL: {e}");
            ExitCode::FAILURE
        }
    }
}

fn check(device: &Path, driver: &Path, platform_dev: &str) -> Result<(), String> {
    let cam = CameraSettings {
        source: SourceKind::V4l2,
        device: PathBuf::from(device),
        width: 640,
        height: 480,
        fps: 30,
        pixel_format: PixelFormat::Auto,
        reconnect_initial_ms: 100,
        reconnect_max_ms: 1000,
    };
    let source = V4l2Source::open(&cam).map_err(|e| format!("open: {e}"))?;
    step(&format!("opened {}", source.describe()));
    let handoff = LatestFrame::new();
    let counters = Counters::default();
    let stop = Shutdown::new();
    std::thread::scope(|s| {
        s.spawn(|| capture_loop(Box::new(source), &handoff, &counters, &stop, &cam));
        let result = unplug_cycle(&handoff, &counters, driver, platform_dev);
        stop.trigger();
        result
    })
}

fn unplug_cycle(
    handoff: &LatestFrame,
    counters: &Counters,
    driver: &Path,
    platform_dev: &str,
) -> Result<(), String> {
    take_frames(handoff, "before unplug")?;
    sysfs_write(&driver.join("unbind"), platform_dev)?;
    step(&format!(
        "unplugged: {platform_dev} unbound from {}",
        driver.display()
    ));
    wait_for(
        || camera_state(counters) == "reconnecting",
        "the loss to be reported",
    )?;
    step("capture loop reports the camera lost and is reopening");
    std::thread::sleep(UNPLUGGED);
    if camera_state(counters) != "reconnecting" {
        return Err(format!(
            "camera state {:?} while the device is gone",
            camera_state(counters)
        ));
    }
    let before = counters.captured.load(Ordering::Relaxed);
    sysfs_write(&driver.join("bind"), platform_dev)?;
    step(&format!("replugged: {platform_dev} bound again"));
    wait_for(
        || camera_state(counters) == "streaming",
        "the camera to be reopened",
    )?;
    step("capture loop reopened the camera");
    take_frames(handoff, "after replug")?;
    let after = counters.captured.load(Ordering::Relaxed);
    if after <= before {
        return Err(format!(
            "no frame captured after the replug ({before} → {after})"
        ));
    }
    step(&format!(
        "captured {before} frames before the replug, {after} in all"
    ));
    Ok(())
}

/// Takes [`FRAMES`] decoded frames and checks they are real pictures: the negotiated size and
/// more than one colour (vivid draws a test pattern).
fn take_frames(handoff: &LatestFrame, when: &str) -> Result<(), String> {
    let t0 = Instant::now();
    let mut got = 0;
    while got < FRAMES {
        if t0.elapsed() > WAIT {
            return Err(format!("{when}: only {got} frames in {WAIT:?}"));
        }
        match handoff.take(Duration::from_secs(1)) {
            Take::Frame(f) => {
                let (w, h) = (f.width(), f.height());
                if (w, h) != (640, 480) {
                    return Err(format!("{when}: frame {} is {w}x{h}, not 640x480", f.seq));
                }
                let first = f.image.get_pixel(0, 0);
                let colours = f.image.pixels().filter(|p| *p != first).count();
                if colours == 0 {
                    return Err(format!("{when}: frame {} is one flat colour", f.seq));
                }
                got += 1;
            }
            Take::Timeout => {}
            Take::Closed => return Err(format!("{when}: capture loop ended")),
        }
    }
    step(&format!("{when}: {FRAMES} frames of 640x480 decoded"));
    Ok(())
}

fn camera_state(counters: &Counters) -> String {
    counters
        .camera
        .lock()
        .map(|s| s.clone())
        .unwrap_or_default()
}

fn wait_for(mut cond: impl FnMut() -> bool, what: &str) -> Result<(), String> {
    let t0 = Instant::now();
    while !cond() {
        if t0.elapsed() > WAIT {
            return Err(format!("waited {WAIT:?} for {what}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

fn sysfs_write(path: &Path, value: &str) -> Result<(), String> {
    std::fs::write(path, value).map_err(|e| format!("write {value} to {}: {e}", path.display()))
}

fn step(msg: &str) {
    println!("vivid_check: {msg}");
}
