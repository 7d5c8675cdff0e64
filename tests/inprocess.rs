//! The daemon run in-process (`emonet::daemon::run`), as an application embedding emonet would
//! run it, and stopped through its `Shutdown` handle instead of a signal: `run` returns `Ok`
//! after the clean-stop sequence (every face `left`, an empty retained state, `offline`).

mod common;

use std::time::{Duration, Instant};

use common::*;
use emonet::config::Settings;
use emonet::daemon::{run, Shutdown};

const WAIT: Duration = Duration::from_secs(60);

#[test]
fn shutdown_handle_stops_an_in_process_daemon_cleanly() {
    let broker = Broker::start();
    let sub = Subscriber::start(broker.port, "emonet/test/#");
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), broker.port, &root().join("samples/frames"), "");
    let settings = Settings::load(&cfg).unwrap();
    let shutdown = Shutdown::new();
    let daemon = {
        let shutdown = shutdown.clone();
        std::thread::spawn(move || run(settings, shutdown))
    };
    let appeared = sub.wait_for("an appeared event", WAIT, |m| {
        m.topic == "emonet/test/events" && m.json()["type"] == "appeared"
    });
    let track = appeared.json()["track_id"].clone();

    shutdown.trigger();
    let t0 = Instant::now();
    while !daemon.is_finished() {
        assert!(
            t0.elapsed() < Duration::from_secs(15),
            "run did not return after the shutdown trigger"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    daemon
        .join()
        .expect("run panicked")
        .expect("run returns Ok on a triggered shutdown");

    let offline = sub.wait_for("availability offline", WAIT, |m| {
        m.topic == "emonet/test/availability" && m.payload == "offline"
    });
    let all = sub.all();
    let before_offline = all.iter().filter(|m| m.at <= offline.at);
    let mut left = false;
    let mut emptied = false;
    for m in before_offline {
        left |= m.topic == "emonet/test/events"
            && m.json()["type"] == "left"
            && m.json()["track_id"] == track;
        emptied |= m.topic == "emonet/test/state" && m.json()["faces"] == serde_json::json!([]);
    }
    assert!(left, "no `left` for track {track} before `offline`");
    assert!(emptied, "no empty state before `offline`");
}
