//! The `emonet` command line: parses the arguments, sets up logging once, and calls one
//! function per subcommand (they live in `emonet::cli`).

use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;

use emonet::alloc::LargeBlockPool;
use emonet::cli::{self, Cli, Command};

/// Large blocks (tract's activations, model weights) from a pool that keeps its pages between
/// frames; see `emonet::alloc`.
#[global_allocator]
static ALLOCATOR: LargeBlockPool = LargeBlockPool;

fn real_main(cli: Cli) -> Result<()> {
    let settings = cli
        .command
        .config_path()
        .map(cli::load_settings)
        .transpose()?;
    let default_level = settings
        .as_ref()
        .map_or(cli.command.default_log_level(), |s| s.log.level.as_str());
    cli::init_logging(cli.log_level.as_deref(), default_level)?;
    let loaded = || settings.clone().expect("run and check load their config");
    match &cli.command {
        Command::Run(args) => cli::run(args, loaded()),
        Command::Check(args) => cli::check(args, &loaded()),
        Command::Devices => cli::devices(),
        Command::Classify(args) => cli::classify::run(args),
        Command::Eval(args) => cli::eval::run(args),
        Command::Bench(args) => cli::bench::run(args),
        Command::Watch(args) => cli::watch::run(args),
        Command::Broker(args) => cli::broker(args),
    }
}

fn main() -> ExitCode {
    match real_main(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("emonet: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
