//! Property tests (proptest) for what reads untrusted bytes: the frame decoders (JPEG as a
//! camera's MJPEG or a replayed file, YUYV with the driver's row stride) and the config loader.
//! Whatever the input, they return a value or an error — never a panic — and a cut-off JPEG is
//! always an error. `PROPTEST_CASES=100000 cargo test --test fuzz` runs longer campaigns.

mod common;

use emonet::camera::v4l2::yuyv_to_rgb;
use emonet::camera::SourceError;
use emonet::config::Settings;
use emonet::frame::{decode_image, decode_jpeg};
use proptest::prelude::*;

fn sample_jpeg() -> Vec<u8> {
    std::fs::read(common::root().join("samples/frames/0001.jpg")).unwrap()
}

fn sample_png() -> Vec<u8> {
    std::fs::read(common::root().join("tests/data/coffee.png")).unwrap_or_default()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// A JPEG cut at any point is corrupt, never a picture with a grey bottom.
    #[test]
    fn truncated_jpeg_is_always_corrupt(cut in 0.0f64..1.0) {
        let jpeg = sample_jpeg();
        let at = ((jpeg.len() - 1) as f64 * cut) as usize;
        let err = decode_jpeg(&jpeg[..at]).expect_err("a cut-off JPEG decoded");
        prop_assert!(at < 16 || err.to_string().contains("truncated"), "{}", err);
    }

    /// Bytes changed anywhere (a bit flip on the USB bus): a result or an error, no panic.
    #[test]
    fn corrupted_images_never_panic(
        flips in proptest::collection::vec((0.0f64..1.0, any::<u8>()), 1..16),
        png in any::<bool>(),
    ) {
        let mut buf = if png { sample_png() } else { sample_jpeg() };
        prop_assume!(!buf.is_empty());
        for (at, byte) in flips {
            let i = ((buf.len() - 1) as f64 * at) as usize;
            buf[i] = byte;
        }
        let _ = decode_image(&buf);
    }

    /// Arbitrary bytes claiming to be a JPEG.
    #[test]
    fn random_bytes_never_panic(mut bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        if bytes.len() >= 2 {
            bytes[0] = 0xFF;
            bytes[1] = 0xD8;
        }
        let _ = decode_jpeg(&bytes);
        let _ = decode_image(&bytes);
    }

    /// YUYV of any size, stride and buffer length: an image of the asked size, or corrupt.
    #[test]
    fn yuyv_any_geometry(
        width in 0u32..64,
        height in 0u32..64,
        pad in 0u32..16,
        len in 0usize..10_000,
        fill in any::<u8>(),
    ) {
        let stride = width * 2 + pad;
        let buf = vec![fill; len];
        match yuyv_to_rgb(&buf, width, height, stride) {
            Ok(img) => {
                prop_assert_eq!(img.dimensions(), (width, height));
                prop_assert!(width % 2 == 0);
                prop_assert!(len >= (stride * height.saturating_sub(1) + width * 2) as usize);
            }
            Err(e) => prop_assert!(matches!(e, SourceError::Corrupt(_))),
        }
    }

    /// Config files made of known keys with values of any type: loaded or refused, no panic;
    /// an accepted one is valid.
    #[test]
    fn config_loader_never_panics(
        entries in proptest::collection::vec((0usize..KEYS.len(), 0usize..VALUES.len()), 0..8),
    ) {
        let mut by_section: std::collections::BTreeMap<&str, Vec<String>> = Default::default();
        for (k, v) in entries {
            let (section, key) = KEYS[k].rsplit_once('.').unwrap_or(("", KEYS[k]));
            by_section.entry(section).or_default().push(format!("{key} = {}", VALUES[v]));
        }
        let mut text = String::new();
        for (section, lines) in &by_section {
            if !section.is_empty() {
                text.push_str(&format!("[{section}]\n"));
            }
            // A key twice is a TOML error: fine, that is an input too.
            text.push_str(&lines.join("\n"));
            text.push('\n');
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fuzz.toml");
        std::fs::write(&path, &text).unwrap();
        if let Ok(settings) = Settings::load_with_env(&path, &[]) {
            prop_assert!(settings.validate().is_ok(), "{}", text);
        }
    }

    /// Any text at all as a config file.
    #[test]
    fn config_loader_random_text(text in "\\PC{0,200}") {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fuzz.toml");
        std::fs::write(&path, &text).unwrap();
        let _ = Settings::load_with_env(&path, &[]);
    }
}

const KEYS: &[&str] = &[
    "device_id",
    "camera.fps",
    "camera.width",
    "camera.height",
    "camera.reconnect_initial_ms",
    "camera.reconnect_max_ms",
    "camera.pixel_format",
    "replay.fps",
    "replay.loop",
    "detector.score_threshold",
    "detector.max_faces",
    "tracker.smoothing",
    "tracker.min_hits",
    "tracker.min_margin",
    "classifier.reuse.max_frames",
    "mqtt.port",
    "mqtt.keep_alive_secs",
    "mqtt.queue_capacity",
    "mqtt.stats_interval_secs",
    "mqtt.topic_prefix",
    "mqtt.reconnect_max_ms",
    "log.level",
];

const VALUES: &[&str] = &[
    "0",
    "-1",
    "1",
    "15",
    "65535",
    "4294967296",
    "9223372036854775807",
    "1e-30",
    "1e30",
    "nan",
    "inf",
    "-inf",
    "0.5",
    "true",
    "\"\"",
    "\"kiosk/#\"",
    "\"x\"",
    "[]",
    "{}",
];
