//! Typed settings, read with the `config` crate: built-in defaults < TOML file < `EMONET__*`
//! environment variables (`EMONET__MQTT__HOST=broker.lan` sets `mqtt.host`).
//!
//! Every key has a default, so an empty file is a valid configuration. Unknown keys are errors
//! (a typo silently ignored is the worst kind of misconfiguration on a headless robot), and every
//! error names the key and the file or variable it came from.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

/// Where the packaged service looks by default.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/emonet/emonet.toml";
/// Prefix of environment overrides; sections and keys are separated by `__`.
pub const ENV_PREFIX: &str = "EMONET";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Identifies this device in MQTT topics and payloads. Empty: the host name.
    pub device_id: String,
    pub camera: CameraSettings,
    pub replay: ReplaySettings,
    pub detector: DetectorSettings,
    pub classifier: ClassifierSettings,
    pub tracker: TrackerSettings,
    pub mqtt: MqttSettings,
    pub broker: BrokerSettings,
    pub log: LogSettings,
    pub http: HttpSettings,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    V4l2,
    Replay,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PixelFormat {
    /// Prefer MJPEG (less USB bandwidth), fall back to YUYV.
    Auto,
    Mjpeg,
    Yuyv,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct CameraSettings {
    /// `v4l2` for a real camera, `replay` for recorded frames (see `[replay]`).
    pub source: SourceKind,
    pub device: PathBuf,
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub pixel_format: PixelFormat,
    /// First wait before reopening a camera that went away; doubles up to `reconnect_max_ms`.
    pub reconnect_initial_ms: u64,
    pub reconnect_max_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ReplaySettings {
    /// An image file or a folder of images (PNG/JPEG), played in file-name order.
    pub path: PathBuf,
    pub fps: f32,
    /// Start again after the last frame; otherwise the daemon stops when the frames run out.
    #[serde(rename = "loop")]
    pub looped: bool,
}

/// Which model finds the faces (MediaPipe's two BlazeFace models, or CenterFace; see
/// `models/README.md`).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum DetectorRange {
    /// `blazeface-short.onnx`, 128×128: faces about 80 px wide or more in a 640×480 frame
    /// (arm's length), the cheaper model.
    Short,
    /// `blazeface-full.onnx`, 192×192: faces from about 56–64 px wide in a 640×480 frame (a few
    /// metres away), several times the detection cost.
    Full,
    /// `centerface.onnx`, 384×288: faces from about 40 px wide in a 640×480 frame (a visitor
    /// 3 m away), about ten times the short-range cost.
    Far,
}

impl DetectorRange {
    /// The model file shipped for this range.
    pub const fn default_file(self) -> &'static str {
        match self {
            DetectorRange::Short => SHORT_RANGE_DETECTOR_FILE,
            DetectorRange::Full => FULL_RANGE_DETECTOR_FILE,
            DetectorRange::Far => FAR_RANGE_DETECTOR_FILE,
        }
    }

    /// The minimum face score used when `score_threshold` is not set: the value at which the
    /// model reaches its benchmark recall without false positives on face-free frames.
    pub fn default_score_threshold(self) -> f32 {
        match self {
            DetectorRange::Short | DetectorRange::Full => 0.6,
            DetectorRange::Far => 0.5,
        }
    }

    /// `follow.every` when it is not set: CenterFace is followed between full detections on one
    /// frame in five, which keeps a one-face frame near the short-range cost on x86 (`models/README.md`,
    /// detection benchmark); the BlazeFace ranges are cheap enough to run on every frame.
    pub fn default_follow_every(self) -> u32 {
        match self {
            DetectorRange::Short | DetectorRange::Full => 0,
            DetectorRange::Far => 5,
        }
    }
}

/// Face detection: the daemon's, `emonet classify`'s and `emonet bench`'s settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DetectorSettings {
    /// `short`, `full` or `far`: which model. With `model` left at its default, the range picks
    /// the shipped file; a `model` of another range is an error.
    pub range: DetectorRange,
    pub model: PathBuf,
    /// Minimum face score (0..1) to keep a detection; unset: the range's default
    /// ([`DetectorRange::default_score_threshold`]).
    pub score_threshold: Option<f32>,
    /// Detections overlapping a better one by more than this IoU are merged / suppressed (0..1).
    pub nms_iou: f32,
    /// At most this many faces per frame, best first.
    pub max_faces: usize,
    /// Faces whose box is narrower than this fraction of the frame's shorter side are dropped
    /// (0 keeps everything).
    pub min_face_size: f32,
    /// Weighted NMS (average of the overlapping boxes, as MediaPipe does) instead of plain NMS.
    pub weighted_nms: bool,
    /// When a frame may take the faces found on a recent one instead of running the detector.
    pub reuse: SceneReuseSettings,
    /// Between full detections, find each face again in a small region around it.
    pub follow: FollowSettings,
}

/// Following faces between full detections (see [`crate::follow`]): each face is looked for
/// again by the short-range detector in a region around its last box.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct FollowSettings {
    /// The full detector runs on one frame in `every`; the frames between follow the faces it
    /// found (0 = the full detector on every frame). Unset: the range's default
    /// ([`DetectorRange::default_follow_every`]; read it through [`DetectorSettings::following`]).
    pub every: Option<u32>,
    /// Side of the square searched around a face, in face widths.
    pub zoom: f32,
    /// Minimum score of a face found again (0..1). Lower than a full detection's: it is looked
    /// for only where the full detector has just found a face, and the next full detection
    /// corrects any mistake.
    pub score_threshold: f32,
}

impl FollowSettings {
    /// Whether any frame is followed (`every` 0 and 1 both detect in full on every frame; unset
    /// is off here: [`DetectorSettings::following`] resolves it first).
    pub fn is_on(&self) -> bool {
        self.every.is_some_and(|n| n > 1)
    }
}

impl Default for FollowSettings {
    fn default() -> Self {
        FollowSettings {
            every: None,
            zoom: 2.0,
            score_threshold: 0.4,
        }
    }
}

/// When the faces detected on a recent frame stand in for detecting again (see
/// [`crate::reuse`]): the frame must not have changed since that detection.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SceneReuseSettings {
    /// Frames a detection's faces may be reused after it (0 = detect on every frame).
    pub max_frames: u32,
    /// Largest change of any cell of the frame's 16×12 luma grid, in grey levels (0..255).
    pub max_change: f32,
}

impl Default for SceneReuseSettings {
    fn default() -> Self {
        SceneReuseSettings {
            max_frames: 2,
            max_change: 2.0,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ClassifierSettings {
    pub model: PathBuf,
    /// When a face's earlier scores may stand in for classifying it again.
    pub reuse: ReuseSettings,
}

/// When a face's earlier scores may stand in for classifying it again (see [`crate::reuse`]).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ReuseSettings {
    /// Frames a face's scores may be reused after it was classified (0 = classify every frame).
    pub max_frames: u32,
    /// Minimum overlap between the face's box and the box that was classified.
    pub min_iou: f32,
    /// Largest mean change of the face's 8×8 luma thumbnail, in grey levels (0..255).
    pub max_change: f32,
}

impl Default for ReuseSettings {
    fn default() -> Self {
        ReuseSettings {
            max_frames: 2,
            min_iou: 0.85,
            max_change: 2.0,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TrackerSettings {
    /// Minimum IoU for a detection to continue an existing track.
    pub iou_threshold: f32,
    /// Frames a face must be seen before it is reported (filters one-frame false positives).
    pub min_hits: u32,
    /// Frames a face may go unseen before it is reported as gone.
    pub max_missed: u32,
    /// Weight of the newest frame in the exponential moving average of the scores (0..1].
    pub smoothing: f32,
    /// Frames a new emotion must stay on top before a change is reported.
    pub hold_frames: u32,
    /// How far (in probability) the new emotion must lead the reported one.
    pub min_margin: f32,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct MqttSettings {
    pub host: String,
    pub port: u16,
    /// Empty: `emonet-<device_id>`.
    pub client_id: String,
    pub topic_prefix: String,
    /// Empty: connect without credentials.
    pub username: String,
    pub password: String,
    pub keep_alive_secs: u64,
    /// Messages held while the broker is unreachable; the oldest are dropped (and counted) beyond.
    pub queue_capacity: usize,
    pub stats_interval_secs: u64,
    pub reconnect_initial_ms: u64,
    pub reconnect_max_ms: u64,
    /// Publish Home Assistant MQTT discovery for this device (re-sent when HA restarts).
    pub homeassistant: bool,
    pub discovery_prefix: String,
    pub tls: TlsSettings,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct TlsSettings {
    pub enabled: bool,
    pub ca_file: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

/// An MQTT broker inside the daemon, for demos and single-board setups without mosquitto.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct BrokerSettings {
    pub enabled: bool,
    pub listen: String,
}

/// The local web view ([`crate::web`]): off unless `enabled`; nothing listens then.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct HttpSettings {
    pub enabled: bool,
    /// host:port; loopback by default. Any other address requires `token`.
    pub listen: String,
    /// Required on every path but `/healthz` (`Authorization: Bearer …` or `?token=…`) when set;
    /// must be set when `listen` is not a loopback address.
    pub token: String,
    /// At most this many annotated frames per second are drawn and encoded, only while the page
    /// is open.
    pub max_fps: f32,
    /// JPEG quality of the view's frames (1..=100).
    pub jpeg_quality: u8,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    /// error, warn, info, debug or trace.
    pub level: String,
}

impl Default for CameraSettings {
    fn default() -> Self {
        CameraSettings {
            source: SourceKind::V4l2,
            device: PathBuf::from("/dev/video0"),
            width: 640,
            height: 480,
            fps: 15,
            pixel_format: PixelFormat::Auto,
            reconnect_initial_ms: 500,
            reconnect_max_ms: 10_000,
        }
    }
}

impl Default for ReplaySettings {
    fn default() -> Self {
        ReplaySettings {
            path: PathBuf::from("/usr/share/emonet/samples"),
            fps: 5.0,
            looped: true,
        }
    }
}

/// Where the packaged models live; a source checkout uses `models/` via its config files.
pub const DEFAULT_MODEL_DIR: &str = "/usr/share/emonet/models";
/// The detector range used when `detector.range` is not set: `far`, the one that sees a visitor
/// 3 m away (faces from 40 px wide in a 640×480 frame), followed between full detections
/// ([`DetectorRange::default_follow_every`]). `short` costs about a third of its CPU on a
/// Raspberry Pi 4 for faces at arm's length (`models/README.md`, detection benchmark).
pub const DEFAULT_DETECTOR_RANGE: DetectorRange = DetectorRange::Far;
/// The short-range detector file (`detector.range = "short"`, and the follower of every range).
pub const SHORT_RANGE_DETECTOR_FILE: &str = "blazeface-short.onnx";
/// The full-range detector file (`detector.range = "full"`).
pub const FULL_RANGE_DETECTOR_FILE: &str = "blazeface-full.onnx";
/// The distance detector file (`detector.range = "far"`).
pub const FAR_RANGE_DETECTOR_FILE: &str = "centerface.onnx";
/// The default model files (in `DEFAULT_MODEL_DIR`, or `models/` of a checkout for the tools).
pub const DEFAULT_DETECTOR_FILE: &str = DEFAULT_DETECTOR_RANGE.default_file();
pub const DEFAULT_CLASSIFIER_FILE: &str = "emotion-mnv2-w8.onnx";

impl Default for DetectorSettings {
    fn default() -> Self {
        DetectorSettings {
            range: DEFAULT_DETECTOR_RANGE,
            model: Path::new(DEFAULT_MODEL_DIR).join(DEFAULT_DETECTOR_FILE),
            score_threshold: None,
            nms_iou: 0.3,
            max_faces: 8,
            min_face_size: 0.0,
            weighted_nms: true,
            reuse: SceneReuseSettings::default(),
            follow: FollowSettings::default(),
        }
    }
}

impl Default for ClassifierSettings {
    fn default() -> Self {
        ClassifierSettings {
            model: Path::new(DEFAULT_MODEL_DIR).join(DEFAULT_CLASSIFIER_FILE),
            reuse: Default::default(),
        }
    }
}

impl Default for TrackerSettings {
    fn default() -> Self {
        TrackerSettings {
            iou_threshold: 0.3,
            min_hits: 2,
            max_missed: 5,
            smoothing: 0.5,
            hold_frames: 3,
            min_margin: 0.1,
        }
    }
}

impl Default for MqttSettings {
    fn default() -> Self {
        MqttSettings {
            host: "localhost".into(),
            port: 1883,
            client_id: String::new(),
            topic_prefix: "emonet".into(),
            username: String::new(),
            password: String::new(),
            keep_alive_secs: 15,
            queue_capacity: 1000,
            stats_interval_secs: 30,
            reconnect_initial_ms: 250,
            reconnect_max_ms: 10_000,
            homeassistant: false,
            discovery_prefix: "homeassistant".into(),
            tls: TlsSettings::default(),
        }
    }
}

impl Default for BrokerSettings {
    fn default() -> Self {
        BrokerSettings {
            enabled: false,
            listen: "127.0.0.1:1883".into(),
        }
    }
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            enabled: false,
            listen: "127.0.0.1:8090".into(),
            token: String::new(),
            max_fps: 5.0,
            jpeg_quality: 80,
        }
    }
}

impl HttpSettings {
    pub fn validate(&self) -> Result<()> {
        if !self.enabled {
            return Ok(());
        }
        check_range("http.max_fps", self.max_fps, 0.1, 60.0)?;
        if !(1..=100).contains(&self.jpeg_quality) {
            bail!(
                "http.jpeg_quality must be in [1, 100], got {}",
                self.jpeg_quality
            );
        }
        if !crate::web::is_loopback(&self.listen) && self.token.is_empty() {
            bail!(
                "http.token is required when http.listen ({}) is not a loopback address: anyone on \
                 the network could watch the camera",
                self.listen
            );
        }
        Ok(())
    }
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            level: "info".into(),
        }
    }
}

impl Settings {
    /// Reads `path` (which must exist) and the `EMONET__*` environment over the defaults.
    pub fn load(path: &Path) -> Result<Settings> {
        let env: Vec<(String, String)> = std::env::vars()
            .filter(|(k, _)| k.starts_with(&format!("{ENV_PREFIX}__")))
            .collect();
        Self::load_with_env(path, &env)
    }

    /// Like [`Settings::load`] with an explicit environment (tests must not mutate the real one).
    pub fn load_with_env(path: &Path, env: &[(String, String)]) -> Result<Settings> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        let file_keys =
            toml_keys(&text).with_context(|| format!("in config file {}", path.display()))?;
        let known = known_keys();
        for key in &file_keys {
            if !known.contains(key) {
                bail!(
                    "unknown key `{key}` in config file {}{}",
                    path.display(),
                    suggestion(key, &known)
                );
            }
        }

        let mut builder = config::Config::builder()
            .add_source(
                config::Config::try_from(&Settings::default())
                    .context("internal error: default settings do not serialise")?,
            )
            .add_source(config::File::from(path).format(config::FileFormat::Toml));
        for (var, value) in env {
            let key = env_key(var).ok_or_else(|| anyhow::anyhow!("malformed variable {var}"))?;
            if !known.contains(&key) {
                bail!(
                    "unknown key `{key}` set by environment variable {var}{}",
                    suggestion(&key, &known)
                );
            }
            builder = builder
                .set_override(key.as_str(), parse_env_value(value))
                .with_context(|| format!("environment variable {var}"))?;
        }
        let merged = builder
            .build()
            .with_context(|| format!("in config file {}", path.display()))?;
        let mut settings: Settings = merged
            .try_deserialize()
            .map_err(|e| blame(anyhow::anyhow!("invalid value: {e}"), path, env))?;
        settings.detector.apply_range();
        settings.validate().map_err(|e| blame(e, path, env))?;
        Ok(settings)
    }

    /// Checks values that parse but cannot work. Files are checked where they are used
    /// (model loading names the key), so `check` and `run` report them the same way.
    pub fn validate(&self) -> Result<()> {
        check_topic("device_id", &self.device_id, true)?;
        self.camera.validate()?;
        self.replay.validate()?;
        self.detector.validate()?;
        self.classifier.reuse.validate()?;
        self.tracker.validate()?;
        self.mqtt.validate()?;
        if self.broker.enabled {
            self.broker
                .listen
                .parse::<std::net::SocketAddr>()
                .with_context(|| {
                    format!(
                        "broker.listen {:?} is not an address:port",
                        self.broker.listen
                    )
                })?;
        }
        self.http.validate()?;
        log_level(&self.log.level)?;
        Ok(())
    }

    /// The device id with the host-name default applied.
    pub fn device_id(&self) -> String {
        if !self.device_id.is_empty() {
            return self.device_id.clone();
        }
        std::fs::read_to_string("/etc/hostname")
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "emonet".into())
    }

    /// Resolves relative paths (models, replay frames) against the config file's folder, so a
    /// config file can sit next to what it points at.
    pub fn resolve_paths(&mut self, config_path: &Path) {
        let base = config_path.parent().unwrap_or(Path::new("."));
        for p in [
            &mut self.detector.model,
            &mut self.classifier.model,
            &mut self.replay.path,
        ] {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
    }

    /// Points the models at the default files in `dir` (a checkout's `models/`), for the tools
    /// that run without a config file.
    pub fn use_models_in(&mut self, dir: &Path) {
        self.detector.model = dir.join(self.detector.range.default_file());
        self.classifier.model = dir.join(DEFAULT_CLASSIFIER_FILE);
    }

    /// The effective configuration as TOML (secrets masked), for `emonet check`.
    pub fn to_toml_masked(&self) -> String {
        let mut copy = self.clone();
        copy.detector.score_threshold = Some(self.detector.score_threshold());
        if !copy.mqtt.password.is_empty() {
            copy.mqtt.password = "********".into();
        }
        if !copy.http.token.is_empty() {
            copy.http.token = "********".into();
        }
        toml::to_string_pretty(&copy).unwrap_or_else(|e| format!("# cannot render: {e}"))
    }
}

/// Names where a bad value came from: the environment variable that set the key the error
/// names, else the config file.
fn blame(e: anyhow::Error, path: &Path, env: &[(String, String)]) -> anyhow::Error {
    let msg = format!("{e:#}");
    let var = env.iter().map(|(var, _)| var).find(|var| {
        env_key(var).is_some_and(|key| {
            msg.match_indices(&key).any(|(i, _)| {
                // The whole key, not a prefix of another (`mqtt.port` in `mqtt.portal`).
                let before = msg[..i].chars().last();
                let after = msg[i + key.len()..].chars().next();
                !before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '.')
                    && !after.is_some_and(|c| c.is_alphanumeric() || c == '_')
            })
        })
    });
    match var {
        Some(var) => e.context(format!("set by environment variable {var}")),
        None => e.context(format!("in config file {}", path.display())),
    }
}

/// `key` must lie in `[lo, hi]` (NaN never does).
fn check_range<T: PartialOrd + std::fmt::Display>(key: &str, value: T, lo: T, hi: T) -> Result<()> {
    if !(lo <= value && value <= hi) {
        bail!("{key} must be in [{lo}, {hi}], got {value}");
    }
    Ok(())
}

/// A reconnect backoff: the first wait and its ceiling, in ms.
fn check_backoff(section: &str, initial: u64, max: u64) -> Result<()> {
    check_range(
        &format!("{section}.reconnect_initial_ms"),
        initial,
        10,
        60_000,
    )?;
    check_range(
        &format!("{section}.reconnect_max_ms"),
        max,
        initial,
        3_600_000,
    )
}

/// MQTT topics may not hold the wildcards `+` and `#` or NUL; `device_id` is one topic level,
/// so no `/` either.
fn check_topic(key: &str, value: &str, one_level: bool) -> Result<()> {
    let bad: &[char] = if one_level {
        &['+', '#', '/', '\0']
    } else {
        &['+', '#', '\0']
    };
    if value.contains(bad) {
        bail!(
            "{key} {value:?} cannot be part of an MQTT topic: no '+', '#'{} or NUL characters",
            if one_level { ", '/'" } else { "" }
        );
    }
    Ok(())
}

impl CameraSettings {
    pub fn validate(&self) -> Result<()> {
        check_range("camera.width", self.width, 32, 8192)?;
        check_range("camera.height", self.height, 32, 8192)?;
        check_range("camera.fps", self.fps, 1, 240)?;
        check_backoff("camera", self.reconnect_initial_ms, self.reconnect_max_ms)
    }
}

impl ReplaySettings {
    pub fn validate(&self) -> Result<()> {
        // 0 = as fast as the pipeline takes frames; otherwise a period of 1 ms .. 100 s.
        if self.fps != 0.0 && !(0.01..=1000.0).contains(&self.fps) {
            bail!(
                "replay.fps must be 0 (as fast as possible) or in [0.01, 1000], got {}",
                self.fps
            );
        }
        Ok(())
    }
}

impl DetectorSettings {
    /// With `model` naming one of the shipped detector files, points it at the file of
    /// `range` in the same folder (so `range = "full"` alone switches models).
    pub fn apply_range(&mut self) {
        let shipped = [
            SHORT_RANGE_DETECTOR_FILE,
            FULL_RANGE_DETECTOR_FILE,
            FAR_RANGE_DETECTOR_FILE,
        ];
        if shipped
            .iter()
            .any(|f| self.model.file_name() == Some(f.as_ref()))
        {
            self.model.set_file_name(self.range.default_file());
        }
    }

    /// The minimum face score in force: the configured one, or the range's default.
    pub fn score_threshold(&self) -> f32 {
        self.score_threshold
            .unwrap_or_else(|| self.range.default_score_threshold())
    }

    /// For the start-up log: `far (centerface.onnx), full detection on 1 frame in 5`.
    pub fn describe(&self) -> String {
        let file = self.model.file_name().unwrap_or_default().to_string_lossy();
        let mut s = format!("{} ({file})", self.range.name());
        let follow = self.following();
        if follow.is_on() {
            s += &format!(
                ", full detection on 1 frame in {}",
                follow.every.unwrap_or(0)
            );
        }
        s
    }

    /// `follow` with `every` resolved: the configured value, or the range's default.
    pub fn following(&self) -> FollowSettings {
        FollowSettings {
            every: Some(
                self.follow
                    .every
                    .unwrap_or_else(|| self.range.default_follow_every()),
            ),
            ..self.follow
        }
    }

    /// The detector that follows faces between full detections (`follow`): the short-range
    /// model from the folder of `model`, with this detector's limits and `follow.score_threshold`,
    /// following nothing itself.
    pub fn follower(&self) -> DetectorSettings {
        DetectorSettings {
            range: DetectorRange::Short,
            model: self.model.with_file_name(SHORT_RANGE_DETECTOR_FILE),
            score_threshold: Some(self.follow.score_threshold),
            reuse: SceneReuseSettings {
                max_frames: 0,
                ..self.reuse
            },
            follow: FollowSettings {
                every: Some(0),
                ..self.follow
            },
            ..self.clone()
        }
    }

    /// The ranges, checked once for the config file and for a detector built by hand.
    pub fn validate(&self) -> Result<()> {
        if let Some(t) = self.score_threshold {
            check_range("detector.score_threshold", t, 0.0, 1.0)?;
        }
        check_range("detector.max_faces", self.max_faces, 1, 100)?;
        check_range("detector.nms_iou", self.nms_iou, 0.0, 1.0)?;
        check_range("detector.min_face_size", self.min_face_size, 0.0, 1.0)?;
        check_range("detector.reuse.max_frames", self.reuse.max_frames, 0, 1000)?;
        check_grey_levels("detector.reuse.max_change", self.reuse.max_change)?;
        if let Some(every) = self.follow.every {
            check_range("detector.follow.every", every, 0, 1000)?;
        }
        check_range("detector.follow.zoom", self.follow.zoom, 1.5, 4.0)?;
        check_range(
            "detector.follow.score_threshold",
            self.follow.score_threshold,
            0.0,
            1.0,
        )
    }
}

impl ReuseSettings {
    pub fn validate(&self) -> Result<()> {
        check_range("classifier.reuse.min_iou", self.min_iou, 0.0, 1.0)?;
        check_range("classifier.reuse.max_frames", self.max_frames, 0, 1000)?;
        check_grey_levels("classifier.reuse.max_change", self.max_change)
    }
}

/// A change threshold in grey levels, `[0, 255]`.
fn check_grey_levels(key: &str, v: f32) -> Result<()> {
    if !(0.0..=255.0).contains(&v) {
        bail!("{key} must be in [0, 255] grey levels, got {v}");
    }
    Ok(())
}

impl TrackerSettings {
    pub fn validate(&self) -> Result<()> {
        if !(self.smoothing > 0.0 && self.smoothing <= 1.0) {
            bail!(
                "tracker.smoothing must be in (0, 1], got {}",
                self.smoothing
            );
        }
        check_range("tracker.iou_threshold", self.iou_threshold, 0.0, 1.0)?;
        check_range("tracker.min_margin", self.min_margin, 0.0, 1.0)?;
        check_range("tracker.min_hits", self.min_hits, 1, 1000)?;
        check_range("tracker.max_missed", self.max_missed, 0, 10_000)?;
        check_range("tracker.hold_frames", self.hold_frames, 0, 10_000)
    }
}

impl MqttSettings {
    pub fn validate(&self) -> Result<()> {
        check_range("mqtt.port", self.port, 1, u16::MAX)?;
        check_range("mqtt.keep_alive_secs", self.keep_alive_secs, 5, 65_535)?;
        check_range("mqtt.queue_capacity", self.queue_capacity, 1, 1_000_000)?;
        check_range(
            "mqtt.stats_interval_secs",
            self.stats_interval_secs,
            1,
            86_400,
        )?;
        check_backoff("mqtt", self.reconnect_initial_ms, self.reconnect_max_ms)?;
        if self.host.is_empty() {
            bail!("mqtt.host must not be empty");
        }
        if self.topic_prefix.is_empty() || self.topic_prefix.starts_with('$') {
            bail!(
                "mqtt.topic_prefix must be non-empty and not start with '$' (broker topics), got {:?}",
                self.topic_prefix
            );
        }
        check_topic("mqtt.topic_prefix", &self.topic_prefix, false)?;
        check_topic("mqtt.discovery_prefix", &self.discovery_prefix, false)?;
        if self.tls.enabled {
            crate::tls::client_config(&self.tls)?;
        }
        if self.username.is_empty() && !self.password.is_empty() {
            bail!("mqtt.password is set but mqtt.username is empty");
        }
        Ok(())
    }
}

pub fn log_level(s: &str) -> Result<log::LevelFilter> {
    s.parse::<log::LevelFilter>().map_err(|_| {
        anyhow::anyhow!("log.level {s:?} is not one of off, error, warn, info, debug, trace")
    })
}

/// Keys whose default is unset, so the serialised defaults do not show them.
const UNSET_BY_DEFAULT: &[&str] = &["detector.score_threshold", "detector.follow.every"];

/// Dotted paths of every leaf key a file may set, derived from the defaults so the list never
/// drifts from the structs.
fn known_keys() -> BTreeSet<String> {
    let value = toml::Value::try_from(Settings::default()).expect("defaults serialise");
    let mut out: BTreeSet<String> = UNSET_BY_DEFAULT.iter().map(|k| k.to_string()).collect();
    collect_keys(&value, "", &mut out);
    out
}

fn toml_keys(text: &str) -> Result<BTreeSet<String>> {
    let value: toml::Value = toml::from_str(text).context("not valid TOML")?;
    let mut out = BTreeSet::new();
    collect_keys(&value, "", &mut out);
    Ok(out)
}

fn collect_keys(value: &toml::Value, prefix: &str, out: &mut BTreeSet<String>) {
    match value {
        toml::Value::Table(t) => {
            for (k, v) in t {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                collect_keys(v, &key, out);
            }
        }
        _ => {
            out.insert(prefix.to_string());
        }
    }
}

/// `EMONET__MQTT__HOST` → `mqtt.host`.
fn env_key(var: &str) -> Option<String> {
    let rest = var.strip_prefix(ENV_PREFIX)?.strip_prefix("__")?;
    if rest.is_empty() {
        return None;
    }
    Some(
        rest.split("__")
            .map(|s| s.to_ascii_lowercase())
            .collect::<Vec<_>>()
            .join("."),
    )
}

/// Environment values are strings; give numbers and booleans their type so the typed
/// deserialisation reports a wrong value rather than a wrong type.
fn parse_env_value(v: &str) -> config::Value {
    if let Ok(b) = v.parse::<bool>() {
        return b.into();
    }
    if let Ok(i) = v.parse::<i64>() {
        return i.into();
    }
    if let Ok(f) = v.parse::<f64>() {
        return f.into();
    }
    v.to_string().into()
}

fn suggestion(key: &str, known: &BTreeSet<String>) -> String {
    let (section, leaf) = key.rsplit_once('.').unwrap_or(("", key));
    let close: Vec<&String> = known
        .iter()
        .filter(|k| {
            let (s, l) = k.rsplit_once('.').unwrap_or(("", k));
            s == section && (l.contains(leaf) || leaf.contains(l) || edit_distance(l, leaf) <= 2)
        })
        .collect();
    match close.first() {
        Some(k) => format!(" (did you mean `{k}`?)"),
        None => String::new(),
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
        std::io::Write::write_all(&mut f, text.as_bytes()).unwrap();
        f
    }

    #[test]
    fn empty_file_gives_defaults() {
        let f = write("");
        assert_eq!(
            Settings::load_with_env(f.path(), &[]).unwrap(),
            Settings::default()
        );
    }

    #[test]
    fn file_then_env_override_defaults() {
        let f = write("[mqtt]\nhost = \"broker.lan\"\nport = 1884\n");
        let env = vec![("EMONET__MQTT__PORT".to_string(), "1999".to_string())];
        let s = Settings::load_with_env(f.path(), &env).unwrap();
        assert_eq!(s.mqtt.host, "broker.lan");
        assert_eq!(s.mqtt.port, 1999);
        assert_eq!(s.camera, CameraSettings::default());
    }

    #[test]
    fn unknown_key_names_key_and_file() {
        let f = write("[mqtt]\nhots = \"x\"\n");
        let err = format!("{:#}", Settings::load_with_env(f.path(), &[]).unwrap_err());
        assert!(err.contains("mqtt.hots"), "{err}");
        assert!(err.contains(&f.path().display().to_string()), "{err}");
        assert!(err.contains("mqtt.host"), "suggestion missing: {err}");
    }

    #[test]
    fn unknown_env_key_names_variable() {
        let f = write("");
        let env = vec![("EMONET__MQTT__PROT".to_string(), "1".to_string())];
        let err = format!("{:#}", Settings::load_with_env(f.path(), &env).unwrap_err());
        assert!(err.contains("EMONET__MQTT__PROT"), "{err}");
    }

    #[test]
    fn wrong_type_names_key() {
        let f = write("[mqtt]\nport = \"eighteen\"\n");
        let err = format!("{:#}", Settings::load_with_env(f.path(), &[]).unwrap_err());
        assert!(err.contains("port"), "{err}");
        assert!(err.contains(&f.path().display().to_string()), "{err}");
    }

    #[test]
    fn bad_value_is_rejected() {
        let f = write("[tracker]\nsmoothing = 1.5\n");
        let err = format!("{:#}", Settings::load_with_env(f.path(), &[]).unwrap_err());
        assert!(err.contains("tracker.smoothing"), "{err}");
        let f = write("[camera]\nsource = \"webcam\"\n");
        let err = format!("{:#}", Settings::load_with_env(f.path(), &[]).unwrap_err());
        assert!(err.contains("webcam"), "{err}");
    }

    #[test]
    fn classifier_reuse_nested_table_env_and_bounds() {
        let f = write("[classifier.reuse]\nmax_frames = 5\n");
        let env = vec![(
            "EMONET__CLASSIFIER__REUSE__MIN_IOU".to_string(),
            "0.5".to_string(),
        )];
        let s = Settings::load_with_env(f.path(), &env).unwrap();
        assert_eq!(s.classifier.reuse.max_frames, 5);
        assert_eq!(s.classifier.reuse.min_iou, 0.5);
        assert_eq!(s.classifier.reuse.max_change, 2.0);
        let f = write("[classifier.reuse]\nmin_iou = 1.5\n");
        let err = format!("{:#}", Settings::load_with_env(f.path(), &[]).unwrap_err());
        assert!(err.contains("classifier.reuse.min_iou"), "{err}");
        let f = write("[classifier.reuse]\nmax_frame = 1\n");
        let err = format!("{:#}", Settings::load_with_env(f.path(), &[]).unwrap_err());
        assert!(err.contains("classifier.reuse.max_frame"), "{err}");
        assert!(err.contains("classifier.reuse.max_frames"), "{err}");
    }

    #[test]
    fn detector_reuse_table_env_and_bounds() {
        assert_eq!(Settings::default().detector.reuse.max_frames, 2);
        let f = write("[detector.reuse]\nmax_change = 4.5\n");
        let env = vec![(
            "EMONET__DETECTOR__REUSE__MAX_FRAMES".to_string(),
            "0".to_string(),
        )];
        let s = Settings::load_with_env(f.path(), &env).unwrap();
        assert_eq!(
            (s.detector.reuse.max_frames, s.detector.reuse.max_change),
            (0, 4.5)
        );
        let f = write("[detector.reuse]\nmax_change = 300\n");
        let err = format!("{:#}", Settings::load_with_env(f.path(), &[]).unwrap_err());
        assert!(err.contains("detector.reuse.max_change"), "{err}");
        assert!(err.contains("300"), "{err}");
    }

    #[test]
    fn detector_follow_table_bounds_and_follower() {
        let f = write("[detector]\nrange = \"far\"\n[detector.follow]\nevery = 5\nzoom = 2.5\n");
        let s = Settings::load_with_env(f.path(), &[]).unwrap();
        assert_eq!(
            (s.detector.follow.every, s.detector.follow.zoom),
            (Some(5), 2.5)
        );
        // The follower is the short-range file beside the far one, following nothing itself.
        let follower = s.detector.follower();
        assert_eq!(follower.range, DetectorRange::Short);
        assert_eq!(
            follower.model,
            s.detector.model.with_file_name(SHORT_RANGE_DETECTOR_FILE)
        );
        assert_eq!(follower.score_threshold(), 0.4);
        assert_eq!(
            (follower.follow.every, follower.reuse.max_frames),
            (Some(0), 0)
        );
        for (toml, key) in [
            ("every = 5000", "detector.follow.every"),
            ("zoom = 1.0", "detector.follow.zoom"),
            ("score_threshold = 2.0", "detector.follow.score_threshold"),
        ] {
            let f = write(&format!("[detector.follow]\n{toml}\n"));
            let err = format!("{:#}", Settings::load_with_env(f.path(), &[]).unwrap_err());
            assert!(err.contains(key), "{err}");
        }
    }

    /// `far` (the default) is followed between full detections unless `every` says otherwise;
    /// the BlazeFace ranges follow nothing unless asked to.
    #[test]
    fn follow_every_defaults_to_the_ranges_and_an_explicit_value_wins() {
        let d = Settings::default().detector;
        assert_eq!(d.range, DetectorRange::Far);
        assert_eq!(d.model.file_name().unwrap(), FAR_RANGE_DETECTOR_FILE);
        assert_eq!(
            (d.following().every, d.following().is_on()),
            (Some(5), true)
        );
        assert_eq!(
            d.describe(),
            "far (centerface.onnx), full detection on 1 frame in 5"
        );
        for (toml, every) in [
            ("", 5),
            ("range = \"short\"\n", 0),
            ("range = \"full\"\n", 0),
            ("range = \"far\"\n", 5),
            ("range = \"far\"\n[detector.follow]\nevery = 0\n", 0),
            ("[detector.follow]\nevery = 3\n", 3),
        ] {
            let f = write(&format!("[detector]\n{toml}"));
            let s = Settings::load_with_env(f.path(), &[]).unwrap();
            assert_eq!(s.detector.following().every, Some(every), "{toml}");
        }
        let f = write("[detector]\nrange = \"far\"\n");
        let s = Settings::load_with_env(f.path(), &[]).unwrap();
        assert_eq!(
            s.detector.describe(),
            "far (centerface.onnx), full detection on 1 frame in 5"
        );
    }

    #[test]
    fn detector_range_picks_file_and_default_threshold() {
        let f = write("[detector]\nrange = \"far\"\n");
        let s = Settings::load_with_env(f.path(), &[]).unwrap();
        assert_eq!(
            s.detector.model.file_name().unwrap(),
            FAR_RANGE_DETECTOR_FILE
        );
        assert_eq!(s.detector.score_threshold(), 0.5);
        let f = write("[detector]\nrange = \"short\"\n");
        let s = Settings::load_with_env(f.path(), &[]).unwrap();
        assert_eq!(
            s.detector.model.file_name().unwrap(),
            SHORT_RANGE_DETECTOR_FILE
        );
        assert_eq!(s.detector.score_threshold(), 0.6);
        let f = write("[detector]\nrange = \"far\"\nscore_threshold = 0.7\n");
        let s = Settings::load_with_env(f.path(), &[]).unwrap();
        assert_eq!(s.detector.score_threshold(), 0.7);
        let f = write("[detector]\nscore_threshold = 1.7\n");
        let err = format!("{:#}", Settings::load_with_env(f.path(), &[]).unwrap_err());
        assert!(err.contains("detector.score_threshold"), "{err}");
        let f = write("[detector]\nrange = \"near\"\n");
        let err = format!("{:#}", Settings::load_with_env(f.path(), &[]).unwrap_err());
        assert!(err.contains("near"), "{err}");
    }

    #[test]
    fn env_key_mapping() {
        assert_eq!(env_key("EMONET__MQTT__HOST").as_deref(), Some("mqtt.host"));
        assert_eq!(env_key("EMONET__DEVICE_ID").as_deref(), Some("device_id"));
        assert_eq!(env_key("EMONETX"), None);
    }
}
