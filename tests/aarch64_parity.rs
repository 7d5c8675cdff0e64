//! In-process tests for the emulated aarch64 run (`.ci/aarch64`, qemu-user), where tests that
//! spawn mosquitto or the `emonet` binary cannot run (qemu-user hangs on child processes). They
//! run natively too, so x86 and aarch64 check the same things:
//! - the MQTT path: the publisher delivers availability, the retained state and an event through
//!   the embedded broker (rumqttd), and says `offline` on shutdown;
//! - the CPU report the daemon logs at start matches the architecture it runs on;
//! - each shipped classifier's scores on fixed whole-pixel crops of the parity images, printed as
//!   `CROP <model> <image> <scores>` lines that `.ci/aarch64` compares between x86 and aarch64 (bar:
//!   max difference <= 1e-3). Fixed crops isolate the classifier's arithmetic from the detector's
//!   (whose boxes differ by ~1e-7 between architectures; `face_crop_rect` snaps the crop to whole
//!   pixels so that end to end this does not reach the classifier either).
//!
//! The end-to-end comparison (`emonet classify` / `emonet eval`, top-1 agreement) needs both
//! binaries and lives in `.ci/aarch64`.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{free_port, model, root};
use emonet::config::MqttSettings;
use emonet::daemon::Shutdown;
use emonet::mqtt::{run_publisher, Outbox, Topics, OFFLINE, ONLINE};
use emonet::vision::EmotionClassifier;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

/// Generous: under qemu everything is 10–50× slower.
const WAIT: Duration = Duration::from_secs(60);

#[test]
fn mqtt_publisher_round_trip_through_the_embedded_broker() {
    let port = free_port();
    emonet::broker::start_embedded(&format!("127.0.0.1:{port}")).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let (sub, mut sub_loop) =
            AsyncClient::new(MqttOptions::new("parity-watch", "127.0.0.1", port), 64);
        sub.subscribe("emonet/board/#", QoS::AtLeastOnce)
            .await
            .unwrap();
        loop {
            match tokio::time::timeout(WAIT, sub_loop.poll()).await {
                Ok(Ok(Event::Incoming(Packet::SubAck(_)))) => break,
                Ok(Ok(_)) => {}
                other => panic!("subscriber did not get its SubAck: {other:?}"),
            }
        }

        let cfg = MqttSettings {
            host: "127.0.0.1".into(),
            port,
            ..MqttSettings::default()
        };
        let topics = Topics::new(&cfg.topic_prefix, "board");
        let outbox = Outbox::new(16);
        outbox.set_state(br#"{"faces":[]}"#.to_vec());
        outbox.push_event(br#"{"type":"face_appeared","track":1}"#.to_vec());
        let stop = Shutdown::new();
        let publisher = tokio::spawn(run_publisher(
            cfg,
            topics.clone(),
            "board".into(),
            outbox.clone(),
            stop.clone(),
        ));

        let (mut online, mut state, mut event, mut offline) = (false, false, false, false);
        let deadline = tokio::time::Instant::now() + WAIT;
        while !offline {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let polled = tokio::time::timeout(left, sub_loop.poll()).await;
            let Ok(Ok(ev)) = polled else {
                panic!(
                    "broker delivered online={online} state={state} event={event} \
                     offline={offline} before {polled:?}"
                )
            };
            if let Event::Incoming(Packet::Publish(p)) = ev {
                let body = String::from_utf8_lossy(&p.payload).into_owned();
                if p.topic == topics.availability {
                    online |= body == ONLINE;
                    offline |= body == OFFLINE && online;
                } else if p.topic == topics.state {
                    assert_eq!(body, r#"{"faces":[]}"#);
                    state = true;
                } else if p.topic == topics.events {
                    assert_eq!(body, r#"{"type":"face_appeared","track":1}"#);
                    event = true;
                }
            }
            if online && state && event && !stop.is_triggered() {
                stop.trigger();
            }
        }
        tokio::time::timeout(WAIT, publisher)
            .await
            .expect("publisher did not stop")
            .unwrap()
            .unwrap();
        let c = outbox.counts();
        assert_eq!((c.queued, c.dropped), (0, 0), "{c:?}");
        assert!(c.published >= 1, "{c:?}");
        println!(
            "mqtt round trip on {}: online, state, event, offline delivered",
            std::env::consts::ARCH
        );
    });
}

#[test]
fn cpu_report_matches_the_architecture() {
    let line = emonet::cpu::summary();
    println!("{line}");
    assert!(line.starts_with(&format!("cpu {} ", std::env::consts::ARCH)));
    if cfg!(target_arch = "aarch64") {
        // Every ARMv8-A board we ship to has NEON; the dot-product decides the int8 kernel.
        assert!(line.contains("neon"), "{line}");
        let dot = emonet::cpu::features().contains(&"dotprod");
        assert_eq!(line.contains("dot-product"), dot, "{line}");
    }
}

/// The parity image set of `.ci/aarch64`: tests/data/*.png and samples/frames/*.jpg.
fn parity_images(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for (dir, ext) in [("tests/data", "png"), ("samples/frames", "jpg")] {
        let mut v: Vec<PathBuf> = std::fs::read_dir(root.join(dir))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == ext))
            .collect();
        v.sort();
        out.extend(v);
    }
    out
}

/// The three shipped classifiers: `.ci/aarch64` holds w8 (the default: int8 weights, float
/// arithmetic) and fp32 to the 1e-3 bar and reports the static int8 QDQ file, whose
/// float-emulated quantisation can round one activation differently across architectures.
#[test]
fn classifier_scores_on_fixed_crops() {
    let root = root();
    let images = parity_images(&root);
    assert!(images.len() >= 20, "{images:?}");
    for (name, file) in [
        ("w8", emonet::config::DEFAULT_CLASSIFIER_FILE),
        ("int8", "emotion-mnv2-int8.onnx"),
        ("fp32", "emotion-mnv2-fp32.onnx"),
    ] {
        let classifier = EmotionClassifier::load(model(file)).unwrap();
        print_crop_scores(&classifier, name, &root, &images);
    }
}

fn print_crop_scores(classifier: &EmotionClassifier, name: &str, root: &Path, images: &[PathBuf]) {
    for path in images {
        let img = emonet::frame::read_image(path).unwrap();
        let (w, h) = img.dimensions();
        // A square of half the short side, centred horizontally, in the upper middle (where the
        // faces of the sample frames are); whole pixels, so every architecture sees the same
        // input.
        let side = w.min(h) / 2;
        let crop =
            image::imageops::crop_imm(&img, (w - side) / 2, (h - side) / 4, side, side).to_image();
        let a = classifier.classify_crop(&crop).unwrap();
        let b = classifier.classify_crop(&crop).unwrap();
        assert_eq!(
            a.scores,
            b.scores,
            "not deterministic on {}",
            path.display()
        );
        let sum: f32 = a.scores.iter().sum();
        assert!((sum - 1.0).abs() < 1e-4, "{sum}");
        let rel = path.strip_prefix(root).unwrap().display();
        let scores: Vec<String> = a.scores.iter().map(|v| format!("{v:e}")).collect();
        println!("CROP {name} {rel} {}", scores.join(","));
    }
}
