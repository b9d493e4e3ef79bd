//! A reading in the Prometheus text exposition format (version 0.0.4).

use std::fmt::Write;

use super::Sample;

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// The gauges for one reading: `process_resident_memory_bytes` (the name Prometheus client
/// libraries use), `memwarden_memory_peak_bytes`, `memwarden_memory_limit_bytes` (labelled with
/// its origin), `memwarden_memory_usage_ratio` (current / limit, 0..1),
/// `memwarden_monitor_samples_total` and `memwarden_monitor_last_sample_timestamp_seconds`.
pub fn render_prometheus(s: &Sample, target: &str, limit_origin: &str, samples_total: u64) -> String {
    let t = format!("target=\"{}\"", escape(target));
    let mut out = String::new();
    let mut gauge = |name: &str, kind: &str, help: &str, labels: &str, value: String| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name}{{{labels}}} {value}");
    };
    gauge("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.", &t, s.current_bytes.to_string());
    gauge(
        "memwarden_memory_peak_bytes",
        "gauge",
        "Highest resident memory seen by the monitor, in bytes.",
        &t,
        s.peak_bytes.to_string(),
    );
    gauge(
        "memwarden_memory_limit_bytes",
        "gauge",
        "Memory limit that applies to the target, in bytes.",
        &format!("{t},origin=\"{}\"", escape(limit_origin)),
        s.limit_bytes.to_string(),
    );
    let ratio = if s.limit_bytes == 0 { 0.0 } else { s.current_bytes as f64 / s.limit_bytes as f64 };
    gauge("memwarden_memory_usage_ratio", "gauge", "Resident memory divided by the limit.", &t, format!("{ratio}"));
    gauge(
        "memwarden_monitor_samples_total",
        "counter",
        "Samples taken by this monitor.",
        &t,
        samples_total.to_string(),
    );
    gauge(
        "memwarden_monitor_last_sample_timestamp_seconds",
        "gauge",
        "Wall clock of the last sample, seconds since the epoch.",
        &t,
        format!("{:.3}", s.unix_ms as f64 / 1000.0),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_help_type_and_labelled_values() {
        let s = Sample { t: 1.0, unix_ms: 1_700_000_000_500, current_bytes: 256, peak_bytes: 512, limit_bytes: 1024 };
        let text = render_prometheus(&s, "pid \"7\"", "cgroup_v2", 3);
        assert!(text.contains("process_resident_memory_bytes{target=\"pid \\\"7\\\"\"} 256\n"), "{text}");
        assert!(text.contains("memwarden_memory_limit_bytes{target=\"pid \\\"7\\\"\",origin=\"cgroup_v2\"} 1024\n"));
        assert!(text.contains("memwarden_memory_usage_ratio{target=\"pid \\\"7\\\"\"} 0.25\n"));
        assert!(text.contains("# TYPE memwarden_monitor_samples_total counter\n"));
        assert!(
            text.contains("memwarden_monitor_last_sample_timestamp_seconds{target=\"pid \\\"7\\\"\"} 1700000000.500\n")
        );
        for line in text.lines() {
            assert!(line.starts_with("# HELP ") || line.starts_with("# TYPE ") || line.contains("} "), "{line}");
        }
    }
}
