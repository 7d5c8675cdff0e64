//! The command line: each subcommand's clap arguments and its function. `src/main.rs` parses
//! [`Cli`] and calls one function per subcommand. The daemon itself ([`crate::daemon`]) never
//! uses this module; the tools here (bench, eval, classify, watch) use the pipeline modules.

pub mod bench;
pub mod classify;
pub mod eval;
pub mod metrics;
pub mod watch;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use crate::config::{Settings, DEFAULT_CONFIG_PATH};
use crate::daemon::Shutdown;

#[derive(Parser)]
#[command(
    name = "emonet",
    version,
    about = "Facial emotion recognition on the device: camera -> faces -> emotions -> MQTT"
)]
pub struct Cli {
    /// Log level (error, warn, info, debug, trace); default from the config's log.level.
    #[arg(long, global = true)]
    pub log_level: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the daemon: capture, detect, classify, track, publish over MQTT.
    Run(RunArgs),
    /// Validate the config, load the models and print the effective configuration.
    Check(ConfigArg),
    /// List V4L2 capture devices and their formats.
    Devices,
    /// Detect faces and classify their emotions in image files (one JSON line per image).
    Classify(classify::ClassifyArgs),
    /// Score the emotion model on a class-per-folder data set.
    Eval(eval::EvalArgs),
    /// Replay frames through the whole pipeline and report per-stage latency, fps and peak RSS.
    Bench(bench::BenchArgs),
    /// Subscribe to a broker and print emonet messages readably.
    Watch(watch::WatchArgs),
    /// Run only the embedded MQTT broker (rumqttd), for boards without mosquitto.
    Broker(BrokerArgs),
}

#[derive(clap::Args)]
pub struct ConfigArg {
    /// TOML config file; EMONET__SECTION__KEY environment variables override it.
    #[arg(long, short, default_value = DEFAULT_CONFIG_PATH, env = "EMONET_CONFIG")]
    pub config: PathBuf,
}

#[derive(clap::Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Also subscribe to this device's topics and print what the broker delivers.
    #[arg(long)]
    pub watch: bool,
}

#[derive(clap::Args)]
pub struct BrokerArgs {
    #[arg(long, default_value = "127.0.0.1:1883")]
    pub listen: String,
}

impl Command {
    /// The config file of the subcommands that read one.
    pub fn config_path(&self) -> Option<&Path> {
        match self {
            Command::Run(a) => Some(&a.config.config),
            Command::Check(c) => Some(&c.config),
            _ => None,
        }
    }

    /// The log level without `--log-level` (subcommands with a config use its `log.level`).
    pub fn default_log_level(&self) -> &'static str {
        match self {
            Command::Broker(_) => "info",
            _ => "warn",
        }
    }
}

/// Reads the config file, with relative paths resolved against its folder.
pub fn load_settings(path: &Path) -> Result<Settings> {
    let mut s = Settings::load(path)?;
    s.resolve_paths(path);
    Ok(s)
}

pub fn init_logging(cli_level: Option<&str>, default_level: &str) -> Result<()> {
    let level = crate::config::log_level(cli_level.unwrap_or(default_level))?;
    crate::logging::init(level)
}

/// `emonet run`: the daemon, and with `--watch` a subscriber printing what the broker delivers
/// (the demo's "see it work" mode).
pub fn run(args: &RunArgs, settings: Settings) -> Result<()> {
    if args.watch {
        let w = watch::WatchArgs {
            host: settings.mqtt.host.clone(),
            port: settings.mqtt.port,
            topic: format!("{}/{}/#", settings.mqtt.topic_prefix, settings.device_id()),
            raw: false,
            count: None,
        };
        std::thread::Builder::new()
            .name("emonet-watch".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build();
                match rt
                    .map_err(anyhow::Error::from)
                    .and_then(|rt| rt.block_on(watch::watch(&w)))
                {
                    Ok(()) => {}
                    Err(e) => log::warn!("--watch: {e:#}"),
                }
            })?;
    }
    crate::daemon::run(settings, Shutdown::new())
}

/// `emonet check`: loads everything `run` would and prints the effective configuration.
pub fn check(args: &ConfigArg, settings: &Settings) -> Result<()> {
    let pipeline = crate::pipeline::Pipeline::load(settings)?;
    let source = crate::daemon::open_source(settings)?;
    println!("# config {} is valid", args.config.display());
    println!("# device_id = {:?}", settings.device_id());
    println!("# source: {}", source.describe());
    let meta = pipeline.classifier.meta();
    println!(
        "# classifier: {} ({} classes: {})",
        meta.name,
        meta.labels.len(),
        meta.labels.join(", ")
    );
    println!("# {}", crate::cpu::summary());
    print!("{}", settings.to_toml_masked());
    Ok(())
}

/// `emonet devices`: the V4L2 capture devices and their formats.
pub fn devices() -> Result<()> {
    let devices = crate::camera::list_devices();
    if devices.is_empty() {
        println!("no V4L2 devices found (no /dev/video* nodes, or no permission to see them)");
    }
    for d in devices {
        println!("{} — {}", d.path.display(), d.name);
        for f in d.formats {
            println!("    {f}");
        }
    }
    Ok(())
}

/// `emonet broker`: the embedded broker until SIGTERM or SIGINT.
pub fn broker(args: &BrokerArgs) -> Result<()> {
    crate::broker::start_embedded(&args.listen)?;
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
    ])
    .context("cannot install the signal handlers")?;
    let _ = signals.forever().next();
    Ok(())
}
