//! The daemon end to end: the real binary, real models, replayed frames, a real MQTT broker.

mod common;

use std::time::Duration;

use common::*;

const WAIT: Duration = Duration::from_secs(60);

fn sample_frames() -> std::path::PathBuf {
    root().join("samples/frames")
}

fn is(m: &Msg, leaf: &str) -> bool {
    m.topic == format!("emonet/test/{leaf}")
}

#[test]
fn events_state_availability_then_clean_sigterm() {
    eprintln!("broker: {}", Broker::kind());
    let broker = Broker::start();
    let sub = Subscriber::start(broker.port, "emonet/test/#");
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), broker.port, &sample_frames(), "");
    let mut daemon = Daemon::start(&cfg, &[]);

    sub.wait_for("availability online", WAIT, |m| {
        is(m, "availability") && m.payload == "online"
    });
    let appeared = sub.wait_for("an appeared event", WAIT, |m| {
        is(m, "events") && m.json()["type"] == "appeared"
    });
    let ev = appeared.json();
    // The documented schema.
    for key in [
        "schema",
        "type",
        "device_id",
        "ts",
        "seq",
        "track_id",
        "emotion",
        "confidence",
        "scores",
        "previous",
        "box",
    ] {
        assert!(ev.get(key).is_some(), "event lacks `{key}`: {ev}");
    }
    assert_eq!(ev["schema"], 1);
    assert_eq!(ev["device_id"], "test");
    assert!(ev["ts"].as_str().unwrap().ends_with('Z'));
    let scores = ev["scores"].as_object().unwrap();
    let total: f64 = scores.values().map(|v| v.as_f64().unwrap()).sum();
    assert!((total - 1.0).abs() < 0.01, "scores sum to {total}: {ev}");
    for k in ["x", "y", "w", "h"] {
        let v = ev["box"][k].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&v), "box.{k} = {v}");
    }
    // The sample face (the astronaut, smiling) must read as happy.
    assert_eq!(ev["emotion"], "happy", "{ev}");
    assert!(ev["confidence"].as_f64().unwrap() > 0.4, "{ev}");

    // The face leaves the replayed view: reported once, with how long it was happy.
    let left = sub.wait_for("a left event", WAIT, |m| {
        is(m, "events") && m.json()["type"] == "left"
    });
    let left = left.json();
    assert_eq!(left["track_id"], ev["track_id"]);
    assert!(left["previous"]["duration_s"].as_f64().unwrap() > 0.0);
    assert!(left["seq"].as_u64().unwrap() > ev["seq"].as_u64().unwrap());

    // Retained topics are delivered to a late subscriber.
    let late = Subscriber::start(broker.port, "emonet/test/#");
    late.wait_for("retained online", Duration::from_secs(5), |m| {
        is(m, "availability") && m.retain && m.payload == "online"
    });
    let state = late.wait_for("retained state", Duration::from_secs(5), |m| {
        is(m, "state") && m.retain
    });
    assert!(state.json()["faces"].is_array());
    let stats = sub.wait_for("stats", WAIT, |m| is(m, "stats"));
    let stats = stats.json();
    assert!(
        stats["frames"]["processed"].as_u64().unwrap() > 0,
        "{stats}"
    );
    assert_eq!(stats["camera"], "streaming");
    // the happy event above needed at least one classification; reuse is counted beside it
    assert!(
        stats["faces"]["classified"].as_u64().unwrap() >= 1,
        "{stats}"
    );
    assert!(stats["faces"]["reused"].is_u64(), "{stats}");
    assert!(stats["frames"]["detection_reused"].is_u64(), "{stats}");
    assert!(stats["frames"]["detection_followed"].is_u64(), "{stats}");

    daemon.signal("TERM");
    let status = daemon.wait(Duration::from_secs(15));
    assert!(status.success(), "exit {status:?}; log:\n{}", daemon.log());
    sub.wait_for("offline after SIGTERM", Duration::from_secs(5), |m| {
        is(m, "availability") && m.payload == "offline"
    });
}

/// `range = "far"` with `[detector.follow]` from a real config file: the daemon reads the sample
/// face as happy and its stats count the frames whose faces were followed.
#[test]
fn far_range_with_follow_reports_the_face_and_counts_followed_frames() {
    let broker = Broker::start();
    let sub = Subscriber::start(broker.port, "emonet/test/#");
    let dir = tempfile::tempdir().unwrap();
    let extra = "[detector.follow]\nevery = 3\n";
    let cfg = write_config(dir.path(), broker.port, &sample_frames(), extra);
    let mut daemon = Daemon::start(&cfg, &[("EMONET__DETECTOR__RANGE", "far")]);
    let appeared = sub.wait_for("an appeared event", WAIT, |m| {
        is(m, "events") && m.json()["type"] == "appeared"
    });
    assert_eq!(appeared.json()["emotion"], "happy", "{}", appeared.payload);
    let stats = sub.wait_for("stats with followed frames", WAIT, |m| {
        is(m, "stats") && m.json()["frames"]["detection_followed"].as_u64() > Some(0)
    });
    let stats = stats.json();
    let frames = &stats["frames"];
    assert!(
        frames["detection_followed"].as_u64() < frames["processed"].as_u64(),
        "the far detector ran too: {stats}"
    );
    assert_eq!(stats["models"]["detector"], "centerface.onnx", "{stats}");
    assert_eq!(
        stats["models"]["follower"], "blazeface-short.onnx",
        "{stats}"
    );
    daemon.signal("TERM");
    let status = daemon.wait(Duration::from_secs(15));
    assert!(status.success(), "exit {status:?}; log:\n{}", daemon.log());
}

#[test]
fn sigkill_makes_the_broker_deliver_the_last_will() {
    let broker = Broker::start();
    let sub = Subscriber::start(broker.port, "emonet/test/availability");
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), broker.port, &sample_frames(), "");
    let mut daemon = Daemon::start(&cfg, &[]);
    sub.wait_for("online", WAIT, |m| m.payload == "online");
    daemon.signal("KILL");
    daemon.wait(Duration::from_secs(5));
    sub.wait_for("offline (last will)", Duration::from_secs(10), |m| {
        m.payload == "offline"
    });
    // Retained too: a subscriber arriving later learns the device is gone.
    let late = Subscriber::start(broker.port, "emonet/test/availability");
    late.wait_for("retained offline", Duration::from_secs(5), |m| {
        m.payload == "offline" && m.retain
    });
}

#[test]
fn broker_restart_republishes_and_events_resume_with_bounded_queue() {
    let mut broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    // A tiny queue so the outage overflows it: the oldest events are dropped and counted.
    // (`extra` lands in the [mqtt] table; the replay rate comes through the environment.)
    let cfg = write_config(
        dir.path(),
        broker.port,
        &sample_frames(),
        "queue_capacity = 2",
    );
    let mut daemon = Daemon::start(&cfg, &[("EMONET__REPLAY__FPS", "20")]);
    {
        let sub = Subscriber::start(broker.port, "emonet/test/#");
        sub.wait_for("first event", WAIT, |m| is(m, "events"));
    }
    let rss_before = daemon.rss_kb();

    broker.stop();
    // Long enough for several appear/leave cycles at 20 fps to pile up in the outbox.
    std::thread::sleep(Duration::from_secs(4));
    assert!(
        daemon.child.try_wait().unwrap().is_none(),
        "daemon died during the outage:\n{}",
        daemon.log()
    );
    broker.restart();

    // Nothing retained survives a mosquitto restart without persistence, so these prove that
    // the daemon re-published them after reconnecting.
    let sub = Subscriber::start(broker.port, "emonet/test/#");
    sub.wait_for("availability re-published", WAIT, |m| {
        is(m, "availability") && m.payload == "online"
    });
    sub.wait_for("state re-published", WAIT, |m| is(m, "state"));
    let ev = sub.wait_for("events resume", WAIT, |m| is(m, "events"));
    assert!(ev.json()["seq"].as_u64().unwrap() > 1);
    // Stats computed after the reconnect: the outage overflowed the 2-event queue.
    let stats = sub.wait_for("stats after the reconnect", WAIT, |m| {
        is(m, "stats") && m.json()["mqtt"]["reconnects"].as_u64().unwrap_or(0) >= 1
    });
    let stats = stats.json();
    assert!(stats["mqtt"]["dropped"].as_u64().unwrap() > 0, "{stats}");
    assert!(stats["mqtt"]["queued"].as_u64().unwrap() <= 2, "{stats}");
    let rss_after = daemon.rss_kb();
    assert!(
        rss_after < rss_before + 32 * 1024,
        "RSS grew from {rss_before} kB to {rss_after} kB across the outage"
    );
    daemon.signal("TERM");
    assert!(daemon.wait(Duration::from_secs(15)).success());
}

#[test]
fn corrupt_frames_are_skipped_and_counted() {
    let broker = Broker::start();
    let sub = Subscriber::start(broker.port, "emonet/test/#");
    let dir = tempfile::tempdir().unwrap();
    let frames = dir.path().join("frames");
    std::fs::create_dir(&frames).unwrap();
    std::fs::copy(sample_frames().join("0000.jpg"), frames.join("a.jpg")).unwrap();
    std::fs::write(frames.join("b.jpg"), b"\xFF\xD8\xFF\xE0 truncated jpeg").unwrap();
    std::fs::copy(sample_frames().join("0001.jpg"), frames.join("c.jpg")).unwrap();
    let cfg = write_config(dir.path(), broker.port, &frames, "");
    let mut daemon = Daemon::start(&cfg, &[]);
    let stats = sub.wait_for("stats with a corrupt frame", WAIT, |m| {
        is(m, "stats") && m.json()["frames"]["corrupt"].as_u64().unwrap_or(0) >= 1
    });
    assert!(stats.json()["frames"]["processed"].as_u64().unwrap() >= 1);
    sub.wait_for("events despite the corrupt frame", WAIT, |m| {
        is(m, "events")
    });
    assert!(daemon.child.try_wait().unwrap().is_none());
    assert!(
        daemon.log().contains("b.jpg"),
        "the corrupt file is named in the log"
    );
    daemon.signal("TERM");
    assert!(daemon.wait(Duration::from_secs(15)).success());
}

#[test]
fn systemd_notifications_ready_watchdog_stopping() {
    use std::os::unix::net::UnixDatagram;
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let cfg = write_config(dir.path(), broker.port, &sample_frames(), "");
    let mut daemon = Daemon::start(
        &cfg,
        &[
            ("NOTIFY_SOCKET", sock_path.to_str().unwrap()),
            ("WATCHDOG_USEC", "400000"),
        ],
    );
    let mut seen = String::new();
    let mut buf = [0u8; 256];
    let mut signalled = false;
    while !seen.contains("STOPPING=1") {
        let n = sock
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("no notification ({e}); got {seen:?}"));
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        seen.push('\n');
        if !signalled && seen.contains("READY=1") && seen.contains("WATCHDOG=1") {
            daemon.signal("TERM");
            signalled = true;
        }
    }
    assert!(daemon.wait(Duration::from_secs(15)).success());
    let ready = seen.find("READY=1").unwrap();
    assert!(seen.find("WATCHDOG=1").unwrap() > ready, "{seen}");
}

#[test]
fn homeassistant_discovery_is_retained_and_resent_when_ha_restarts() {
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        broker.port,
        &sample_frames(),
        "homeassistant = true",
    );
    let mut daemon = Daemon::start(&cfg, &[]);
    let sub = Subscriber::start(broker.port, "homeassistant/sensor/#");
    let first = sub.wait_for("retained discovery", WAIT, |m| {
        m.topic.ends_with("/emotion/config")
    });
    assert_eq!(first.json()["state_topic"], "emonet/test/state");
    let before = sub.all().len();
    // Home Assistant announces its (re)start.
    let mut opts = rumqttc::MqttOptions::new("fake-ha", "127.0.0.1", broker.port);
    opts.set_keep_alive(Duration::from_secs(5));
    let (client, mut conn) = rumqttc::Client::new(opts, 10);
    client
        .publish(
            "homeassistant/status",
            rumqttc::QoS::AtLeastOnce,
            false,
            "online",
        )
        .unwrap();
    for ev in conn.iter().take(5) {
        if let Ok(rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_))) = ev {
            break;
        }
    }
    let t0 = std::time::Instant::now();
    while sub.all().len() < before + 2 {
        assert!(
            t0.elapsed() < WAIT,
            "discovery not re-sent after homeassistant/status online"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    daemon.signal("TERM");
    assert!(daemon.wait(Duration::from_secs(15)).success());
}
