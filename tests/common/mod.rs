//! Test harness: a real MQTT broker on a random loopback port, a recording subscriber, and the
//! real `emonet` binary run as a child process.
#![allow(dead_code)]

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The checkout (samples/, models/, tests/data/).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `models/<file>` of the checkout.
pub fn model(file: &str) -> PathBuf {
    root().join("models").join(file)
}

/// The default face detector of the checkout (`config::DEFAULT_DETECTOR_FILE`).
pub fn detector_model() -> PathBuf {
    model(emonet::config::DEFAULT_DETECTOR_FILE)
}

/// The short-range BlazeFace (`range = "short"`, and the follower of every range).
#[allow(dead_code)] // not every test binary uses it
pub fn short_detector_model() -> PathBuf {
    model(emonet::config::SHORT_RANGE_DETECTOR_FILE)
}

/// The default emotion classifier of the checkout (`config::DEFAULT_CLASSIFIER_FILE`).
pub fn classifier_model() -> PathBuf {
    model(emonet::config::DEFAULT_CLASSIFIER_FILE)
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_port(port: u16, up: bool) {
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(10) {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() == up {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!(
        "broker port {port} did not become {}",
        if up { "ready" } else { "free" }
    );
}

/// A broker process: Debian's mosquitto when installed (CI installs it), otherwise emonet's own
/// embedded broker (rumqttd) started as a separate process by `emonet broker`.
pub struct Broker {
    pub port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
    /// mosquitto.conf lines before the loopback listener (global settings).
    global: String,
    /// Lines after it (its own settings, further listeners).
    extra: String,
}

/// mosquitto, unless EMONET_TEST_BROKER=rumqttd asks for the embedded broker.
fn mosquitto() -> Option<PathBuf> {
    if std::env::var("EMONET_TEST_BROKER").as_deref() == Ok("rumqttd") {
        return None;
    }
    which("mosquitto")
}

pub fn which(cmd: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .chain([PathBuf::from("/usr/sbin")])
            .map(|p| p.join(cmd))
            .find(|p| p.is_file())
    })
}

impl Broker {
    pub fn start() -> Broker {
        Self::start_conf(free_port(), "allow_anonymous true\n", "")
    }

    /// mosquitto with `global` settings and `extra` lines after its loopback listener (further
    /// listeners, TLS); `None` (with the reason printed) where mosquitto is not installed.
    pub fn mosquitto(global: &str, extra: &str) -> Option<Broker> {
        if mosquitto().is_none() {
            eprintln!("skipped: this test needs mosquitto (CI installs it)");
            return None;
        }
        Some(Self::start_conf(free_port(), global, extra))
    }

    /// Like [`Broker::mosquitto`] on a given port.
    pub fn mosquitto_on(port: u16, global: &str, extra: &str) -> Option<Broker> {
        mosquitto()?;
        Some(Self::start_conf(port, global, extra))
    }

    fn start_conf(port: u16, global: &str, extra: &str) -> Broker {
        let mut b = Broker {
            port,
            child: None,
            dir: tempfile::tempdir().unwrap(),
            global: global.to_string(),
            extra: extra.to_string(),
        };
        b.spawn();
        b
    }

    /// A folder that lives as long as the broker (for its password file, certificates).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn kind() -> &'static str {
        if mosquitto().is_some() {
            "mosquitto"
        } else {
            "emonet broker (rumqttd)"
        }
    }

    fn spawn(&mut self) {
        let child = match mosquitto() {
            Some(mosquitto) => {
                let conf = self.dir.path().join("mosquitto.conf");
                std::fs::write(
                    &conf,
                    // As root, mosquitto would read its files as the `mosquitto` user.
                    format!(
                        "persistence false\nlog_dest stderr\nuser root\n{}\nlistener {} 127.0.0.1\n{}\n",
                        self.global, self.port, self.extra
                    ),
                )
                .unwrap();
                Command::new(mosquitto)
                    .arg("-c")
                    .arg(&conf)
                    .stdout(Stdio::null())
                    .stderr(std::fs::File::create(self.dir.path().join("mosquitto.log")).unwrap())
                    .spawn()
                    .expect("start mosquitto")
            }
            None => {
                eprintln!("note: mosquitto not installed; using `emonet broker` (rumqttd) as the test broker");
                Command::new(env!("CARGO_BIN_EXE_emonet"))
                    .args(["broker", "--listen", &format!("127.0.0.1:{}", self.port)])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("start emonet broker")
            }
        };
        self.child = Some(child);
        wait_port(self.port, true);
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        wait_port(self.port, false);
    }

    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Stops mosquitto with SIGTERM (it saves its persistence file, if any) and starts it again.
    pub fn restart_gracefully(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let _ = c.wait();
        }
        wait_port(self.port, false);
        self.spawn();
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[derive(Debug, Clone)]
pub struct Msg {
    pub topic: String,
    pub payload: String,
    pub retain: bool,
    pub at: Instant,
}

impl Msg {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.payload).unwrap_or_else(|e| {
            panic!(
                "payload on {} is not JSON ({e}): {}",
                self.topic, self.payload
            )
        })
    }
}

/// Records every message on a topic filter, reconnecting (and re-subscribing) by itself.
pub struct Subscriber {
    pub msgs: Arc<Mutex<Vec<Msg>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl Subscriber {
    pub fn start(port: u16, filter: &str) -> Subscriber {
        Self::start_session(port, filter, None)
    }

    /// With `Some(id)`: a persistent session under that client id (clean session off), so a
    /// broker with persistence keeps queuing for it across the subscriber's reconnects.
    pub fn start_session(port: u16, filter: &str, session: Option<&str>) -> Subscriber {
        let msgs = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (m, s, filter) = (msgs.clone(), stop.clone(), filter.to_string());
        let id = session.map_or_else(|| format!("test-sub-{}", free_port()), str::to_string);
        let clean = session.is_none();
        let ready = Arc::new(std::sync::Barrier::new(2));
        let ready2 = ready.clone();
        std::thread::spawn(move || {
            let mut opts = rumqttc::MqttOptions::new(id, "127.0.0.1", port);
            opts.set_keep_alive(Duration::from_secs(5));
            opts.set_clean_session(clean);
            let (client, mut conn) = rumqttc::Client::new(opts, 10);
            let mut signalled = false;
            for ev in conn.iter() {
                if s.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                match ev {
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_))) => {
                        client
                            .subscribe(filter.as_str(), rumqttc::QoS::AtLeastOnce)
                            .unwrap();
                    }
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::SubAck(_))) => {
                        if !signalled {
                            signalled = true;
                            ready2.wait();
                        }
                    }
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p))) => {
                        m.lock().unwrap().push(Msg {
                            topic: p.topic.clone(),
                            payload: String::from_utf8_lossy(&p.payload).into_owned(),
                            retain: p.retain,
                            at: Instant::now(),
                        });
                    }
                    Ok(_) => {}
                    Err(_) => std::thread::sleep(Duration::from_millis(100)),
                }
            }
        });
        ready.wait();
        Subscriber { msgs, stop }
    }

    pub fn all(&self) -> Vec<Msg> {
        self.msgs.lock().unwrap().clone()
    }

    /// Waits until `pred` holds for some message; returns it.
    pub fn wait_for(&self, what: &str, timeout: Duration, pred: impl Fn(&Msg) -> bool) -> Msg {
        let t0 = Instant::now();
        loop {
            if let Some(m) = self.msgs.lock().unwrap().iter().find(|m| pred(m)) {
                return m.clone();
            }
            if t0.elapsed() > timeout {
                let seen: Vec<String> = self
                    .all()
                    .iter()
                    .rev()
                    .take(10)
                    .map(|m| format!("{} {}", m.topic, m.payload))
                    .collect();
                panic!("timed out after {timeout:?} waiting for {what}; last messages: {seen:#?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// `emonet check --config cfg` with `env` set: (exit code, stderr).
pub fn emonet_check(cfg: &Path, env: &[(&str, &str)]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_emonet"))
        .args(["check", "--config"])
        .arg(cfg)
        .envs(env.iter().copied())
        .output()
        .expect("run emonet check");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Writes a daemon config for a test: replayed frames, the shipped models, a broker port.
pub fn write_config(dir: &Path, port: u16, frames: &Path, extra: &str) -> PathBuf {
    let path = dir.join("emonet.toml");
    let mut f = std::fs::File::create(&path).unwrap();
    write!(
        f,
        r#"device_id = "test"
[camera]
source = "replay"
[replay]
path = "{}"
fps = 10.0
loop = true
[detector]
model = "{}"
[classifier]
model = "{}"
[tracker]
max_missed = 3
[mqtt]
host = "127.0.0.1"
port = {port}
stats_interval_secs = 1
reconnect_initial_ms = 100
reconnect_max_ms = 500
{extra}
"#,
        frames.display(),
        detector_model().display(),
        classifier_model().display(),
    )
    .unwrap();
    path
}

pub struct Daemon {
    pub child: Child,
    pub stderr_path: PathBuf,
}

impl Daemon {
    pub fn start(config: &Path, envs: &[(&str, &str)]) -> Daemon {
        let stderr_path = config.with_extension("log");
        let stderr = std::fs::File::create(&stderr_path).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_emonet"))
            .args(["run", "--config"])
            .arg(config)
            .envs(envs.iter().copied())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start emonet");
        Daemon { child, stderr_path }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Waits until the log holds `needle`; returns the log. Panics with the log on timeout.
    pub fn wait_log(&self, needle: &str, timeout: Duration) -> String {
        let t0 = Instant::now();
        loop {
            let log = self.log();
            if log.contains(needle) {
                return log;
            }
            if let Some(st) = self.child_exited() {
                panic!("emonet exited ({st}) before logging {needle:?}:\n{log}");
            }
            assert!(
                t0.elapsed() < timeout,
                "no {needle:?} in the daemon's log after {timeout:?}:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn child_exited(&self) -> Option<String> {
        let status = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).ok()?;
        // A zombie (state Z) has exited but not been reaped.
        let state = status.rsplit(')').next()?.split_whitespace().next()?;
        (state == "Z").then(|| "exited".to_string())
    }

    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args([&format!("-{sig}"), &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for exit; panics (after killing it) if it takes longer than `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let t0 = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            if t0.elapsed() > timeout {
                let _ = self.child.kill();
                panic!(
                    "emonet did not exit within {timeout:?}; log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn rss_kb(&self) -> u64 {
        rss_kb(self.child.id()).expect("VmRSS")
    }
}

/// Resident memory of process `pid` in kB (VmRSS), if it is running.
pub fn rss_kb(pid: u32) -> Option<u64> {
    emonet::cpu::proc_status_kib(&pid.to_string(), "VmRSS")
}

/// Open file descriptors of process `pid`, if it is running.
pub fn fd_count(pid: u32) -> Option<usize> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count())
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
