//! `memwarden analyze FILE`: the seed's report on a `monitor --export` file.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use memwarden_core::monitor::{
    Analysis, EFFICIENCY_DEFINITION, Export, LEAK_DEFINITION, SPIKE_DEFINITION, analyze, mb, read_export,
};
use serde_json::json;

use crate::Fail;
use crate::monitor::utc;

#[derive(Args)]
pub struct AnalyzeArgs {
    /// A file written by `memwarden monitor --export`.
    file: PathBuf,
    /// Report format.
    #[arg(long, value_enum, default_value_t = ReportFormat::Table)]
    format: ReportFormat,
    /// Also print how efficiency, spikes and the leak trend are defined.
    #[arg(long, short)]
    verbose: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum ReportFormat {
    Table,
    Json,
}

pub fn run(args: AnalyzeArgs) -> Result<(), Fail> {
    let export = read_export(&args.file)?;
    let a = analyze(&export.samples);
    match args.format {
        ReportFormat::Json => {
            let mut v = json!({"file": args.file.display().to_string(), "meta": export.meta, "analysis": a});
            if args.verbose {
                v["definitions"] =
                    json!({"efficiency": EFFICIENCY_DEFINITION, "spike": SPIKE_DEFINITION, "leak": LEAK_DEFINITION});
            }
            println!("{}", serde_json::to_string_pretty(&v).expect("analysis serializes"));
        }
        ReportFormat::Table => print!("{}", report(&export, &a, args.verbose)),
    }
    Ok(())
}

pub(crate) fn report(e: &Export, a: &Analysis, verbose: bool) -> String {
    let m = &e.meta;
    let mut s = String::from("Memory Usage Analysis Report\n============================\n");
    s += &format!(
        "Target: {}, limit {:.1} MB from {}, started {} UTC\n",
        m.target,
        mb(m.limit_bytes),
        m.limit_origin,
        utc(m.started_unix_ms)
    );
    s += &format!("Samples: {} over {:.1} s (every {} s)\n", a.samples, a.duration_s, m.interval);
    if a.samples == 0 {
        s += "No samples: nothing to analyze.\n";
        return s;
    }
    s += &format!("Average Usage: {:.1} MB\n", a.average_mb);
    s += &format!("Peak Usage: {:.1} MB\n", a.peak_mb);
    s += &format!("Memory Efficiency: {:.1}%\n", a.efficiency_percent);
    let issues = a.spikes.len();
    s += &format!("Potential Issues: {issues} memory spike{} detected\n", if issues == 1 { "" } else { "s" });
    for sp in &a.spikes {
        s += &format!("  at {:.1} s: {:.1} MB ({:+.1} MB above the rolling median)\n", sp.t, sp.mb, sp.jump_mb);
    }
    match &a.leak {
        Some(l) => s += &format!("Leak Trend: {:+.3} MB/min (R² {:.2})\n  {}\n", l.slope_mb_per_min, l.r2, l.sentence),
        None => s += "Leak Trend: too few samples for a trend\n",
    }
    if verbose {
        s += &format!("\nDefinitions\n  {EFFICIENCY_DEFINITION}\n  {SPIKE_DEFINITION}\n  {LEAK_DEFINITION}\n");
    }
    s
}
