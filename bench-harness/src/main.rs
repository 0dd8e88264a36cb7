//! `rill-bench`: runs OpenMessaging Benchmark (OMB) workloads against Rill and reports
//! throughput and tail latency next to the configuration that produced them.
//!
//! `rill-bench run` reads an OMB workload file as is (`workload`), lays out producers and
//! consumers as OMB does (`plan`), drives them open loop with intended send times through a
//! driver (`driver`, `actors`, `run`) and prints the merged histograms (`stats`, `report`).
//! This file is the edge: command line, `anyhow` errors, exit code.
//!
//! Exit code: 0 when the run had no errors and every subscription received every message;
//! 1 when the run finished but did not pass; 2 when it could not run.

mod actors;
mod driver;
mod keys;
mod payload;
mod plan;
mod progress;
mod report;
mod run;
mod schedule;
mod stats;
mod workload;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};

use driver::embedded::{EmbeddedDriver, EmbeddedSettings};
use driver::Driver;
use report::Report;
use run::RunSettings;
use workload::Workload;

/// The workload run when none is named, relative to the bench-harness crate.
const DEFAULT_WORKLOAD: &str = "workloads/1-topic-16-partitions-1kb.yaml";
/// How long the end of a run waits for consumers to receive everything.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
const SECONDS_PER_MINUTE: u64 = 60;

#[derive(Debug, Parser)]
#[command(name = "rill-bench", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run an OMB workload against an embedded Rill engine.
    Run(RunArgs),
}

#[derive(Debug, Args)]
struct RunArgs {
    /// OMB workload file (YAML). Default: bench-harness/workloads/1-topic-16-partitions-1kb.yaml
    #[arg(long, value_name = "FILE")]
    workload: Option<PathBuf>,
    /// Measured duration in seconds (overrides testDurationMinutes).
    #[arg(long, value_name = "SECS")]
    duration: Option<u64>,
    /// Warm-up in seconds, excluded from the results (overrides warmupDurationMinutes).
    #[arg(long, value_name = "SECS")]
    warmup: Option<u64>,
    /// Messages per second over all producers; 0 = as fast as possible (overrides producerRate).
    #[arg(long, value_name = "MSGS_PER_SEC")]
    rate: Option<u64>,
    /// Engine data directory. Default: a fresh temporary directory, removed afterwards.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// What an ack promises: buffer, sync or interval:MS.
    #[arg(long, default_value = "buffer", value_parser = parse_durability)]
    durability: rill::Durability,
    /// Engine shards. Default: one per core.
    #[arg(long, value_name = "N")]
    shards: Option<usize>,
    /// Do not pin shard threads to cores.
    #[arg(long)]
    no_pin_shards: bool,
    /// Microseconds an idle shard polls its rings before sleeping. Default: the engine's.
    #[arg(long, value_name = "MICROSECONDS")]
    idle_spin_us: Option<u64>,
    /// Use idempotent producers (producer id, epoch and per-partition sequence per record).
    #[arg(long)]
    idempotent: bool,
    /// Also write the results as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Threads the producer actors are spread over.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    producer_threads: u16,
    /// Threads the consumer actors are spread over.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    consumer_threads: u16,
    /// Seed for payloads, keys and payload choice.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

fn parse_durability(text: &str) -> Result<rill::Durability, String> {
    rill::Durability::parse(text)
}

/// The default workload: from the current directory (repository root or crate), else from
/// the crate's own directory as it was built.
fn default_workload_path() -> PathBuf {
    let candidates = [
        Path::new("bench-harness").join(DEFAULT_WORKLOAD),
        PathBuf::from(DEFAULT_WORKLOAD),
    ];
    candidates
        .into_iter()
        .find(|path| path.is_file())
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(DEFAULT_WORKLOAD))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Run(arguments) => run_command(arguments),
    };
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(error) => {
            eprintln!("rill-bench: error: {error:#}");
            ExitCode::from(2)
        }
    }
}

/// Runs a workload; `Ok(passed)`.
fn run_command(arguments: RunArgs) -> anyhow::Result<bool> {
    let workload_path = arguments.workload.unwrap_or_else(default_workload_path);
    let loaded = Workload::load(&workload_path)?;
    let workload = &loaded.workload;
    let test_duration = Duration::from_secs(
        arguments
            .duration
            .unwrap_or(workload.test_duration_minutes as u64 * SECONDS_PER_MINUTE),
    );
    if test_duration.is_zero() {
        bail!(
            "the measured duration is 0: testDurationMinutes is {} and no --duration was given",
            workload.test_duration_minutes
        );
    }
    let warmup_duration = Duration::from_secs(
        arguments
            .warmup
            .unwrap_or(workload.warmup_duration_minutes as u64 * SECONDS_PER_MINUTE),
    );
    let settings = RunSettings {
        test_duration,
        warmup_duration,
        rate_messages_per_second: arguments
            .rate
            .unwrap_or(workload.producer_rate_messages_per_second),
        producer_threads: arguments.producer_threads as usize,
        consumer_threads: arguments.consumer_threads as usize,
        drain_timeout: DRAIN_TIMEOUT,
        seed: arguments.seed,
        loaded,
    };

    // The temporary directory (if any) outlives the engine and is removed when dropped.
    let (data_dir, _temporary) = match arguments.data_dir {
        Some(directory) => (directory, None),
        None => {
            let temporary = tempfile::Builder::new()
                .prefix("rill-bench-")
                .tempdir()
                .context("cannot create a temporary data directory")?;
            (temporary.path().to_path_buf(), Some(temporary))
        }
    };
    let driver = EmbeddedDriver::open(&EmbeddedSettings {
        data_dir,
        durability: arguments.durability,
        shards: arguments.shards,
        pin_shards: !arguments.no_pin_shards,
        idle_spin: arguments.idle_spin_us.map(std::time::Duration::from_micros),
        idempotent: arguments.idempotent,
    })?;
    eprintln!(
        "rill-bench: workload {:?} ({}), {} s warm-up + {} s measured, driver {}",
        settings.loaded.workload.name,
        settings.loaded.path.display(),
        warmup_duration.as_secs(),
        test_duration.as_secs(),
        driver.name(),
    );
    let outcome = run::run(&driver, &settings);
    let driver_name = driver.name();
    let driver_settings = driver.settings();
    driver.shutdown();
    let result = outcome?;

    let report = Report::new(&settings, driver_name, driver_settings, &result);
    print!("{}", report.render());
    if let Some(path) = &arguments.json {
        report
            .write_json(path)
            .with_context(|| format!("cannot write {}", path.display()))?;
        println!("json: {}", path.display());
    }
    Ok(report.passed())
}
