//! The seed's analysis report (average, peak, efficiency, spikes) plus a leak trend.

use serde::Serialize;

use super::{Sample, mb};
use crate::stats::linear_fit;

/// Printed by `memwarden analyze --verbose`.
pub const EFFICIENCY_DEFINITION: &str = "Efficiency = average / peak of the resident memory readings, in percent. 100% means \
     usage was flat; a low figure means the peak was a short excursion, so memory sized for the peak sat mostly idle.";
/// Printed by `memwarden analyze --verbose`.
pub const SPIKE_DEFINITION: &str = "Spike = a reading more than max(10% of the median, 1 MB) above the median of the 10 \
     readings before it (at least 3 needed); consecutive such readings are one spike, reported at its highest reading. \
     jump = that reading minus the median.";
/// Printed by `memwarden analyze --verbose`.
pub const LEAK_DEFINITION: &str = "Leak trend = least-squares line through (minutes, MB) over all readings except \
     spikes (a short excursion is not growth): its slope in MB/min and R² (1 = every reading on the line). Growth is called steady when the slope is positive, R² >= 0.8 and \
     the fitted growth over the run is at least max(1 MB, 5% of the average).";

/// Where spikes are looked for; [`SpikeParams::default`] is what [`SPIKE_DEFINITION`] says.
#[derive(Debug, Clone, Copy)]
pub struct SpikeParams {
    pub window: usize,
    pub min_history: usize,
    pub relative: f64,
    pub absolute_mb: f64,
}

impl Default for SpikeParams {
    fn default() -> Self {
        SpikeParams { window: 10, min_history: 3, relative: 0.10, absolute_mb: 1.0 }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Spike {
    /// Seconds since the start.
    pub t: f64,
    pub mb: f64,
    /// MB above the rolling median.
    pub jump_mb: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Leak {
    pub slope_mb_per_min: f64,
    pub r2: f64,
    pub steady: bool,
    pub sentence: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Analysis {
    pub samples: usize,
    pub duration_s: f64,
    pub average_mb: f64,
    pub min_mb: f64,
    pub peak_mb: f64,
    pub limit_mb: f64,
    /// average / peak, percent (see [`EFFICIENCY_DEFINITION`]).
    pub efficiency_percent: f64,
    pub spikes: Vec<Spike>,
    /// `None` with fewer than 3 readings or no time between them.
    pub leak: Option<Leak>,
}

/// [`analyze_with`] the default spike parameters.
pub fn analyze(samples: &[Sample]) -> Analysis {
    analyze_with(samples, SpikeParams::default())
}

pub fn analyze_with(samples: &[Sample], p: SpikeParams) -> Analysis {
    let cur: Vec<f64> = samples.iter().map(|s| mb(s.current_bytes)).collect();
    let n = cur.len();
    let average = if n == 0 { 0.0 } else { cur.iter().sum::<f64>() / n as f64 };
    let peak = samples.iter().map(|s| mb(s.peak_bytes.max(s.current_bytes))).fold(0.0, f64::max);
    let min = cur.iter().copied().fold(f64::INFINITY, f64::min);
    let (spikes, in_spike) = spikes(samples, &cur, p);
    let duration = match (samples.first(), samples.last()) {
        (Some(a), Some(b)) => b.t - a.t,
        _ => 0.0,
    };
    Analysis {
        samples: n,
        duration_s: duration,
        average_mb: average,
        min_mb: if n == 0 { 0.0 } else { min },
        peak_mb: peak,
        limit_mb: samples.last().map_or(0.0, |s| mb(s.limit_bytes)),
        efficiency_percent: if peak > 0.0 { average / peak * 100.0 } else { 0.0 },
        spikes,
        leak: leak(samples, &cur, &in_spike, average, duration),
    }
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let m = s.len() / 2;
    if s.len() % 2 == 1 { s[m] } else { (s[m - 1] + s[m]) / 2.0 }
}

/// The spikes, and for every reading whether it is part of one.
fn spikes(samples: &[Sample], cur: &[f64], p: SpikeParams) -> (Vec<Spike>, Vec<bool>) {
    let mut out: Vec<Spike> = Vec::new();
    let mut mask = vec![false; cur.len()];
    let mut in_run = false;
    for i in 0..cur.len() {
        let hist = &cur[i.saturating_sub(p.window)..i];
        if hist.len() < p.min_history.max(1) {
            continue;
        }
        let med = median(hist);
        let jump = cur[i] - med;
        if jump > (p.relative * med).max(p.absolute_mb) {
            mask[i] = true;
            let s = Spike { t: samples[i].t, mb: cur[i], jump_mb: jump };
            match out.last_mut() {
                Some(last) if in_run => {
                    if s.mb > last.mb {
                        *last = s;
                    }
                }
                _ => out.push(s),
            }
            in_run = true;
        } else {
            in_run = false;
        }
    }
    (out, mask)
}

fn leak(samples: &[Sample], cur: &[f64], in_spike: &[bool], average: f64, duration_s: f64) -> Option<Leak> {
    let pts: Vec<(f64, f64)> =
        samples.iter().zip(cur).zip(in_spike).filter(|(_, s)| !**s).map(|((s, &y), _)| (s.t / 60.0, y)).collect();
    if pts.len() < 3 || duration_s <= 0.0 {
        return None;
    }
    let (slope, r2) = linear_fit(&pts)?;
    let growth = slope * duration_s / 60.0;
    let steady = slope > 0.0 && r2 >= 0.8 && growth >= (0.05 * average).max(1.0);
    let sentence = if steady {
        format!(
            "Memory grows steadily: {slope:.2} MB/min (R² {r2:.2}), {:.1} MB over this run, {:.0} MB per hour at this rate; this looks like a leak.",
            growth,
            slope * 60.0
        )
    } else if slope > 0.0 && r2 >= 0.8 {
        format!("Memory rises slightly ({slope:.3} MB/min, R² {r2:.2}), too little over this run to call it a leak.")
    } else {
        format!("No steady growth ({slope:.3} MB/min, R² {r2:.2}).")
    };
    Some(Leak { slope_mb_per_min: slope, r2, steady, sentence })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::size::MIB;

    fn series(f: impl Fn(f64) -> f64, n: usize, dt: f64) -> Vec<Sample> {
        let mut peak = 0;
        (0..n)
            .map(|i| {
                let t = i as f64 * dt;
                let cur = (f(t) * MIB as f64) as u64;
                peak = peak.max(cur);
                Sample {
                    t,
                    unix_ms: 1_700_000_000_000 + (t * 1000.0) as u64,
                    current_bytes: cur,
                    peak_bytes: peak,
                    limit_bytes: 1 << 30,
                }
            })
            .collect()
    }

    #[test]
    fn steady_leak_slope_within_5_percent() {
        // 2 MB/min on top of 100 MB, with a deterministic wobble of ±0.5 MB, sampled every second for 10 min.
        let s = series(|t| 100.0 + 2.0 * t / 60.0 + 0.5 * (t * 1.7).sin(), 600, 1.0);
        let a = analyze(&s);
        let leak = a.leak.unwrap();
        assert!((leak.slope_mb_per_min - 2.0).abs() / 2.0 < 0.05, "{leak:?}");
        assert!(leak.r2 > 0.95 && leak.steady, "{leak:?}");
        assert!(leak.sentence.contains("leak"), "{}", leak.sentence);
        assert!(a.spikes.is_empty(), "{:?}", a.spikes);
    }

    #[test]
    fn flat_usage_is_not_a_leak_and_efficiency_is_average_over_peak() {
        let s = series(|t| 200.0 + 0.3 * (t * 0.9).sin(), 120, 0.5);
        let a = analyze(&s);
        assert!(!a.leak.unwrap().steady);
        assert!((a.average_mb - 200.0).abs() < 0.2 && a.peak_mb <= 200.31);
        assert!((a.efficiency_percent - a.average_mb / a.peak_mb * 100.0).abs() < 1e-9);
        assert!(a.efficiency_percent > 99.0);
    }

    #[test]
    fn spikes_are_found_once_per_excursion() {
        // 100 MB flat, an excursion to 180/190 MB at t=20..21, another to 150 MB at t=40.
        let s = series(
            |t| match t as u64 {
                20 => 180.0,
                21 => 190.0,
                40 => 150.0,
                _ => 100.0,
            },
            60,
            1.0,
        );
        let a = analyze(&s);
        assert_eq!(a.spikes.len(), 2, "{:?}", a.spikes);
        assert_eq!((a.spikes[0].t, a.spikes[0].mb), (21.0, 190.0));
        assert!((a.spikes[0].jump_mb - 90.0).abs() < 1e-6);
        assert_eq!(a.spikes[1].t, 40.0);
        assert!((a.peak_mb - 190.0).abs() < 1e-6);
    }

    #[test]
    fn a_spike_does_not_hide_a_leak() {
        let s = series(|t| 100.0 + 2.0 * t / 60.0 + if t as u64 == 300 { 80.0 } else { 0.0 }, 600, 1.0);
        let a = analyze(&s);
        assert_eq!(a.spikes.len(), 1);
        let leak = a.leak.unwrap();
        assert!(leak.steady && (leak.slope_mb_per_min - 2.0).abs() < 0.1, "{leak:?}");
    }

    #[test]
    fn tiny_series_have_no_trend() {
        assert_eq!(analyze(&[]).samples, 0);
        assert!(analyze(&series(|_| 1.0, 2, 1.0)).leak.is_none());
    }
}
