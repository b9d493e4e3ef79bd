//! Message text: e-mail templates (minijinja), Slack text, webhook and Alertmanager JSON,
//! and the system figures that `include_system_info` / `custom_metrics` add.

use std::collections::BTreeMap;

use minijinja::Environment;
use serde::Serialize;
use serde_json::{Value, json};

use super::clock::rfc3339;
use super::config::{AlertConfig, CustomMetrics};
use crate::error::{Error, Result};
use crate::manager::State;

pub(crate) const BUILTIN_SUBJECT: &str = "[memwarden] {{ level | upper }}{% if kind == 'resolved' %} resolved{% endif %}: \
memory at {{ usage_percent }}% on {{ hostname }}{% if count > 1 %} (+{{ count - 1 }} more){% endif %}";

pub(crate) const BUILTIN_BODY: &str = "{% for a in alerts %}{{ a.kind | upper }} [{{ a.level }}] {{ a.message }}
  usage: {{ a.usage_percent }}%{% if a.threshold %} (threshold {{ a.threshold }}%){% endif %}
  time: {{ a.time }}{% if a.escalation_level %}
  escalation level: {{ a.escalation_level }}{% endif %}
{% endfor %}{% if system %}
System:
{% for k, v in system | items %}  {{ k }}: {{ v }}
{% endfor %}{% endif %}-- memwarden on {{ hostname }}
";

/// One alert as the channels see it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct AlertInfo {
    pub id: i64,
    /// `alert`, `resolved`, `escalation` or `custom`.
    pub kind: &'static str,
    #[serde(serialize_with = "ser_state")]
    pub level: State,
    pub message: String,
    pub usage_percent: Option<f64>,
    pub threshold: Option<f64>,
    pub escalation_level: Option<u32>,
    #[serde(skip)]
    pub started_ms: i64,
    #[serde(skip)]
    pub raised_ms: i64,
    /// Levels this condition fired at (for Alertmanager's resolve notices).
    #[serde(skip)]
    pub fired_levels: Vec<State>,
}

fn ser_state<S: serde::Serializer>(s: &State, ser: S) -> std::result::Result<S::Ok, S::Error> {
    ser.serialize_str(s.as_str())
}

impl AlertInfo {
    fn to_json(&self) -> Value {
        let mut v = serde_json::to_value(self).unwrap_or(Value::Null);
        if let Value::Object(m) = &mut v {
            m.insert("time".into(), rfc3339(self.raised_ms).into());
            m.insert("started_at".into(), rfc3339(self.started_ms).into());
            if let Some(p) = self.usage_percent {
                m.insert("usage_percent".into(), json!((p * 10.0).round() / 10.0));
            }
        }
        v
    }
}

pub(crate) struct Templates {
    env: Environment<'static>,
}

/// Instructions one render may execute: the built-in body for a batch of a few hundred alerts
/// needs well under a tenth of it; a runaway loop stops here with an error.
const TEMPLATE_FUEL: u64 = 50_000;
/// Bytes one rendered subject or body may have.
const TEMPLATE_OUTPUT_LIMIT: usize = 1 << 20;
/// Filters that allocate by a count the template gives (`batch(10**15)` reserves that much up
/// front): not available to alert templates.
const REMOVED_FILTERS: &[&str] = &["batch", "slice"];

/// The `*` operator inside a template's tags (`{{ }}`, `{% %}`), outside string literals.
/// Repeating a list (`[1] * 10**13`) makes a sequence whose rendering no fuel limit stops
/// (found by the alert_template fuzz target: a render that never ended), so alert templates
/// may not use it.
fn uses_repetition(src: &str) -> bool {
    let b = src.as_bytes();
    let mut i = 0;
    while i + 1 < b.len() {
        let close: &[u8] = match &b[i..i + 2] {
            b"{{" => b"}}",
            b"{%" => b"%}",
            b"{#" => b"#}",
            _ => {
                i += 1;
                continue;
            }
        };
        let comment = close == b"#}";
        i += 2;
        let mut quote = None;
        while i < b.len() {
            let c = b[i];
            match quote {
                Some(_) if c == b'\\' => i += 1,
                Some(q) if c == q => quote = None,
                Some(_) => {}
                None if comment => {}
                None if c == b'\'' || c == b'"' => quote = Some(c),
                None if c == b'*' => return true,
                None => {}
            }
            if quote.is_none() && b[i..].starts_with(close) {
                i += 2;
                break;
            }
            i += 1;
        }
    }
    false
}

/// Collects a render's output and refuses to grow past [`TEMPLATE_OUTPUT_LIMIT`].
struct Capped(Vec<u8>);

impl std::io::Write for Capped {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.0.len() + buf.len() > TEMPLATE_OUTPUT_LIMIT {
            return Err(std::io::Error::other(format!("output longer than {TEMPLATE_OUTPUT_LIMIT} bytes")));
        }
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Templates {
    pub fn new(cfg: &AlertConfig) -> Result<Self> {
        let mut env = Environment::new();
        env.set_fuel(Some(TEMPLATE_FUEL));
        for f in REMOVED_FILTERS {
            env.remove_filter(f);
        }
        let add = |env: &mut Environment<'static>, name: String, src: String| {
            if uses_repetition(&src) {
                return Err(Error::invalid_config(format!(
                    "MemoryAlertingService config: template '{name}': the '*' operator is not allowed in alert \
                     templates (repeating a list or string can make one render take unbounded time and memory)"
                )));
            }
            env.add_template_owned(name.clone(), src)
                .map_err(|e| Error::invalid_config(format!("MemoryAlertingService config: template '{name}': {e}")))
        };
        add(&mut env, "memory_alert.subject".into(), BUILTIN_SUBJECT.into())?;
        add(&mut env, "memory_alert.body".into(), BUILTIN_BODY.into())?;
        for (name, t) in &cfg.templates {
            add(&mut env, format!("{name}.subject"), t.subject.clone())?;
            add(&mut env, format!("{name}.body"), t.body.clone())?;
        }
        Ok(Templates { env })
    }

    /// Subject and body of the e-mail for a group of alerts (one, or a batch).
    pub fn email(
        &self,
        name: &str,
        alerts: &[AlertInfo],
        system: &Option<Value>,
        host: &str,
    ) -> Result<(String, String)> {
        let first = &alerts[0];
        let list: Vec<Value> = alerts.iter().map(AlertInfo::to_json).collect();
        let ctx = json!({
            "level": first.level.as_str(),
            "kind": first.kind,
            "message": first.message,
            "usage_percent": first.usage_percent.map(|p| (p * 10.0).round() / 10.0),
            "threshold": first.threshold,
            "time": rfc3339(first.raised_ms),
            "hostname": host,
            "count": alerts.len(),
            "alerts": list,
            "system": system,
        });
        let render = |part: &str| -> Result<String> {
            let t = self
                .env
                .get_template(&format!("{name}.{part}"))
                .map_err(|e| Error::invalid_config(format!("template '{name}': {e}")))?;
            let mut out = Capped(Vec::new());
            // minijinja 2.24 panics on some slices with a step (`x[:0-500][02--00:5]`, found
            // by fuzzing): a template of the user's must fail, never take the process down.
            let rendered =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| t.render_captured_to(&ctx, &mut out)))
                    .map_err(|p| {
                        let why = p
                            .downcast_ref::<&str>()
                            .map(|s| s.to_string())
                            .or_else(|| p.downcast_ref::<String>().cloned())
                            .unwrap_or_else(|| "a panic".into());
                        Error::invalid_argument(format!(
                            "template '{name}' ({part}) failed: the template engine broke down ({why})"
                        ))
                    })?;
            rendered.map_err(|e| Error::invalid_argument(format!("template '{name}' ({part}) failed: {e}")))?;
            String::from_utf8(out.0)
                .map_err(|e| Error::invalid_argument(format!("template '{name}' ({part}) made invalid UTF-8: {e}")))
        };
        let subject = render("subject")?.replace(['\r', '\n'], " ");
        Ok((subject, render("body")?))
    }
}

pub(crate) fn slack_payload(
    alerts: &[AlertInfo],
    channel: &Option<String>,
    user: &Option<String>,
    host: &str,
) -> Value {
    let mut lines = Vec::new();
    for a in alerts {
        let icon = match (a.kind, a.level) {
            ("resolved", _) => ":white_check_mark:",
            (_, State::Emergency) => ":fire:",
            (_, State::Critical) => ":rotating_light:",
            _ => ":warning:",
        };
        let pct = a.usage_percent.map(|p| format!(" — memory at {:.1}%", p)).unwrap_or_default();
        let esc = a.escalation_level.map(|n| format!(" (escalation level {n})")).unwrap_or_default();
        lines.push(format!("{icon} *{}* {}{pct}{esc} on {host}", a.level.as_str().to_uppercase(), a.message));
    }
    let mut v = json!({ "text": lines.join("\n") });
    if let Some(c) = channel {
        v["channel"] = c.clone().into();
    }
    if let Some(u) = user {
        v["username"] = u.clone().into();
    }
    v
}

pub(crate) fn webhook_payload(alerts: &[AlertInfo], system: &Option<Value>, host: &str) -> Value {
    json!({
        "source": "memwarden",
        "hostname": host,
        "alerts": alerts.iter().map(AlertInfo::to_json).collect::<Vec<_>>(),
        "system": system,
    })
}

/// Alertmanager API v2: a list of alerts; a resolve notice carries `endsAt`.
pub(crate) fn alertmanager_payload(
    alerts: &[AlertInfo],
    extra: &BTreeMap<String, String>,
    host: &str,
    now_ms: i64,
) -> Value {
    let mut out = Vec::new();
    for a in alerts {
        let levels = if a.kind == "resolved" { a.fired_levels.clone() } else { vec![a.level] };
        for level in levels {
            let mut labels = json!({
                "alertname": if a.kind == "custom" { "MemwardenMessage" } else { "MemwardenMemoryHigh" },
                "severity": level.as_str(),
                "instance": host,
                "source": "memwarden",
            });
            for (k, v) in extra {
                labels[k] = v.clone().into();
            }
            let mut alert = json!({
                "labels": labels,
                "annotations": {
                    "summary": a.message,
                    "usage_percent": a.usage_percent.map(|p| format!("{p:.1}")).unwrap_or_default(),
                },
                "startsAt": rfc3339(a.started_ms),
            });
            if a.kind == "resolved" {
                alert["endsAt"] = rfc3339(now_ms).into();
            }
            out.push(alert);
        }
    }
    Value::Array(out)
}

pub(crate) fn hostname() -> String {
    let mut buf = [0u8; 256];
    // Safety: the buffer is valid for its length; gethostname NUL-terminates on success.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc == 0 {
        let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
        String::from_utf8_lossy(&buf[..end]).into_owned()
    } else {
        "localhost".into()
    }
}

/// The figures `include_system_info` and `custom_metrics` ask for.
pub(crate) struct SystemProbe {
    sys: Option<sysinfo::System>,
}

impl SystemProbe {
    pub fn new(cpu: bool) -> Self {
        let mut sys = sysinfo::System::new().ok();
        if cpu && let Some(sys) = sys.as_mut() {
            // A baseline, so the first real reading has something to compare with.
            sys.refresh_cpu_usage();
        }
        SystemProbe { sys }
    }

    pub fn collect(&mut self, info: bool, m: CustomMetrics) -> Option<Value> {
        if !(info || m.cpu_usage || m.disk_usage || m.active_connections) {
            return None;
        }
        let mut out = serde_json::Map::new();
        const MB: f64 = 1024.0 * 1024.0;
        if info && let Some(sys) = self.sys.as_mut() {
            sys.refresh_memory();
            out.insert("memory_total_mb".into(), json!((sys.total_memory() as f64 / MB).round()));
            out.insert("memory_used_mb".into(), json!((sys.used_memory() as f64 / MB).round()));
            out.insert("memory_available_mb".into(), json!((sys.available_memory() as f64 / MB).round()));
        }
        if info {
            out.insert("hostname".into(), hostname().into());
            out.insert("pid".into(), std::process::id().into());
        }
        if m.cpu_usage
            && let Some(sys) = self.sys.as_mut()
        {
            sys.refresh_cpu_usage();
            out.insert("cpu_usage_percent".into(), json!((sys.global_cpu_usage() as f64 * 10.0).round() / 10.0));
        }
        if m.disk_usage
            && let Ok(disks) = sysinfo::Disks::new_with_refreshed_list()
        {
            let root = (&disks).into_iter().max_by_key(|d| {
                let p = d.mount_point();
                (p == std::path::Path::new("/"), d.total_space())
            });
            if let Some(d) = root.filter(|d| d.total_space() > 0) {
                let used = d.total_space() - d.available_space();
                out.insert(
                    "disk_usage_percent".into(),
                    json!((used as f64 / d.total_space() as f64 * 1000.0).round() / 10.0),
                );
                out.insert("disk_mount".into(), d.mount_point().display().to_string().into());
            }
        }
        if m.active_connections {
            out.insert("active_connections".into(), active_connections().into());
        }
        Some(Value::Object(out))
    }
}

/// Established TCP connections (IPv4 and IPv6) from /proc/net/tcp{,6}; 0 elsewhere.
pub(crate) fn active_connections() -> u64 {
    let mut n = 0;
    for f in ["/proc/net/tcp", "/proc/net/tcp6"] {
        if let Ok(text) = std::fs::read_to_string(f) {
            n += text.lines().skip(1).filter(|l| l.split_whitespace().nth(3) == Some("01")).count() as u64;
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::{Template, preview_email};

    fn preview(subject: &str, body: &str) -> Result<(String, String)> {
        let mut cfg = AlertConfig::default();
        cfg.templates.insert("t".into(), Template { subject: subject.into(), body: body.into() });
        preview_email(&cfg, "t", State::Critical, "memory at 91%", 91.0, None)
    }

    #[test]
    fn the_repetition_operator_is_refused_at_construction() {
        // Regression (fuzz/regressions/alert_template): this render never finished.
        let e = preview("%e+e+count{{[1]*1}}00m", "{{[1]*22222222222222}}").unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::InvalidConfig);
        assert!(e.message().contains("the '*' operator is not allowed"), "{e}");
        for src in ["{{ 'a' * 3 }}", "{% set x = [1] *5 %}", "{{ 2 ** 3 }}"] {
            assert!(uses_repetition(src), "{src}");
        }
        for src in ["* {{ level }} *", "{{ '*' }} {{ \"a*b\" }}", "{# a * b #}", "{{ 'it\\'s *' }}"] {
            assert!(!uses_repetition(src), "{src}");
        }
        assert!(preview("* {{ level | upper }} *", "{{ '*' }}").is_ok());
    }

    #[test]
    fn runaway_loops_and_huge_output_stop_with_an_error() {
        let e = preview("s", "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}")
            .unwrap_err();
        assert!(e.message().contains("template 't' (body) failed"), "{e}");
        let e = preview("s", "{% for i in range(1000) %}{{ range(10000) | join(',') }}{% endfor %}").unwrap_err();
        assert!(e.message().contains("failed"), "{e}");
        let e = preview("s", "{{ range(3) | batch(1000000000000000) }}").unwrap_err();
        assert!(e.message().contains("batch"), "{e}");
    }

    #[test]
    fn a_panic_in_the_template_engine_is_an_error() {
        // Regression (fuzz/regressions/alert_template/slice-with-step-panics-in-minijinja):
        // minijinja 2.24 panics (index out of bounds in value/ops.rs) rendering this subject.
        let data = include_bytes!("../../../fuzz/regressions/alert_template/slice-with-step-panics-in-minijinja");
        let subject = std::str::from_utf8(&data[1..]).unwrap();
        let mut cfg = AlertConfig::default();
        cfg.templates.insert("t".into(), Template { subject: subject.into(), body: String::new() });
        let system = serde_json::json!({"cpu_percent": 12.5, "memory_total_mb": 2048, "disk_free_mb": 100});
        let e = preview_email(&cfg, "t", State::Emergency, "memory at 91%", 91.5, Some(system)).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::InvalidArgument);
        assert!(e.message().contains("template 't' (subject) failed: the template engine broke down"), "{e}");
        assert!(preview("s", "{{ level[1:3] }} {{ level[::2] }}").is_ok(), "ordinary slices still work");
    }
}
