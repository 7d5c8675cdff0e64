//! The `emonet` command line: a thin layer over the library.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use emonet::config::{Settings, DEFAULT_CONFIG_PATH};

#[derive(Parser)]
#[command(
    name = "emonet",
    version,
    about = "Facial emotion recognition on the device: camera -> faces -> emotions -> MQTT"
)]
struct Cli {
    /// Log level (error, warn, info, debug, trace); default from the config's log.level.
    #[arg(long, global = true)]
    log_level: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon: capture, detect, classify, track, publish over MQTT.
    Run {
        #[command(flatten)]
        config: ConfigArg,
        /// Also subscribe to this device's topics and print what the broker delivers.
        #[arg(long)]
        watch: bool,
    },
    /// Validate the config, load the models and print the effective configuration.
    Check(ConfigArg),
    /// List V4L2 capture devices and their formats.
    Devices,
    /// Detect faces and classify their emotions in image files (one JSON line per image).
    Classify(emonet::classify_cmd::ClassifyArgs),
    /// Score the emotion model on a class-per-folder data set.
    Eval(emonet::eval::EvalArgs),
    /// Replay frames through the whole pipeline and report per-stage latency, fps and peak RSS.
    Bench(emonet::bench::BenchArgs),
    /// Subscribe to a broker and print emonet messages readably.
    Watch(WatchArgs),
    /// Run only the embedded MQTT broker (rumqttd), for boards without mosquitto.
    Broker {
        #[arg(long, default_value = "127.0.0.1:1883")]
        listen: String,
    },
}

#[derive(clap::Args)]
struct ConfigArg {
    /// TOML config file; EMONET__SECTION__KEY environment variables override it.
    #[arg(long, short, default_value = DEFAULT_CONFIG_PATH, env = "EMONET_CONFIG")]
    config: PathBuf,
}

#[derive(clap::Args)]
struct WatchArgs {
    #[arg(long, default_value = "localhost")]
    host: String,
    #[arg(long, default_value_t = 1883)]
    port: u16,
    /// Topic filter.
    #[arg(long, default_value = "emonet/#")]
    topic: String,
    /// Print topic and raw payload instead of a readable line.
    #[arg(long)]
    raw: bool,
    /// Exit after this many messages.
    #[arg(long)]
    count: Option<usize>,
}

fn load_settings(path: &Path) -> Result<Settings> {
    let mut s = Settings::load(path)?;
    s.resolve_paths(path);
    Ok(s)
}

fn init_logging(cli_level: Option<&str>, config_level: &str) -> Result<()> {
    let level = emonet::config::log_level(cli_level.unwrap_or(config_level))?;
    emonet::logging::init(level)
}

fn real_main(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Run { config: c, watch } => {
            let settings = load_settings(&c.config)?;
            init_logging(cli.log_level.as_deref(), &settings.log.level)?;
            emonet::daemon::run(settings, watch)
        }
        Command::Check(c) => {
            let settings = load_settings(&c.config)?;
            init_logging(cli.log_level.as_deref(), &settings.log.level)?;
            let pipeline = emonet::pipeline::Pipeline::load(&settings)?;
            let source = emonet::daemon::open_source(&settings)?;
            println!("# config {} is valid", c.config.display());
            println!("# device_id = {:?}", settings.device_id());
            println!("# source: {}", source.describe());
            let meta = pipeline.classifier.meta();
            println!(
                "# classifier: {} ({} classes: {})",
                meta.name,
                meta.labels.len(),
                meta.labels.join(", ")
            );
            println!("# {}", emonet::cpu::summary());
            print!("{}", settings.to_toml_masked());
            Ok(())
        }
        Command::Devices => {
            init_logging(cli.log_level.as_deref(), "warn")?;
            let devices = emonet::camera::list_devices();
            if devices.is_empty() {
                println!(
                    "no V4L2 devices found (no /dev/video* nodes, or no permission to see them)"
                );
            }
            for d in devices {
                println!("{} — {}", d.path.display(), d.name);
                for f in d.formats {
                    println!("    {f}");
                }
            }
            Ok(())
        }
        Command::Classify(args) => {
            init_logging(cli.log_level.as_deref(), "warn")?;
            emonet::classify_cmd::run(&args)
        }
        Command::Eval(args) => {
            init_logging(cli.log_level.as_deref(), "warn")?;
            emonet::eval::run(&args)
        }
        Command::Bench(args) => {
            init_logging(cli.log_level.as_deref(), "warn")?;
            emonet::bench::run(&args)
        }
        Command::Broker { listen } => {
            init_logging(cli.log_level.as_deref(), "info")?;
            emonet::broker::start_embedded(&listen)?;
            let (tx, rx) = std::sync::mpsc::channel();
            let mut signals = signal_hook::iterator::Signals::new([
                signal_hook::consts::SIGTERM,
                signal_hook::consts::SIGINT,
            ])?;
            std::thread::spawn(move || {
                let _ = signals.forever().next();
                let _ = tx.send(());
            });
            let _ = rx.recv();
            Ok(())
        }
        Command::Watch(w) => {
            init_logging(cli.log_level.as_deref(), "warn")?;
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            rt.block_on(async {
                tokio::select! {
                    r = emonet::mqtt::watch(&w.host, w.port, &w.topic, w.raw, w.count) => r,
                    _ = tokio::signal::ctrl_c() => Ok(()),
                }
            })
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match real_main(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("emonet: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
