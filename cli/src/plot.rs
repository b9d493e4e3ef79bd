//! `memwarden plot FILE -o chart.svg` (or `.png`): the series with the limit, the threshold and spikes.

use std::path::PathBuf;
use std::sync::Once;

use clap::{Args, ValueEnum};
use memwarden_core::monitor::{Export, analyze, mb, read_export};
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::Fail;

#[derive(Args)]
pub struct PlotArgs {
    /// A file written by `memwarden monitor --export`.
    file: PathBuf,
    /// Where to write the chart.
    #[arg(short, long, value_name = "FILE")]
    output: PathBuf,
    /// Chart format (default: png when FILE ends in .png, else svg).
    #[arg(long, value_enum)]
    format: Option<ChartFormat>,
    /// Chart size in pixels, WIDTHxHEIGHT.
    #[arg(long, default_value = "1000x500", value_parser = parse_size)]
    size: (u32, u32),
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ChartFormat {
    Svg,
    Png,
}

fn parse_size(s: &str) -> Result<(u32, u32), String> {
    let bad = || format!("expected WIDTHxHEIGHT in pixels, each 100 to 10000, got '{s}'");
    let (w, h) = s.split_once(['x', 'X']).ok_or_else(bad)?;
    let n = |t: &str| t.trim().parse::<u32>().ok().filter(|v| (100..=10_000).contains(v));
    Ok((n(w).ok_or_else(bad)?, n(h).ok_or_else(bad)?))
}

/// DejaVu Sans, embedded so PNG text needs no system fonts (licence: assets/DejaVuSans-LICENSE.txt).
static FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");

/// Registers the embedded font as plotters' "sans-serif" (once). Both backends lay text out with it.
fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if plotters::style::register_font("sans-serif", FontStyle::Normal, FONT).is_err() {
            eprintln!("memwarden: the embedded chart font could not be loaded");
        }
    });
}

pub fn run(args: PlotArgs) -> Result<(), Fail> {
    let export = read_export(&args.file)?;
    if export.samples.is_empty() {
        return Err(Fail::new(format!("'{}' has no samples to plot", args.file.display())));
    }
    let png_name = args.output.extension().is_some_and(|e| e.eq_ignore_ascii_case("png"));
    let format = args.format.unwrap_or(if png_name { ChartFormat::Png } else { ChartFormat::Svg });
    let bytes = match format {
        ChartFormat::Svg => render_svg(&export, args.size)?.into_bytes(),
        ChartFormat::Png => render_png(&export, args.size)?,
    };
    std::fs::write(&args.output, bytes)
        .map_err(|e| Fail::new(format!("cannot write chart '{}': {e}", args.output.display())))?;
    Ok(())
}

/// The chart as SVG text, 1000 × 500.
pub(crate) fn render(export: &Export) -> Result<String, Fail> {
    render_svg(export, (1000, 500))
}

pub(crate) fn render_svg(export: &Export, size: (u32, u32)) -> Result<String, Fail> {
    register_font();
    let mut svg = String::new();
    draw(SVGBackend::with_string(&mut svg, size).into_drawing_area(), export)?;
    Ok(svg)
}

/// The chart as a PNG file's bytes (RGB, 8 bits per channel).
pub(crate) fn render_png(export: &Export, (w, h): (u32, u32)) -> Result<Vec<u8>, Fail> {
    register_font();
    let mut rgb = vec![0u8; w as usize * h as usize * 3];
    draw(BitMapBackend::with_buffer(&mut rgb, (w, h)).into_drawing_area(), export)?;
    let fail = |e: png::EncodingError| Fail::new(format!("cannot encode the PNG chart: {e}"));
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, w, h);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let mut writer = enc.write_header().map_err(fail)?;
    writer.write_image_data(&rgb).map_err(fail)?;
    writer.finish().map_err(fail)?;
    Ok(out)
}

fn draw<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, export: &Export) -> Result<(), Fail> {
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
    {
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
    Ok(())
}
