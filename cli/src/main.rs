//! `memwarden`: the command-line face of memwarden-core.

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use memwarden_core::{MemoryManager, format_size};
use serde_json::Value;

#[derive(Parser)]
#[command(name = "memwarden", version, about = "Memory monitoring and management toolkit")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

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
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Table,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("memwarden: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> memwarden_core::Result<()> {
    match cli.command {
        Command::Status { format, config } => {
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
    }
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
