//! `memwarden plot FILE -o chart.svg`: the series with the limit, the threshold and spikes.

use std::path::PathBuf;

use clap::Args;
use memwarden_core::monitor::{analyze, mb, read_export};
use plotters::prelude::*;

use crate::Fail;

#[derive(Args)]
pub struct PlotArgs {
    /// A file written by `memwarden monitor --export`.
    file: PathBuf,
    /// Where to write the SVG chart.
    #[arg(short, long, value_name = "FILE")]
    output: PathBuf,
}

pub fn run(args: PlotArgs) -> Result<(), Fail> {
    let export = read_export(&args.file)?;
    if export.samples.is_empty() {
        return Err(Fail::new(format!("'{}' has no samples to plot", args.file.display())));
    }
    let svg = render(&export)?;
    std::fs::write(&args.output, svg)
        .map_err(|e| Fail::new(format!("cannot write chart '{}': {e}", args.output.display())))?;
    Ok(())
}

pub(crate) fn render(export: &memwarden_core::monitor::Export) -> Result<String, Fail> {
    let samples = &export.samples;
    let meta = &export.meta;
    let a = analyze(samples);
    let limit = mb(meta.limit_bytes);
    let threshold = limit * meta.threshold / 100.0;
    let t_end = samples.last().map_or(1.0, |s| s.t).max(samples[0].t + 1e-3);
    // The limit is drawn when it is within reach of the data; a limit far above it (physical
    // memory for a small process) would flatten the series, so it is named in the caption instead.
    let data_top = a.peak_mb.max(1e-3) * 1.15;
    let show_limit = limit <= data_top * 4.0;
    let y_top = if show_limit { limit * 1.05 } else { data_top };
    let caption = if show_limit {
        format!("memwarden monitor: {}", meta.target)
    } else {
        format!("memwarden monitor: {} (limit {:.0} MB, off the chart)", meta.target, limit)
    };
    let fail = |e: &dyn std::fmt::Display| Fail::new(format!("cannot draw the chart: {e}"));
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (1000, 500)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| fail(&e))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(caption, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(samples[0].t..t_end, 0.0..y_top)
            .map_err(|e| fail(&e))?;
        chart.configure_mesh().x_desc("seconds since start").y_desc("MB").draw().map_err(|e| fail(&e))?;
        chart
            .draw_series(LineSeries::new(samples.iter().map(|s| (s.t, mb(s.current_bytes))), BLUE.stroke_width(2)))
            .map_err(|e| fail(&e))?
            .label("current")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
        chart
            .draw_series(LineSeries::new(samples.iter().map(|s| (s.t, mb(s.peak_bytes))), CYAN))
            .map_err(|e| fail(&e))?
            .label("peak")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], CYAN));
        let hline = |v: f64| vec![(samples[0].t, v), (t_end, v)];
        if threshold <= y_top {
            chart
                .draw_series(LineSeries::new(hline(threshold), MAGENTA.stroke_width(1)))
                .map_err(|e| fail(&e))?
                .label(format!("threshold {}%", meta.threshold))
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], MAGENTA));
        }
        if show_limit {
            chart
                .draw_series(LineSeries::new(hline(limit), RED.stroke_width(2)))
                .map_err(|e| fail(&e))?
                .label(format!("limit ({})", meta.limit_origin))
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
        }
        if !a.spikes.is_empty() {
            chart
                .draw_series(a.spikes.iter().map(|s| Circle::new((s.t, s.mb), 5, RED.filled())))
                .map_err(|e| fail(&e))?
                .label("spike")
                .legend(|(x, y)| Circle::new((x + 10, y), 4, RED.filled()));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| fail(&e))?;
        root.present().map_err(|e| fail(&e))?;
    }
    Ok(svg)
}
