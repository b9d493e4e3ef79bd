//! `memwarden`: the command-line face of memwarden-core.

mod analyze;
mod demo;
mod monitor;
mod plot;
mod serve;

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use memwarden_core::{MemoryManager, format_size};
use serde_json::Value;

#[derive(Parser)]
#[command(name = "memwarden", version, about = "Memory monitoring and management toolkit", after_help = EXIT_CODES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The exit-code rule, shown by `memwarden --help` (and in README).
const EXIT_CODES: &str = "Exit status (every subcommand):
  0  success
  1  bad input or a failed run: a bad --config, pid, interval or threshold value, a file that
     cannot be read or written, an export that is empty, truncated or not memwarden's
  2  usage error, from the argument parser: an unknown subcommand or flag, a missing argument,
     a value the parser rejects (--format xml, --size 5)
  monitor -- CMD exits with CMD's own status (128 + signal when a signal ended it)";

#[derive(Subcommand)]
enum Command {
    /// Print memory usage, the limit and where it came from, the state and PSI pressure.
    Status {
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
        /// A MemoryManager config as JSON (the seed's keys), e.g. '{"memory_limit": "512M"}'.
        #[arg(long)]
        config: Option<String>,
    },
    /// Sample the memory of a pid, a command it starts (`-- CMD ARGS`) or the whole system.
    Monitor(Box<monitor::MonitorArgs>),
    /// Report average, peak, efficiency, spikes and the leak trend of a `monitor --export` file.
    Analyze(analyze::AnalyzeArgs),
    /// Draw a `monitor --export` file as an SVG or PNG chart: the series, limit, threshold and spikes.
    Plot(plot::PlotArgs),
    /// Process an SQLite table of a million rows in chunks while memwarden watches; print a
    /// summary and write an analysis and a chart.
    Demo(demo::DemoArgs),
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Table,
    Json,
}

/// A failure to report: the message for stderr and the exit code.
pub struct Fail {
    pub code: u8,
    pub message: String,
}

impl Fail {
    /// Bad input or a failed run of monitor/analyze/plot: exit code 1.
    pub fn new(message: impl Into<String>) -> Self {
        Fail { code: 1, message: message.into() }
    }
}

impl From<memwarden_core::Error> for Fail {
    fn from(e: memwarden_core::Error) -> Self {
        Fail::new(e.message().to_owned())
    }
}

fn main() -> ExitCode {
    // A bug must not show users a backtrace: one line naming it instead.
    std::panic::set_hook(Box::new(|info| {
        eprintln!("memwarden: internal error: {info}; please report it");
    }));
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Status { format, config } => {
            status(format, config).map(|()| ExitCode::SUCCESS).map_err(|e| Fail::new(e.message().to_owned()))
        }
        Command::Monitor(args) => monitor::run(*args),
        Command::Analyze(args) => analyze::run(args).map(|()| ExitCode::SUCCESS),
        Command::Plot(args) => plot::run(args).map(|()| ExitCode::SUCCESS),
        Command::Demo(args) => demo::run(args).map(|()| ExitCode::SUCCESS),
    };
    match result {
        Ok(code) => code,
        Err(f) => {
            eprintln!("memwarden: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

fn status(format: Format, config: Option<String>) -> memwarden_core::Result<()> {
    let cfg = memwarden_core::config::parse_json("MemoryManager", config.as_deref().unwrap_or(""))?;
    let manager = MemoryManager::from_json(&cfg)?;
    manager.check()?;
    let stats = manager.get_detailed_stats()?;
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&stats).expect("stats serialize")),
        Format::Table => println!("{}", status_table(&stats)),
    }
    Ok(())
}

fn status_table(s: &Value) -> Table {
    let mb = |v: &Value| format!("{:.1} MB", v.as_f64().unwrap_or(0.0));
    let u = &s["usage"];
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED).set_header(vec!["memwarden status", ""]);
    t.add_row(vec!["Current".to_string(), mb(&u["current_mb"])]);
    t.add_row(vec!["Peak".to_string(), mb(&u["peak_mb"])]);
    let limit = &s["limit"];
    t.add_row(vec![
        "Limit".to_string(),
        format!(
            "{} ({}) from {}",
            mb(&limit["mb"]),
            format_size(limit["bytes"].as_u64().unwrap_or(0)),
            limit["origin"].as_str().unwrap_or("?")
        ),
    ]);
    t.add_row(vec!["Usage".to_string(), format!("{:.2} %", u["usage_percent"].as_f64().unwrap_or(0.0))]);
    t.add_row(vec!["State".to_string(), s["state"].as_str().unwrap_or("?").to_string()]);
    t.add_row(vec!["Source".to_string(), s["source"].as_str().unwrap_or("?").to_string()]);
    let th = &s["thresholds"];
    t.add_row(vec![
        "Thresholds".to_string(),
        format!(
            "warning {} / critical {} / emergency {}",
            th["warning_threshold"], th["critical_threshold"], th["emergency_threshold"]
        ),
    ]);
    let psi = |p: &Value| format!("avg10 {} avg60 {} avg300 {}", p["avg10"], p["avg60"], p["avg300"]);
    match &s["psi"] {
        Value::Null => {
            t.add_row(vec!["PSI".to_string(), "not available on this kernel".to_string()]);
        }
        p => {
            t.add_row(vec!["PSI some".to_string(), psi(&p["some"])]);
            if !p["full"].is_null() {
                t.add_row(vec!["PSI full".to_string(), psi(&p["full"])]);
            }
        }
    }
    t
}
