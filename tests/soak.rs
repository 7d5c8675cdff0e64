//! Soak: the daemon replays the sample frames as fast as it can for `EMONET_SOAK_FRAMES` frames
//! (default 3,000, the CI length; 1,000,000 is about 9 h of a 30 fps camera), with its resident
//! memory and open file descriptors sampled every second. RSS must stay within 2 MiB from 10 %
//! of the run to its end and the descriptors must not grow. `EMONET_SOAK_CSV=path` writes the
//! samples (seconds, frames, RSS kB, fds). Full run, as the README reports it:
//! `EMONET_SOAK_FRAMES=1000000 cargo test --release --test soak -- --nocapture`.

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::*;

#[test]
fn soak_memory_and_descriptors_stay_flat() {
    let frames: u64 = std::env::var("EMONET_SOAK_FRAMES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000);
    let broker = Broker::start();
    let sub = Subscriber::start(broker.port, "emonet/test/stats");
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), broker.port, &root().join("samples/frames"), "");
    let daemon = Daemon::start(&cfg, &[("EMONET__REPLAY__FPS", "0")]);
    let pid = daemon.child.id();
    let mut csv = std::env::var_os("EMONET_SOAK_CSV")
        .map(|p| std::fs::File::create(p).expect("EMONET_SOAK_CSV"));
    let t0 = Instant::now();
    // (seconds, frames captured, RSS kB, fds)
    let mut samples: Vec<(f64, u64, u64, usize)> = Vec::new();
    loop {
        std::thread::sleep(Duration::from_secs(1));
        let done = sub
            .all()
            .last()
            .and_then(|m| m.json()["frames"]["captured"].as_u64())
            .unwrap_or(0);
        let (Some(rss), Some(fds)) = (rss_kb(pid), fd_count(pid)) else {
            panic!("the daemon died after {done} frames:\n{}", daemon.log());
        };
        let s = (t0.elapsed().as_secs_f64(), done, rss, fds);
        if let Some(f) = csv.as_mut() {
            writeln!(f, "{:.0},{},{},{}", s.0, s.1, s.2, s.3).unwrap();
        }
        samples.push(s);
        if done >= frames {
            break;
        }
    }
    let from = samples.iter().position(|s| s.1 >= frames / 10).unwrap_or(0);
    let at10 = samples[from];
    let peak = samples[from..].iter().map(|s| s.2).max().unwrap();
    let fds_max = samples[from..].iter().map(|s| s.3).max().unwrap();
    let last = samples.last().unwrap();
    eprintln!(
        "soak: {} frames in {:.0} s ({:.1} fps); RSS at 10 % {} kB, peak from 10 % on {} kB, \
         end {} kB; fds at 10 % {}, max {}",
        last.1,
        last.0,
        last.1 as f64 / last.0,
        at10.2,
        peak,
        last.2,
        at10.3,
        fds_max
    );
    assert!(
        peak <= at10.2 + 2048,
        "RSS grew from {} kB (10 %) to {peak} kB",
        at10.2
    );
    // A sample may catch a replayed image and its metadata file open.
    assert!(
        fds_max <= at10.3 + 2,
        "open fds grew from {} to {fds_max}",
        at10.3
    );
}
