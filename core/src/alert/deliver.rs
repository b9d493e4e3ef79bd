//! Sending: SMTP with lettre, JSON POSTs with ureq, retries with exponential backoff. Runs only
//! on the delivery thread; every error text passes through redaction before it is kept.

use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use lettre::message::{Mailbox, header::ContentType};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{Message, SmtpTransport, Transport};
use serde_json::Value;

use super::clock::secs;
use super::config::{EmailChannel, HttpChannel, Secret, TlsMode};
use crate::error::{Error, Result};

/// The result of one attempt.
pub(crate) struct Attempt {
    pub ok: bool,
    pub error: Option<String>,
    /// Try again (transport error, 5xx, 429)?
    pub retry: bool,
    /// The server's Retry-After, when it gave one.
    pub retry_after: Option<Duration>,
}

pub(crate) fn smtp_transport(e: &EmailChannel) -> Result<SmtpTransport> {
    let s = &e.smtp;
    let bad = |err: lettre::transport::smtp::Error| {
        Error::invalid_config(format!("MemoryAlertingService config: channels.email.smtp: {err}"))
    };
    let mut b = match s.tls {
        TlsMode::None => SmtpTransport::builder_dangerous(&s.host),
        TlsMode::StartTls => SmtpTransport::starttls_relay(&s.host).map_err(bad)?,
        TlsMode::Tls => SmtpTransport::relay(&s.host).map_err(bad)?,
    }
    .port(s.port)
    .timeout(Some(secs(s.timeout)));
    if let Some(u) = &s.username {
        let pw = s.password.as_ref().map(|p| p.expose().to_owned()).unwrap_or_default();
        b = b.credentials(Credentials::new(u.clone(), pw));
    }
    Ok(b.build())
}

pub(crate) fn send_email(
    t: &SmtpTransport,
    e: &EmailChannel,
    recipients: &[String],
    subject: &str,
    body: String,
) -> Attempt {
    let fail = |msg: String, retry: bool| Attempt { ok: false, error: Some(msg), retry, retry_after: None };
    let mut b = Message::builder().subject(subject).header(ContentType::TEXT_PLAIN);
    match Mailbox::from_str(&e.smtp.from) {
        Ok(m) => b = b.from(m),
        Err(err) => return fail(format!("bad sender: {err}"), false),
    }
    for r in recipients {
        match Mailbox::from_str(r) {
            Ok(m) => b = b.to(m),
            Err(err) => return fail(format!("bad recipient '{r}': {err}"), false),
        }
    }
    let msg = match b.body(body) {
        Ok(m) => m,
        Err(err) => return fail(format!("cannot build the message: {err}"), false),
    };
    match t.send(&msg) {
        Ok(_) => Attempt { ok: true, error: None, retry: false, retry_after: None },
        Err(err) => {
            let retry = !err.is_permanent();
            // A read timeout surfaces from the socket as EAGAIN ("resource temporarily
            // unavailable"); say what happened instead.
            let timed_out = err.is_timeout()
                || std::error::Error::source(&err).and_then(|s| s.downcast_ref::<std::io::Error>()).is_some_and(|io| {
                    matches!(io.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)
                });
            if timed_out {
                return fail(
                    format!("smtp: timed out after {} s waiting for {}:{}", e.smtp.timeout, e.smtp.host, e.smtp.port),
                    retry,
                );
            }
            fail(format!("smtp: {err}"), retry)
        }
    }
}

pub(crate) fn post_json(h: &HttpChannel, url: &Secret, path_suffix: &str, body: &Value) -> Attempt {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(secs(h.timeout)))
        .http_status_as_error(false)
        .user_agent(concat!("memwarden/", env!("CARGO_PKG_VERSION")))
        .build()
        .into();
    let target = if path_suffix.is_empty() {
        url.expose().to_owned()
    } else {
        format!("{}{path_suffix}", url.expose().trim_end_matches('/'))
    };
    let mut req = agent.post(&target).header("content-type", "application/json");
    for (k, v) in &h.headers {
        req = req.header(k.as_str(), v.expose());
    }
    let text = body.to_string();
    match req.send(text.as_bytes()) {
        Ok(resp) => {
            let code = resp.status().as_u16();
            if (200..300).contains(&code) {
                return Attempt { ok: true, error: None, retry: false, retry_after: None };
            }
            let retry_after = resp
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<f64>().ok())
                .map(|s| secs(s.min(30.0)));
            Attempt { ok: false, error: Some(format!("HTTP {code}")), retry: code == 429 || code >= 500, retry_after }
        }
        Err(e) => Attempt { ok: false, error: Some(format!("{e}")), retry: true, retry_after: None },
    }
}

/// Sleeps `d`, waking early when `stop` is set. Returns false when stopped.
pub(crate) fn pause(d: Duration, stop: &AtomicBool) -> bool {
    let until = Instant::now() + d;
    while Instant::now() < until {
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        std::thread::sleep((until - Instant::now()).min(Duration::from_millis(20)));
    }
    !stop.load(Ordering::Relaxed)
}

/// Backoff before retry `n` (1-based): 200 ms doubling, at most 5 s; a server's Retry-After
/// (at most 30 s) wins when it is longer.
pub(crate) fn backoff(n: u32, retry_after: Option<Duration>) -> Duration {
    let base = Duration::from_millis(200).saturating_mul(1u32 << (n - 1).min(10)).min(Duration::from_secs(5));
    retry_after.map_or(base, |r| r.max(base))
}
