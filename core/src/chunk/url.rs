//! Connection strings: URLs (`sqlite:///path.db`, `postgres://...`, `mysql://...`) and PHP's
//! PDO DSNs (`sqlite:/path`, `pgsql:host=..;dbname=..`, `mysql:host=..;dbname=..`).

use crate::error::{Error, Result};

/// Where a native connection goes, parsed and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnSpec {
    /// A SQLite file, or `:memory:`.
    Sqlite { path: String },
    /// A libpq-style URL or key=value string for the postgres crate.
    Postgres { config: String, display: String },
    /// A mysql:// URL for the mysql crate.
    Mysql { url: String, display: String },
}

impl ConnSpec {
    /// Parses `text`; `user` / `password` fill in what a PDO DSN leaves out (PDO passes them
    /// as separate constructor arguments).
    pub fn parse(text: &str, user: Option<&str>, password: Option<&str>) -> Result<ConnSpec> {
        let t = text.trim();
        let bad =
            |why: &str| Error::invalid_argument(format!("malformed connection string '{}': {why}", mask_password(t)));
        let (scheme, rest) = t.split_once(':').ok_or_else(|| {
            bad("expected a URL (sqlite:///path.db, postgres://..., mysql://...) or a PDO DSN (sqlite:/path, pgsql:host=..., mysql:host=...)")
        })?;
        match scheme.to_ascii_lowercase().as_str() {
            "sqlite" | "sqlite3" => {
                let path = if let Some(p) = rest.strip_prefix("//") {
                    // sqlite:///abs/path, sqlite://relative/path, sqlite:///:memory:; SQLAlchemy's
                    // sqlite:////abs/path is the same absolute path (one leading slash kept).
                    let p = p.strip_prefix('/').map(|s| {
                        if s.starts_with(":memory:") {
                            s.to_string()
                        } else {
                            format!("/{}", s.trim_start_matches('/'))
                        }
                    });
                    match p {
                        Some(p) => p,
                        None => rest[2..].to_string(),
                    }
                } else {
                    rest.to_string()
                };
                let path = path.split('?').next().unwrap_or("").to_string();
                if path.is_empty() {
                    return Err(bad("no database path (write sqlite:///path/to/file.db or sqlite::memory:)"));
                }
                Ok(ConnSpec::Sqlite { path })
            }
            "postgres" | "postgresql" => {
                if !rest.starts_with("//") {
                    return Err(bad("expected postgres://user@host:port/database"));
                }
                let mut url = t.to_string();
                if user.is_some() || password.is_some() {
                    url = inject_credentials(t, user, password).ok_or_else(|| bad("cannot add user/password"))?;
                }
                check_url_host(&url).map_err(|w| bad(&w))?;
                Ok(ConnSpec::Postgres { display: mask_password(&url), config: url })
            }
            "pgsql" => {
                let kv = parse_dsn_pairs(rest).map_err(|w| bad(&w))?;
                let mut parts = Vec::new();
                for (k, v) in &kv {
                    let key = match k.as_str() {
                        "host" | "port" | "user" | "password" | "sslmode" | "connect_timeout" | "options" => k.as_str(),
                        "dbname" => "dbname",
                        "application_name" => "application_name",
                        other => return Err(bad(&format!("unknown key '{other}' in a pgsql DSN"))),
                    };
                    parts.push(format!("{key}='{}'", v.replace('\\', "\\\\").replace('\'', "\\'")));
                }
                if !kv.iter().any(|(k, _)| k == "user") {
                    parts.push(format!("user='{}'", user.unwrap_or("postgres").replace('\'', "\\'")));
                }
                if let (Some(p), false) = (password, kv.iter().any(|(k, _)| k == "password")) {
                    parts.push(format!("password='{}'", p.replace('\'', "\\'")));
                }
                if !kv.iter().any(|(k, _)| k == "host") {
                    return Err(bad("a pgsql DSN needs host=..."));
                }
                let display = format!(
                    "pgsql:{}",
                    kv.iter()
                        .map(|(k, v)| if k == "password" { format!("{k}=***") } else { format!("{k}={v}") })
                        .collect::<Vec<_>>()
                        .join(";")
                );
                Ok(ConnSpec::Postgres { config: parts.join(" "), display })
            }
            "mysql" | "mariadb" => {
                if let Some(after) = rest.strip_prefix("//") {
                    let mut url = format!("mysql://{after}");
                    if user.is_some() || password.is_some() {
                        url =
                            inject_credentials(&url, user, password).ok_or_else(|| bad("cannot add user/password"))?;
                    }
                    check_url_host(&url).map_err(|w| bad(&w))?;
                    return Ok(ConnSpec::Mysql { display: mask_password(&url), url });
                }
                let kv = parse_dsn_pairs(rest).map_err(|w| bad(&w))?;
                let mut host = None;
                let mut port = None;
                let mut db = None;
                let mut socket = None;
                for (k, v) in &kv {
                    match k.as_str() {
                        "host" => host = Some(v.clone()),
                        "port" => {
                            v.parse::<u16>().map_err(|_| bad(&format!("port '{v}' is not a number")))?;
                            port = Some(v.clone())
                        }
                        "dbname" => db = Some(v.clone()),
                        "unix_socket" => socket = Some(v.clone()),
                        "charset" => {}
                        other => return Err(bad(&format!("unknown key '{other}' in a mysql DSN"))),
                    }
                }
                let host = match (&host, &socket) {
                    (Some(h), _) => h.clone(),
                    (None, Some(_)) => "localhost".into(),
                    (None, None) => return Err(bad("a mysql DSN needs host=... or unix_socket=...")),
                };
                let enc = |s: &str| percent_encode(s);
                let cred = match (user, password) {
                    (Some(u), Some(p)) => format!("{}:{}@", enc(u), enc(p)),
                    (Some(u), None) => format!("{}@", enc(u)),
                    (None, _) => "root@".into(),
                };
                let mut url =
                    format!("mysql://{cred}{host}:{}/{}", port.as_deref().unwrap_or("3306"), db.unwrap_or_default());
                if let Some(s) = socket {
                    url.push_str(&format!("?socket={}", enc(&s)));
                }
                Ok(ConnSpec::Mysql { display: mask_password(&url), url })
            }
            other => Err(bad(&format!(
                "unknown scheme '{other}': expected sqlite, postgres, postgresql, pgsql, mysql or mariadb"
            ))),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            ConnSpec::Sqlite { path } => format!("sqlite:{path}"),
            ConnSpec::Postgres { display, .. } | ConnSpec::Mysql { display, .. } => display.clone(),
        }
    }
}

fn parse_dsn_pairs(rest: &str) -> std::result::Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for part in rest.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=').ok_or_else(|| format!("'{part}' is not key=value"))?;
        out.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    if out.is_empty() {
        return Err("no host=...;dbname=... pairs".into());
    }
    Ok(out)
}

fn check_url_host(url: &str) -> std::result::Result<(), String> {
    let after = url.split_once("://").map(|x| x.1).unwrap_or("");
    let authority = after.split(['/', '?']).next().unwrap_or("");
    let host = authority.rsplit_once('@').map(|x| x.1).unwrap_or(authority);
    if host.is_empty() {
        return Err("no host".into());
    }
    if let Some((_, port)) = host.rsplit_once(':')
        && !host.ends_with(']')
        && port.parse::<u16>().is_err()
    {
        return Err(format!("port '{port}' is not a number"));
    }
    Ok(())
}

fn inject_credentials(url: &str, user: Option<&str>, password: Option<&str>) -> Option<String> {
    let (scheme, after) = url.split_once("://")?;
    let (authority, path) = match after.find(['/', '?']) {
        Some(i) => (&after[..i], &after[i..]),
        None => (after, ""),
    };
    let (old_cred, host) = match authority.rsplit_once('@') {
        Some((c, h)) => (Some(c), h),
        None => (None, authority),
    };
    let old_user = old_cred.map(|c| c.split(':').next().unwrap_or(""));
    let u = user.map(percent_encode).or(old_user.map(String::from)).unwrap_or_default();
    let cred = match password {
        Some(p) => format!("{u}:{}@", percent_encode(p)),
        None => match old_cred {
            Some(c) if user.is_none() => format!("{c}@"),
            _ => format!("{u}@"),
        },
    };
    Some(format!("{scheme}://{cred}{host}{path}"))
}

fn percent_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The connection string with any password replaced by `***`, for messages.
pub fn mask_password(text: &str) -> String {
    if let Some((scheme, after)) = text.split_once("://") {
        let end = after.find(['/', '?']).unwrap_or(after.len());
        let authority = &after[..end];
        if let Some((cred, host)) = authority.rsplit_once('@')
            && let Some((user, _)) = cred.split_once(':')
        {
            return format!("{scheme}://{user}:***@{host}{}", &after[end..]);
        }
        return text.to_string();
    }
    text.split(';')
        .map(|p| match p.split_once('=') {
            Some((k, _)) if k.trim().eq_ignore_ascii_case("password") => format!("{k}=***"),
            _ => p.to_string(),
        })
        .collect::<Vec<_>>()
        .join(";")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_forms() {
        let p = |t| match ConnSpec::parse(t, None, None).unwrap() {
            ConnSpec::Sqlite { path } => path,
            other => panic!("{other:?}"),
        };
        assert_eq!(p("sqlite:///tmp/x.db"), "/tmp/x.db");
        assert_eq!(p("sqlite:////tmp/x.db"), "/tmp/x.db");
        assert_eq!(p("sqlite://rel/x.db"), "rel/x.db");
        assert_eq!(p("sqlite:/tmp/x.db"), "/tmp/x.db");
        assert_eq!(p("sqlite::memory:"), ":memory:");
        assert_eq!(p("sqlite:///:memory:"), ":memory:");
        assert!(ConnSpec::parse("sqlite:", None, None).unwrap_err().message().contains("no database path"));
    }

    #[test]
    fn pdo_dsns() {
        match ConnSpec::parse("pgsql:host=127.0.0.1;port=5432;dbname=test", Some("postgres"), Some("s'x")).unwrap() {
            ConnSpec::Postgres { config, display } => {
                assert!(config.contains("host='127.0.0.1'") && config.contains("dbname='test'"), "{config}");
                assert!(config.contains("password='s\\'x'"), "{config}");
                assert!(!display.contains("s'x"));
            }
            other => panic!("{other:?}"),
        }
        match ConnSpec::parse("mysql:host=127.0.0.1;port=3306;dbname=test;charset=utf8mb4", Some("root"), None).unwrap()
        {
            ConnSpec::Mysql { url, .. } => assert_eq!(url, "mysql://root@127.0.0.1:3306/test"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn malformed_strings_are_named_and_passwords_masked() {
        let e = ConnSpec::parse("postgres://u:secret@host:99999/db", None, None).unwrap_err();
        assert!(e.message().contains("port '99999'"), "{e}");
        assert!(!e.message().contains("secret"), "{e}");
        let e = ConnSpec::parse("oracle://x", None, None).unwrap_err();
        assert!(e.message().contains("unknown scheme 'oracle'"), "{e}");
        let e = ConnSpec::parse("no-colon-here", None, None).unwrap_err();
        assert!(e.message().contains("no-colon-here"), "{e}");
        let e = ConnSpec::parse("mysql:dbname=x", None, None).unwrap_err();
        assert!(e.message().contains("host="), "{e}");
        let e = ConnSpec::parse("pgsql:host=h;password=pw;bogus=1", None, None).unwrap_err();
        assert!(e.message().contains("bogus") && !e.message().contains("pw;"), "{e}");
        assert_eq!(mask_password("mysql://root:pw@h/db"), "mysql://root:***@h/db");
    }
}
