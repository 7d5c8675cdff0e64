//! Bad configuration is rejected before anything starts, with a message naming the culprit.

mod common;

use std::process::Command;

use common::*;

/// Runs `emonet <cmd> --config <file with text>`; returns (exit ok, stderr).
fn emonet(cmd: &str, text: &str) -> (bool, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_emonet"))
        .args([cmd, "--config"])
        .arg(&path)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        path.display().to_string(),
    )
}

fn valid_base() -> String {
    format!(
        "[camera]\nsource = \"replay\"\n[replay]\npath = \"{}\"\n[detector]\nmodel = \"{}\"\n[classifier]\nmodel = \"{}\"\n",
        root().join("samples/frames").display(),
        detector_model().display(),
        classifier_model().display()
    )
}

#[test]
fn check_accepts_the_shipped_configs() {
    let repo = root();
    // The packaged default points at /usr/share/emonet and a camera: aim those at the checkout
    // through the environment, which is how an operator would override them too.
    let packaged_env = [
        (
            "EMONET__DETECTOR__MODEL",
            detector_model().display().to_string(),
        ),
        (
            "EMONET__CLASSIFIER__MODEL",
            classifier_model().display().to_string(),
        ),
        ("EMONET__CAMERA__SOURCE", "replay".to_string()),
        (
            "EMONET__REPLAY__PATH",
            repo.join("samples/frames").display().to_string(),
        ),
    ];
    for (cfg, env) in [
        ("samples/demo.toml", &[][..]),
        ("systemd/emonet.toml", &packaged_env[..]),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_emonet"))
            .args(["check", "--config"])
            .arg(repo.join(cfg))
            .envs(env.iter().map(|(k, v)| (k, v)))
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{cfg}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains("is valid") && stdout.contains("[mqtt]"),
            "{stdout}"
        );
    }
    let (ok, err, _) = emonet("check", &valid_base());
    assert!(ok, "{err}");
}

#[test]
fn unknown_key_is_named_with_the_file() {
    for cmd in ["check", "run"] {
        let (ok, err, file) = emonet(cmd, &format!("{}[mqtt]\nprot = 1883\n", valid_base()));
        assert!(!ok);
        assert!(err.contains("mqtt.prot") && err.contains(&file), "{err}");
    }
}

#[test]
fn wrong_type_is_named() {
    let (ok, err, file) = emonet("check", "[mqtt]\nport = \"eighteen\"\n");
    assert!(!ok);
    assert!(err.contains("port") && err.contains(&file), "{err}");
    let (ok, err, file) = emonet("check", "[camera\nsource = 1\n");
    assert!(!ok);
    assert!(
        err.contains(&file),
        "TOML syntax error must name the file: {err}"
    );
}

#[test]
fn missing_model_file_is_named() {
    let text = valid_base().replace(
        emonet::config::DEFAULT_CLASSIFIER_FILE,
        "no-such-model.onnx",
    );
    for cmd in ["check", "run"] {
        let (ok, err, _) = emonet(cmd, &text);
        assert!(!ok);
        assert!(
            err.contains("classifier.model") && err.contains("no-such-model.onnx"),
            "{err}"
        );
    }
}

#[test]
fn unreadable_camera_device_is_named() {
    let base = valid_base().replace("source = \"replay\"", "source = \"v4l2\"");
    for device in ["/dev/video-missing", "/dev/null"] {
        let text = base.replace("[camera]\n", &format!("[camera]\ndevice = \"{device}\"\n"));
        let (ok, err, _) = emonet("run", &text);
        assert!(!ok, "{device}");
        assert!(err.contains(device) && err.contains("camera"), "{err}");
    }
}

/// A replay folder that goes away under the running daemon is a configuration problem that
/// retrying cannot fix (`SourceError::Fatal`): `run` stops with a non-zero exit naming the key and
/// the folder, instead of retrying forever (systemd then restarts it per the unit).
#[test]
fn a_source_failing_fatally_stops_run_naming_the_culprit() {
    let dir = tempfile::tempdir().unwrap();
    let frames = dir.path().join("frames");
    std::fs::create_dir(&frames).unwrap();
    for f in ["0000.jpg", "0001.jpg"] {
        std::fs::copy(root().join("samples/frames").join(f), frames.join(f)).unwrap();
    }
    // No broker on this port: the daemon runs without one.
    let config = write_config(dir.path(), free_port(), &frames, "");
    let mut daemon = Daemon::start(&config, &[]);
    // The source is open once the start-up line is logged; then the folder goes away.
    let t0 = std::time::Instant::now();
    while !daemon.log().contains("source replay:") {
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(60),
            "daemon did not start; log:\n{}",
            daemon.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    std::fs::remove_dir_all(&frames).unwrap();
    let status = daemon.wait(std::time::Duration::from_secs(60));
    let log = daemon.log();
    assert!(!status.success(), "{log}");
    let culprit = format!("replay.path {}", frames.display());
    assert!(
        log.lines()
            .any(|l| l.starts_with("emonet: error:") && l.contains(&culprit)),
        "{log}"
    );
}

#[test]
fn missing_config_file_is_named() {
    let out = Command::new(env!("CARGO_BIN_EXE_emonet"))
        .args(["check", "--config", "/nonexistent/emonet.toml"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/emonet.toml"));
}

#[test]
fn devices_reports_none_found_without_cameras() {
    let out = Command::new(env!("CARGO_BIN_EXE_emonet"))
        .arg("devices")
        .output()
        .unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    if std::path::Path::new("/dev/video0").exists() {
        eprintln!("skipping the 'none found' check: this machine has /dev/video0");
        assert!(stdout.contains("/dev/video"));
    } else {
        assert!(stdout.contains("no V4L2 devices found"), "{stdout}");
    }
}
