//! The local web view, for real: the daemon binary with replayed sample frames and a real MQTT
//! broker; the page loaded in headless Chromium (Debian's `chromium`) and screenshotted;
//! `/metrics` parsed by a Prometheus text-format parser; nothing listening when `[http]` is
//! absent.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

const WAIT: Duration = Duration::from_secs(60);

/// A GET over a plain socket: (status code, body).
fn get(port: u16, path: &str, headers: &str) -> std::io::Result<(u16, Vec<u8>)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\n{headers}\r\n")?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("response has headers");
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status code");
    Ok((code, raw[split + 4..].to_vec()))
}

/// Polls `path` until it answers `want`; returns the body.
fn wait_for(port: u16, path: &str, headers: &str, want: u16) -> Vec<u8> {
    let t0 = Instant::now();
    loop {
        if let Ok((code, body)) = get(port, path, headers) {
            if code == want {
                return body;
            }
        }
        assert!(t0.elapsed() < WAIT, "{path} never answered {want}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Pixels of `img` within `tol` of the happy-face box colour.
fn box_pixels(img: &image::RgbImage, tol: i32) -> Vec<(u32, u32)> {
    let c = emonet::vision::annotate::label_color("happy");
    img.enumerate_pixels()
        .filter(|(_, _, p)| (0..3).all(|i| (p.0[i] as i32 - c[i] as i32).abs() <= tol))
        .map(|(x, y, _)| (x, y))
        .collect()
}

/// The listening TCP sockets (IPv4 and IPv6) owned by process `pid`, as "local address" hex.
fn listening_sockets(pid: u32) -> Vec<String> {
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|l| {
            let l = l.to_string_lossy().to_string();
            Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
        })
        .collect();
    let mut out = Vec::new();
    for table in ["tcp", "tcp6"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            // f[1] local address, f[3] state (0A = LISTEN), f[9] inode
            if f.len() > 9 && f[3] == "0A" && inodes.iter().any(|i| i == f[9]) {
                out.push(format!("{table} {}", f[1]));
            }
        }
    }
    out
}

fn start_daemon(broker: &Broker, dir: &Path, extra: &str) -> Daemon {
    start_daemon_on(broker, dir, &root().join("samples/frames"), extra)
}

fn start_daemon_on(broker: &Broker, dir: &Path, frames: &Path, extra: &str) -> Daemon {
    let cfg = write_config(dir, broker.port, frames, extra);
    Daemon::start(&cfg, &[])
}

/// A still scene: the one sample frame whose face reads `happy`, replayed in a loop, so that
/// whichever frame the page shows has the box in the happy colour.
fn happy_scene(dir: &Path) -> PathBuf {
    let frames = dir.join("frames");
    std::fs::create_dir_all(&frames).unwrap();
    let sample = root().join("samples/frames/0001");
    let sidecar = std::fs::read_to_string(sample.with_extension("json")).unwrap();
    assert!(sidecar.contains(r#""expect": "happy""#), "{sidecar}");
    std::fs::copy(sample.with_extension("jpg"), frames.join("0001.jpg")).unwrap();
    frames
}

#[test]
fn nothing_listens_when_http_is_absent() {
    let broker = Broker::start();
    let sub = Subscriber::start(broker.port, "emonet/test/#");
    let dir = tempfile::tempdir().unwrap();
    let daemon = start_daemon(&broker, dir.path(), "");
    // running and publishing: frames have gone through the whole pipeline
    sub.wait_for("stats with processed frames", WAIT, |m| {
        m.topic == "emonet/test/stats" && m.json()["frames"]["processed"].as_u64() > Some(0)
    });
    let listening = listening_sockets(daemon.child.id());
    assert!(
        listening.is_empty(),
        "the daemon listens on {listening:?} without [http]; log:\n{}",
        daemon.log()
    );
    // the same check sees the socket when the view is on (so it can fail)
    let port = free_port();
    let dir2 = tempfile::tempdir().unwrap();
    let on = start_daemon(
        &broker,
        dir2.path(),
        // (its own MQTT client id, so that the two daemons do not take turns on the broker)
        &format!(
            "client_id = \"emonet-test-http\"\n[http]\nenabled = true\nlisten = \"127.0.0.1:{port}\"\n"
        ),
    );
    wait_for(port, "/healthz", "", 200);
    assert_eq!(listening_sockets(on.child.id()).len(), 1, "{}", on.log());
}

#[test]
fn token_required_beyond_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start();
    let port = free_port();
    let cfg = write_config(
        dir.path(),
        broker.port,
        &root().join("samples/frames"),
        &format!("[http]\nenabled = true\nlisten = \"0.0.0.0:{port}\"\n"),
    );
    let (code, err) = emonet_check(&cfg, &[]);
    assert_ne!(code, Some(0), "accepted without a token");
    assert!(err.contains("http.token"), "{err}");

    let cfg = write_config(
        dir.path(),
        broker.port,
        &root().join("samples/frames"),
        &format!("[http]\nenabled = true\nlisten = \"0.0.0.0:{port}\"\ntoken = \"s3cret-token\"\n"),
    );
    let _daemon = Daemon::start(&cfg, &[]);
    wait_for(port, "/healthz", "", 200); // health needs no token
    assert_eq!(get(port, "/metrics", "").unwrap().0, 401);
    assert_eq!(get(port, "/state.json?token=wrong", "").unwrap().0, 401);
    let bearer = "Authorization: Bearer s3cret-token\r\n";
    assert_eq!(get(port, "/metrics", bearer).unwrap().0, 200);
    assert_eq!(get(port, "/?token=s3cret-token", "").unwrap().0, 200);
}

#[test]
fn metrics_parse_and_frame_shows_the_face_box() {
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let daemon = start_daemon_on(
        &broker,
        dir.path(),
        &happy_scene(dir.path()),
        &format!("[http]\nenabled = true\nlisten = \"127.0.0.1:{port}\"\nmax_fps = 10\n"),
    );
    // the first request makes the daemon start drawing frames
    let jpeg = wait_for(port, "/frame.jpg", "", 200);
    let img = image::load_from_memory(&jpeg).unwrap().to_rgb8();
    assert_eq!((img.width(), img.height()), (640, 480));

    let text = String::from_utf8(wait_for(port, "/metrics", "", 200)).unwrap();
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("Prometheus text format");
    let value = |name: &str| -> Vec<&prometheus_parse::Value> {
        scrape
            .samples
            .iter()
            .filter(|s| s.metric == name)
            .map(|s| &s.value)
            .collect()
    };
    for name in [
        "emonet_frames_captured_total",
        "emonet_frames_processed_total",
        "emonet_frames_dropped_total",
        "emonet_frames_detection_reused_total",
        "emonet_frames_detection_followed_total",
        "emonet_mqtt_connected",
        "emonet_mqtt_reconnects_total",
        "emonet_faces_in_view",
        "emonet_stage_latency_seconds",
    ] {
        assert!(!value(name).is_empty(), "{name} missing from:\n{text}");
    }
    match value("emonet_frames_processed_total")[0] {
        prometheus_parse::Value::Counter(v) => assert!(*v > 0.0, "{text}"),
        v => panic!("frames processed is {v:?}"),
    }
    let detect = scrape
        .samples
        .iter()
        .find(|s| {
            s.metric == "emonet_stage_latency_seconds" && s.labels.get("stage") == Some("detect")
        })
        .unwrap_or_else(|| panic!("no detect latency histogram:\n{text}"));
    match &detect.value {
        prometheus_parse::Value::Histogram(buckets) => {
            assert!(buckets.iter().any(|b| b.count > 0.0), "{text}")
        }
        v => panic!("detect latency is {v:?}"),
    }
    assert!(text.contains("emonet_mqtt_connected 1\n"), "{text}");
    let state: serde_json::Value =
        serde_json::from_slice(&wait_for(port, "/state.json", "", 200)).unwrap();
    assert!(
        state["stats"]["frames"]["processed"].as_u64() > Some(0),
        "{state}"
    );

    // a frame with the sample face: its box is drawn in the happy colour
    let t0 = Instant::now();
    loop {
        let (_, jpeg) = get(port, "/frame.jpg", "").unwrap();
        let img = image::load_from_memory(&jpeg).unwrap().to_rgb8();
        if box_pixels(&img, 40).len() > 200 {
            break;
        }
        assert!(
            t0.elapsed() < WAIT,
            "no annotated face in /frame.jpg; log:\n{}",
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    chromium_screenshot(port, dir.path());
}

/// Loads the page in headless Chromium and checks the screenshot shows the face box.
fn chromium_screenshot(port: u16, dir: &Path) {
    let Some(chromium) = which("chromium") else {
        eprintln!("SKIPPED chromium screenshot: Debian's `chromium` is not installed (.ci/run installs it)");
        return;
    };
    let shot = dir.join("page.png");
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--window-size=800,900",
            // time for the page's script to fetch a few frames before the picture is taken
            "--virtual-time-budget=4000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--screenshot={}", shot.display()))
        .arg(format!("http://127.0.0.1:{port}/"))
        .output()
        .expect("run chromium");
    assert!(
        shot.is_file(),
        "chromium wrote no screenshot: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let img = image::open(&shot).unwrap().to_rgb8();
    let px = box_pixels(&img, 40);
    assert!(
        px.len() > 200,
        "the screenshot shows no face box ({} box-coloured pixels); saved at {}",
        px.len(),
        shot.display()
    );
    // the box is inside the picture's area (the img element at the top left of the page)
    let (x_max, y_max) = px.iter().fold((0, 0), |a, p| (a.0.max(p.0), a.1.max(p.1)));
    assert!(
        x_max < 700 && y_max < 600,
        "box pixels at up to ({x_max}, {y_max})"
    );
    if let Ok(keep) = std::env::var("EMONET_KEEP_SCREENSHOT") {
        std::fs::copy(&shot, keep).unwrap();
    }
}
