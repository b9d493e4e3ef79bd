//! `AlertConfig`: the seed's alerting keys, checked at construction so that a bad channel,
//! URL, address, threshold name or escalation level fails before the first alert.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde_json::{Map, Value};

use crate::config::{ConfigReader, describe};
use crate::error::{Error, Result};
use crate::manager::State;

const C: &str = "MemoryAlertingService";

/// A string that must never be shown: `Debug` prints `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub(crate) String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// The four delivery channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ChannelKind {
    Email,
    Slack,
    Webhook,
    Alertmanager,
}

impl ChannelKind {
    pub const ALL: [ChannelKind; 4] =
        [ChannelKind::Email, ChannelKind::Slack, ChannelKind::Webhook, ChannelKind::Alertmanager];
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelKind::Email => "email",
            ChannelKind::Slack => "slack",
            ChannelKind::Webhook => "webhook",
            ChannelKind::Alertmanager => "alertmanager",
        }
    }
    pub fn parse(s: &str) -> Option<ChannelKind> {
        ChannelKind::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// Plain SMTP (loopback relays, tests).
    None,
    /// Plain connect, then STARTTLS (required).
    StartTls,
    /// TLS from the first byte (SMTPS).
    Tls,
}

/// `channels.email.smtp`.
#[derive(Debug, Clone, PartialEq)]
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    pub tls: TlsMode,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub from: String,
    /// Seconds for connect and each command.
    pub timeout: f64,
}

/// `channels.email`.
#[derive(Debug, Clone, PartialEq)]
pub struct EmailChannel {
    pub enabled: bool,
    pub recipients: Vec<String>,
    pub threshold: State,
    pub throttle_minutes: f64,
    pub template: String,
    pub smtp: SmtpConfig,
}

/// Settings shared by the HTTP channels (Slack, webhook, Alertmanager).
#[derive(Debug, Clone, PartialEq)]
pub struct HttpChannel {
    pub enabled: bool,
    pub url: Secret,
    pub threshold: State,
    pub throttle_minutes: f64,
    /// Seconds for the whole request.
    pub timeout: f64,
    /// Attempts after the first, with exponential backoff.
    pub retry_attempts: u32,
    pub headers: Vec<(String, Secret)>,
    /// Slack: `channel`, `username`. Alertmanager: `labels`.
    pub slack_channel: Option<String>,
    pub slack_username: Option<String>,
    pub labels: BTreeMap<String, String>,
}

/// One escalation level: who hears about it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct EscalationLevel {
    /// `Some(list)`: e-mail these addresses (an empty list: the channel's own recipients).
    pub email: Option<Vec<String>>,
    pub slack: bool,
    /// `Some(None)`: the webhook channel's URL; `Some(Some(url))`: this URL.
    pub webhook: Option<Option<Secret>>,
    pub alertmanager: bool,
}

/// `escalation`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Escalation {
    pub enabled: bool,
    /// Index 0 is level 1.
    pub levels: Vec<EscalationLevel>,
    pub intervals_minutes: Vec<f64>,
}

/// `custom_metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct CustomMetrics {
    pub cpu_usage: bool,
    pub disk_usage: bool,
    pub active_connections: bool,
}

/// A user template: e-mail subject and body (minijinja syntax).
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    pub subject: String,
    pub body: String,
}

/// The whole alerting config. See [`AlertConfig::from_json`] for the keys.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertConfig {
    pub email: Option<EmailChannel>,
    pub slack: Option<HttpChannel>,
    pub webhook: Option<HttpChannel>,
    pub alertmanager: Option<HttpChannel>,
    /// warning, critical, emergency in percent of the limit.
    pub thresholds: [f64; 3],
    pub escalation: Escalation,
    pub history_retention_days: f64,
    pub history_path: Option<String>,
    pub alert_cooldown_minutes: f64,
    pub batch_alerts: bool,
    pub batch_window_seconds: f64,
    pub include_system_info: bool,
    pub custom_metrics: CustomMetrics,
    pub queue_capacity: usize,
    pub hysteresis: f64,
    pub templates: BTreeMap<String, Template>,
}

impl Default for AlertConfig {
    fn default() -> Self {
        AlertConfig {
            email: None,
            slack: None,
            webhook: None,
            alertmanager: None,
            thresholds: [75.0, 90.0, 95.0],
            escalation: Escalation { enabled: false, levels: Vec::new(), intervals_minutes: vec![5.0, 15.0, 30.0] },
            history_retention_days: 30.0,
            history_path: None,
            alert_cooldown_minutes: 10.0,
            batch_alerts: false,
            batch_window_seconds: 2.0,
            include_system_info: false,
            custom_metrics: CustomMetrics::default(),
            queue_capacity: 256,
            hysteresis: 2.0,
            templates: BTreeMap::new(),
        }
    }
}

const TOP_KEYS: &[&str] = &[
    "channels",
    "thresholds",
    "escalation",
    "history_retention_days",
    "history_path",
    "alert_cooldown_minutes",
    "batch_alerts",
    "batch_window_seconds",
    "include_system_info",
    "custom_metrics",
    "queue_capacity",
    "hysteresis",
    "templates",
];

const LEVEL_NAMES: &str = "'warning', 'critical' or 'emergency'";

/// `scheme://host[:port]/***`: a URL with its path and query (where tokens live) hidden.
pub fn redact_url(url: &str) -> String {
    match url.find("://") {
        Some(i) => {
            let rest = &url[i + 3..];
            let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            // Credentials in the authority are secret too.
            let authority = &rest[..end];
            let host = authority.rsplit('@').next().unwrap_or(authority);
            let tail = if end < rest.len() && &rest[end..] != "/" { "/***" } else { "" };
            format!("{}://{host}{tail}", &url[..i])
        }
        None => "***".into(),
    }
}

/// Checks an http(s) URL with a host; the error shows it redacted.
fn check_url(what: &str, url: &str) -> Result<Secret> {
    let bad =
        |why: &str| Error::invalid_config(format!("{C} config: bad URL for {what} ('{}'): {why}", redact_url(url)));
    let uri = ureq::http::Uri::from_str(url).map_err(|e| bad(&e.to_string()))?;
    match uri.scheme_str() {
        Some("http") | Some("https") => {}
        Some(s) => return Err(bad(&format!("scheme '{s}' is not http or https"))),
        None => return Err(bad("expected an absolute http:// or https:// URL")),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(bad("no host"));
    }
    Ok(Secret(url.to_owned()))
}

fn check_address(what: &str, addr: &str) -> Result<String> {
    lettre::Address::from_str(addr)
        .map_err(|e| Error::invalid_config(format!("{C} config: bad e-mail address '{addr}' in {what}: {e}")))?;
    Ok(addr.to_owned())
}

fn parse_level(what: &str, v: Option<&Value>, default: State) -> Result<State> {
    match v {
        None | Some(Value::Null) => Ok(default),
        Some(Value::String(s)) => match s.as_str() {
            "warning" => Ok(State::Warning),
            "critical" => Ok(State::Critical),
            "emergency" => Ok(State::Emergency),
            _ => Err(Error::invalid_config(format!(
                "{C} config: unknown threshold name '{s}' for {what}; expected {LEVEL_NAMES}"
            ))),
        },
        Some(other) => Err(Error::invalid_config(format!(
            "{C} config: invalid value for {what}: expected {LEVEL_NAMES}, got {}",
            describe(other)
        ))),
    }
}

fn non_negative(r: &ConfigReader<'_>, key: &str, default: f64) -> Result<f64> {
    r.f64(key, default, "a number >= 0", |x| x >= 0.0)
}

fn string_list(what: &str, v: &Value) -> Result<Vec<String>> {
    let bad =
        || Error::invalid_config(format!("{C} config: invalid value for {what}: expected a list of e-mail addresses"));
    let arr = v.as_array().ok_or_else(bad)?;
    arr.iter().map(|x| x.as_str().ok_or_else(bad).and_then(|s| check_address(what, s))).collect()
}

fn obj<'a>(what: &str, v: &'a Value) -> Result<&'a Map<String, Value>> {
    v.as_object().ok_or_else(|| {
        Error::invalid_config(format!("{C} config: invalid value for {what}: expected an object, got {}", describe(v)))
    })
}

fn retry(r: &ConfigReader<'_>, default: u32) -> Result<u32> {
    Ok(r.u64("retry_attempts")?.map(|n| n.min(20) as u32).unwrap_or(default))
}

fn headers(what: &str, v: Option<&Value>) -> Result<Vec<(String, Secret)>> {
    let Some(v) = v else { return Ok(Vec::new()) };
    let m = obj(what, v)?;
    m.iter()
        .map(|(k, v)| match v.as_str() {
            Some(s) if ureq::http::HeaderName::from_str(k).is_ok() && ureq::http::HeaderValue::from_str(s).is_ok() => {
                Ok((k.clone(), Secret(s.to_owned())))
            }
            _ => Err(Error::invalid_config(format!(
                "{C} config: bad header '{k}' in {what}: expected a valid header name with a string value"
            ))),
        })
        .collect()
}

fn email_channel(v: &Value) -> Result<EmailChannel> {
    const KEYS: &[&str] = &["enabled", "recipients", "threshold", "throttle_minutes", "template", "smtp"];
    let r = ConfigReader::new("MemoryAlertingService channels.email", v, KEYS)?;
    let recipients = match r.get("recipients") {
        None => Vec::new(),
        Some(v) => string_list("channels.email.recipients", v)?,
    };
    let enabled = r.bool("enabled", true)?;
    if enabled && recipients.is_empty() {
        return Err(Error::invalid_config(format!("{C} config: channels.email is enabled but has no 'recipients'")));
    }
    let smtp_v = r.get("smtp").cloned().unwrap_or(Value::Null);
    const SKEYS: &[&str] = &["host", "port", "tls", "username", "password", "from", "timeout"];
    let s = ConfigReader::new("MemoryAlertingService channels.email.smtp", &smtp_v, SKEYS)?;
    let tls = match s.choice("tls", "starttls", &["none", "starttls", "tls"])? {
        "none" => TlsMode::None,
        "tls" => TlsMode::Tls,
        _ => TlsMode::StartTls,
    };
    let default_port = match tls {
        TlsMode::None => 25,
        TlsMode::StartTls => 587,
        TlsMode::Tls => 465,
    };
    let port = match s.u64("port")? {
        None => default_port,
        Some(p) => u16::try_from(p).ok().filter(|p| *p > 0).ok_or_else(|| s.bad("port", "a port in 1..=65535"))?,
    };
    let password = match s.get("password") {
        None => None,
        Some(Value::String(p)) => Some(Secret(p.clone())),
        Some(_) => {
            return Err(Error::invalid_config(format!(
                "{C} config: invalid value for 'channels.email.smtp.password': expected a string"
            )));
        }
    };
    let from = s.str("from")?.unwrap_or("memwarden@localhost");
    check_address("channels.email.smtp.from", from)?;
    Ok(EmailChannel {
        enabled,
        recipients,
        threshold: parse_level("'channels.email.threshold'", r.get("threshold"), State::Warning)?,
        throttle_minutes: non_negative(&r, "throttle_minutes", 15.0)?,
        template: r.str("template")?.unwrap_or("memory_alert").to_owned(),
        smtp: SmtpConfig {
            host: s.str("host")?.unwrap_or("localhost").to_owned(),
            port,
            tls,
            username: s.str("username")?.map(str::to_owned),
            password,
            from: from.to_owned(),
            timeout: s.f64("timeout", 30.0, "a number of seconds > 0", |x| x > 0.0)?,
        },
    })
}

fn http_channel(kind: ChannelKind, v: &Value) -> Result<HttpChannel> {
    let (component, keys, url_key, throttle, threshold): (&'static str, &[&str], &str, f64, State) = match kind {
        ChannelKind::Slack => (
            "MemoryAlertingService channels.slack",
            &[
                "enabled",
                "webhook_url",
                "channel",
                "username",
                "threshold",
                "throttle_minutes",
                "timeout",
                "retry_attempts",
            ],
            "webhook_url",
            5.0,
            State::Critical,
        ),
        ChannelKind::Webhook => (
            "MemoryAlertingService channels.webhook",
            &["enabled", "url", "threshold", "throttle_minutes", "timeout", "retry_attempts", "headers"],
            "url",
            5.0,
            State::Warning,
        ),
        _ => (
            "MemoryAlertingService channels.alertmanager",
            &["enabled", "url", "threshold", "throttle_minutes", "timeout", "retry_attempts", "labels", "headers"],
            "url",
            0.0,
            State::Warning,
        ),
    };
    let r = ConfigReader::new(component, v, keys)?;
    let name = kind.as_str();
    let url = match r.get(url_key) {
        Some(Value::String(u)) => check_url(&format!("'channels.{name}.{url_key}'"), u)?,
        Some(_) => return Err(r.bad(url_key, "a URL string")),
        None => {
            return Err(Error::invalid_config(format!("{C} config: channels.{name} needs '{url_key}'")));
        }
    };
    let mut labels = BTreeMap::new();
    if let Some(l) = r.get("labels") {
        for (k, v) in obj("'channels.alertmanager.labels'", l)? {
            let s = v.as_str().ok_or_else(|| {
                Error::invalid_config(format!(
                    "{C} config: label '{k}' in channels.alertmanager.labels must be a string"
                ))
            })?;
            labels.insert(k.clone(), s.to_owned());
        }
    }
    Ok(HttpChannel {
        enabled: r.bool("enabled", true)?,
        url,
        threshold: parse_level(&format!("'channels.{name}.threshold'"), r.get("threshold"), threshold)?,
        throttle_minutes: non_negative(&r, "throttle_minutes", throttle)?,
        timeout: r
            .f64("timeout", if kind == ChannelKind::Webhook { 30.0 } else { 10.0 }, "seconds > 0", |x| x > 0.0)?,
        retry_attempts: retry(&r, if kind == ChannelKind::Webhook { 3 } else { 2 })?,
        headers: headers(&format!("'channels.{name}.headers'"), r.get("headers"))?,
        slack_channel: r.str("channel")?.map(str::to_owned),
        slack_username: r.str("username")?.map(str::to_owned),
        labels,
    })
}

fn unknown_channel(key: &str) -> Error {
    let names: Vec<&str> = ChannelKind::ALL.iter().map(|c| c.as_str()).collect();
    let best = names
        .iter()
        .map(|k| (strsim::jaro_winkler(key, k), *k))
        .filter(|(s, _)| *s > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0));
    match best {
        Some((_, k)) => Error::invalid_config(format!("{C} config: unknown channel '{key}'; did you mean '{k}'?")),
        None => Error::invalid_config(format!(
            "{C} config: unknown channel '{key}'; known channels are {}",
            names.join(", ")
        )),
    }
}

impl AlertConfig {
    /// Parses JSON text (empty = defaults: no channels, history only).
    pub fn from_json_str(text: &str) -> Result<Self> {
        Self::from_json(&crate::config::parse_json(C, text)?)
    }

    /// Reads the config object. Keys: `channels` {`email`, `slack`, `webhook`, `alertmanager`},
    /// `thresholds` {`warning`, `critical`, `emergency`} (percent), `escalation` {`enabled`,
    /// `levels`, `escalation_intervals`}, `history_retention_days`, `history_path`,
    /// `alert_cooldown_minutes`, `batch_alerts`, `batch_window_seconds`, `include_system_info`,
    /// `custom_metrics`, `queue_capacity`, `hysteresis` (percentage points), `templates`.
    pub fn from_json(value: &Value) -> Result<Self> {
        let r = ConfigReader::new(C, value, TOP_KEYS)?;
        let d = AlertConfig::default();
        let mut cfg = AlertConfig {
            history_retention_days: r
                .f64("history_retention_days", d.history_retention_days, "days > 0", |x| x > 0.0)?,
            history_path: r.str("history_path")?.filter(|p| !p.is_empty()).map(str::to_owned),
            alert_cooldown_minutes: non_negative(&r, "alert_cooldown_minutes", d.alert_cooldown_minutes)?,
            batch_alerts: r.bool("batch_alerts", d.batch_alerts)?,
            batch_window_seconds: r.f64("batch_window_seconds", d.batch_window_seconds, "seconds in [0, 60]", |x| {
                (0.0..=60.0).contains(&x)
            })?,
            include_system_info: r.bool("include_system_info", d.include_system_info)?,
            queue_capacity: match r.u64("queue_capacity")? {
                None => d.queue_capacity,
                Some(n) if (1..=1_000_000).contains(&n) => n as usize,
                Some(_) => return Err(r.bad("queue_capacity", "a whole number in 1..=1000000")),
            },
            hysteresis: r
                .f64("hysteresis", d.hysteresis, "percentage points in [0, 50)", |x| (0.0..50.0).contains(&x))?,
            ..d
        };
        if let Some(t) = r.get("thresholds") {
            let t = ConfigReader::new("MemoryAlertingService thresholds", t, &["warning", "critical", "emergency"])?;
            let pct = "a percentage in (0, 100]";
            let ok = |x: f64| x > 0.0 && x <= 100.0;
            cfg.thresholds = [
                t.f64("warning", cfg.thresholds[0], pct, ok)?,
                t.f64("critical", cfg.thresholds[1], pct, ok)?,
                t.f64("emergency", cfg.thresholds[2], pct, ok)?,
            ];
            let [w, c, e] = cfg.thresholds;
            if !(w < c && c < e) {
                return Err(Error::invalid_config(format!(
                    "{C} config: thresholds must be ordered warning < critical < emergency, got {w} / {c} / {e}"
                )));
            }
        }
        if let Some(m) = r.get("custom_metrics") {
            let m = ConfigReader::new(
                "MemoryAlertingService custom_metrics",
                m,
                &["cpu_usage", "disk_usage", "active_connections"],
            )?;
            cfg.custom_metrics = CustomMetrics {
                cpu_usage: m.bool("cpu_usage", false)?,
                disk_usage: m.bool("disk_usage", false)?,
                active_connections: m.bool("active_connections", false)?,
            };
        }
        if let Some(t) = r.get("templates") {
            for (name, v) in obj("'templates'", t)? {
                let t = ConfigReader::new("MemoryAlertingService templates.<name>", v, &["subject", "body"])?;
                let (Some(subject), Some(body)) = (t.str("subject")?, t.str("body")?) else {
                    return Err(Error::invalid_config(format!(
                        "{C} config: template '{name}' needs both 'subject' and 'body'"
                    )));
                };
                cfg.templates.insert(name.clone(), Template { subject: subject.into(), body: body.into() });
            }
        }
        if let Some(ch) = r.get("channels") {
            for (key, v) in obj("'channels'", ch)? {
                match ChannelKind::parse(key) {
                    Some(ChannelKind::Email) => cfg.email = Some(email_channel(v)?),
                    Some(k @ ChannelKind::Slack) => cfg.slack = Some(http_channel(k, v)?),
                    Some(k @ ChannelKind::Webhook) => cfg.webhook = Some(http_channel(k, v)?),
                    Some(k @ ChannelKind::Alertmanager) => cfg.alertmanager = Some(http_channel(k, v)?),
                    None => return Err(unknown_channel(key)),
                }
            }
        }
        if let Some(e) = &cfg.email
            && e.enabled
            && e.template != "memory_alert"
            && !cfg.templates.contains_key(&e.template)
        {
            return Err(Error::invalid_config(format!(
                "{C} config: channels.email.template '{}' is not a known template (built in: 'memory_alert'; \
                 add yours under 'templates')",
                e.template
            )));
        }
        if let Some(e) = r.get("escalation") {
            cfg.escalation = cfg.parse_escalation(e)?;
        }
        Ok(cfg)
    }

    /// Is this channel configured and enabled?
    pub fn enabled(&self, kind: ChannelKind) -> bool {
        match kind {
            ChannelKind::Email => self.email.as_ref().is_some_and(|e| e.enabled),
            ChannelKind::Slack => self.slack.as_ref().is_some_and(|c| c.enabled),
            ChannelKind::Webhook => self.webhook.as_ref().is_some_and(|c| c.enabled),
            ChannelKind::Alertmanager => self.alertmanager.as_ref().is_some_and(|c| c.enabled),
        }
    }

    /// The http settings of an HTTP channel.
    pub fn http(&self, kind: ChannelKind) -> Option<&HttpChannel> {
        match kind {
            ChannelKind::Slack => self.slack.as_ref(),
            ChannelKind::Webhook => self.webhook.as_ref(),
            ChannelKind::Alertmanager => self.alertmanager.as_ref(),
            ChannelKind::Email => None,
        }
    }

    /// A channel's threshold and throttle.
    pub fn policy(&self, kind: ChannelKind) -> Option<(State, f64)> {
        match kind {
            ChannelKind::Email => self.email.as_ref().map(|e| (e.threshold, e.throttle_minutes)),
            k => self.http(k).map(|h| (h.threshold, h.throttle_minutes)),
        }
    }

    fn parse_escalation(&self, v: &Value) -> Result<Escalation> {
        let r =
            ConfigReader::new("MemoryAlertingService escalation", v, &["enabled", "levels", "escalation_intervals"])?;
        let mut esc = Escalation { enabled: r.bool("enabled", false)?, ..AlertConfig::default().escalation };
        if let Some(iv) = r.get("escalation_intervals") {
            let arr = iv.as_array().ok_or_else(|| r.bad("escalation_intervals", "a list of minutes"))?;
            let mut prev = 0.0;
            esc.intervals_minutes.clear();
            for (i, x) in arr.iter().enumerate() {
                let m = x.as_f64().filter(|m| m.is_finite()).ok_or_else(|| {
                    Error::invalid_config(format!(
                        "{C} config: escalation.escalation_intervals[{i}] must be a number of minutes, got {}",
                        describe(x)
                    ))
                })?;
                if m < 0.0 {
                    return Err(Error::invalid_config(format!(
                        "{C} config: escalation.escalation_intervals[{i}] is negative ({m}); intervals are minutes >= 0"
                    )));
                }
                if m < prev {
                    return Err(Error::invalid_config(format!(
                        "{C} config: escalation.escalation_intervals must not decrease ({prev} then {m} at [{i}]): each \
                         is how long the condition has lasted when the next level starts"
                    )));
                }
                prev = m;
                esc.intervals_minutes.push(m);
            }
        }
        let Some(levels) = r.get("levels") else {
            if esc.enabled {
                return Err(Error::invalid_config(format!("{C} config: escalation is enabled but has no 'levels'")));
            }
            return Ok(esc);
        };
        let mut numbered: BTreeMap<u32, EscalationLevel> = BTreeMap::new();
        let entries: Vec<(String, &Value)> = match levels {
            Value::Object(m) => m.iter().map(|(k, v)| (k.clone(), v)).collect(),
            // PHP's `[1 => ..., 2 => ...]` encodes as a list when it is 0-based; accept a list as 1, 2, ...
            Value::Array(a) => a.iter().enumerate().map(|(i, v)| ((i + 1).to_string(), v)).collect(),
            other => {
                return Err(Error::invalid_config(format!(
                    "{C} config: escalation.levels must be an object like {{\"1\": {{...}}}}, got {}",
                    describe(other)
                )));
            }
        };
        for (key, v) in entries {
            let n: u32 = key.parse().ok().filter(|n| *n >= 1).ok_or_else(|| {
                Error::invalid_config(format!("{C} config: escalation level '{key}' is not a level number (1, 2, ...)"))
            })?;
            let what = format!("escalation.levels.'{n}'");
            let m = obj(&what, v)?;
            let mut lvl = EscalationLevel::default();
            for (ch, target) in m {
                let kind = ChannelKind::parse(ch).ok_or_else(|| {
                    Error::invalid_config(format!(
                        "{C} config: {what} references unknown channel '{ch}'; known channels are email, slack, \
                         webhook, alertmanager"
                    ))
                })?;
                if !self.enabled(kind) {
                    return Err(Error::invalid_config(format!(
                        "{C} config: {what} references channel '{ch}', which is not configured and enabled under \
                         'channels'"
                    )));
                }
                let off = matches!(target, Value::Bool(false) | Value::Null);
                match (kind, target) {
                    (_, Value::Bool(false)) | (_, Value::Null) => {}
                    (ChannelKind::Email, Value::Bool(true)) => lvl.email = Some(Vec::new()),
                    (ChannelKind::Email, Value::String(a)) => {
                        lvl.email = Some(vec![check_address(&format!("{what}.email"), a)?])
                    }
                    (ChannelKind::Email, v @ Value::Array(_)) => {
                        lvl.email = Some(string_list(&format!("{what}.email"), v)?)
                    }
                    (ChannelKind::Slack, Value::Bool(true)) => lvl.slack = true,
                    (ChannelKind::Alertmanager, Value::Bool(true)) => lvl.alertmanager = true,
                    (ChannelKind::Webhook, Value::Bool(true)) => lvl.webhook = Some(None),
                    (ChannelKind::Webhook, Value::String(u)) => {
                        lvl.webhook = Some(Some(check_url(&format!("{what}.webhook"), u)?))
                    }
                    (_, other) => {
                        return Err(Error::invalid_config(format!(
                            "{C} config: invalid value for {what}.{ch}: expected true/false{}, got {}",
                            match kind {
                                ChannelKind::Email => ", an address or a list of addresses",
                                ChannelKind::Webhook => " or a URL",
                                _ => "",
                            },
                            if matches!(kind, ChannelKind::Webhook) {
                                "a non-URL value".into()
                            } else {
                                describe(other)
                            }
                        )));
                    }
                }
                let _ = off;
            }
            numbered.insert(n, lvl);
        }
        for (i, n) in numbered.keys().enumerate() {
            if *n as usize != i + 1 {
                return Err(Error::invalid_config(format!(
                    "{C} config: escalation.levels must be numbered 1, 2, 3, ... without gaps; level {} is missing",
                    i + 1
                )));
            }
        }
        esc.levels = numbered.into_values().collect();
        if esc.enabled && esc.levels.len() > 1 && esc.intervals_minutes.len() < esc.levels.len() - 1 {
            return Err(Error::invalid_config(format!(
                "{C} config: escalation has {} levels but only {} escalation_intervals; level n+1 starts after \
                 escalation_intervals[n-1] minutes",
                esc.levels.len(),
                esc.intervals_minutes.len()
            )));
        }
        if esc.enabled && esc.intervals_minutes.is_empty() && esc.levels.len() == 1 {
            esc.intervals_minutes.clear();
        }
        Ok(esc)
    }

    /// Every secret string in the config, for redaction of error texts.
    pub(crate) fn secrets(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut url = |s: &Secret| {
            let red = redact_url(&s.0);
            out.push((s.0.clone(), red.clone()));
            // The path alone (a ureq error may print only it).
            if let Some(i) = s.0.find("://")
                && let Some(p) = s.0[i + 3..].find('/')
            {
                let path = &s.0[i + 3 + p..];
                if path.len() > 1 {
                    out.push((path.to_owned(), "/***".into()));
                }
            }
        };
        for k in [ChannelKind::Slack, ChannelKind::Webhook, ChannelKind::Alertmanager] {
            if let Some(h) = self.http(k) {
                url(&h.url);
            }
        }
        for l in &self.escalation.levels {
            if let Some(Some(u)) = &l.webhook {
                url(u);
            }
        }
        for k in [ChannelKind::Slack, ChannelKind::Webhook, ChannelKind::Alertmanager] {
            if let Some(h) = self.http(k) {
                for (_, v) in &h.headers {
                    if v.0.len() >= 4 {
                        out.push((v.0.clone(), "***".into()));
                    }
                }
            }
        }
        if let Some(p) = self.email.as_ref().and_then(|e| e.smtp.password.as_ref())
            && !p.0.is_empty()
        {
            out.push((p.0.clone(), "***".into()));
        }
        // Longest first, so a URL is replaced before its own path.
        out.sort_by_key(|(s, _)| std::cmp::Reverse(s.len()));
        out
    }

    /// The threshold (percent) of a level.
    pub fn threshold_of(&self, level: State) -> f64 {
        match level {
            State::Normal => 0.0,
            State::Warning => self.thresholds[0],
            State::Critical => self.thresholds[1],
            State::Emergency => self.thresholds[2],
        }
    }
}

/// Replaces every secret in `text` by its redacted form.
pub(crate) fn redact(secrets: &[(String, String)], text: &str) -> String {
    let mut s = text.to_owned();
    for (secret, shown) in secrets {
        if s.contains(secret.as_str()) {
            s = s.replace(secret.as_str(), shown);
        }
    }
    s
}
