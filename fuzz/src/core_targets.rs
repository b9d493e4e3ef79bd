// The bodies of the fuzz targets that need only memwarden-core. Compiled twice: into the fuzz
// crate (libFuzzer drives them) and into core/tests/fuzz_corpus.rs (the committed corpora and
// regression inputs are replayed in the test command). Each returns normally for any input;
// a panic, or a failed invariant (an assert), is a finding.

use memwarden_core::chunk::{ConnSpec, Dialect, ParamStyle, QueryOptions, mask_password};
use memwarden_core::config::parse_json;
use memwarden_core::monitor::{analyze, read_export};
use memwarden_core::size::{Size, format_size, parse_size, size_from_i64};
use memwarden_core::{
    ChunkConfig, Container, ContainerConfig, Error, IterConfig, ManagerConfig, MemoryManager, PoolConfig,
    RequestConfig, State, TrackerConfig,
};

/// Every config error must say something.
fn said_something(e: &Error) {
    assert!(!e.message().trim().is_empty(), "an error without a message: {e:?}");
}

/// `size_string`: PHP-style sizes (`512M`, `-1`, ...) and signed byte counts.
pub fn size_string(data: &[u8]) {
    if data.len() >= 8 {
        let n = i64::from_le_bytes(data[..8].try_into().unwrap());
        match size_from_i64(n) {
            Ok(Size::Unlimited) => assert_eq!(n, -1),
            Ok(Size::Bytes(b)) => assert_eq!(b as i64, n),
            Err(e) => assert!(n < -1 && e.message().contains(&n.to_string()), "{e}"),
        }
    }
    let Ok(text) = std::str::from_utf8(data) else { return };
    match parse_size(text) {
        Ok(Size::Unlimited) => assert_eq!(text.trim(), "-1"),
        // What was parsed formats back to the same number of bytes.
        Ok(Size::Bytes(b)) => assert_eq!(parse_size(&format_size(b)).unwrap(), Size::Bytes(b), "{text:?}"),
        // The message quotes the text it refused.
        Err(e) => assert!(e.message().contains(&format!("'{text}'")), "{text:?}: {e}"),
    }
}

/// Which config parser `json_config` (and `ffi_config`) feeds: the first input byte modulo
/// this table's length.
pub const CONFIG_COMPONENTS: &[&str] = &[
    "MemoryManager",
    "MemoryPool",
    "LazyContainer",
    "ResourceTracker",
    "RequestTracker",
    "ChunkedDatabaseProcessor",
    "ChunkedDatabaseProcessor.process",
    "StreamingIterator",
    "LazyIterator",
    "FilteredIterator",
    "MemoryAlertingService",
];

/// `json_config`: every JSON config parser the C ABI takes, dispatching on the first byte.
pub fn json_config(data: &[u8]) {
    let Some((&which, rest)) = data.split_first() else { return };
    let Ok(text) = std::str::from_utf8(rest) else { return };
    let component = CONFIG_COMPONENTS[which as usize % CONFIG_COMPONENTS.len()];
    let value = match parse_json(component, text) {
        Ok(v) => v,
        Err(e) => {
            said_something(&e);
            assert!(e.message().contains("malformed JSON"), "{e}");
            return;
        }
    };
    let result: memwarden_core::Result<()> = match which as usize % CONFIG_COMPONENTS.len() {
        0 => ManagerConfig::from_json(&value).and_then(|_| MemoryManager::from_json(&value).map(drop)),
        1 => PoolConfig::from_json(&value).map(|c| assert!(c.min_size <= c.max_size && c.max_size >= 1)),
        2 => ContainerConfig::from_json(&value).and_then(|_| Container::<u32>::from_json(&value).map(drop)),
        3 => TrackerConfig::from_json(&value).map(drop),
        4 => RequestConfig::from_json(&value).map(drop),
        5 => ChunkConfig::from_json(&value).map(|c| assert!(c.chunk_size >= 1)),
        6 => QueryOptions::from_json(&value).map(drop),
        7 => IterConfig::from_json("StreamingIterator", &value).map(drop),
        8 => IterConfig::from_json("LazyIterator", &value).map(drop),
        9 => IterConfig::from_json("FilteredIterator", &value).map(drop),
        _ => memwarden_core::AlertConfig::from_json(&value).and_then(|cfg| {
            // Compiles the config's templates too, as constructing the service does.
            memwarden_core::alert::preview_email(&cfg, "memory_alert", State::Warning, "fuzz", 80.0, None).map(drop)
        }),
    };
    if let Err(e) = result {
        said_something(&e);
    }
}

/// `db_url`: connection URLs and PDO DSNs. Byte 0: bit 0 = pass a user, bit 1 = pass a
/// password; the rest is `text\0user\0password`.
pub fn db_url(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else { return };
    let Ok(rest) = std::str::from_utf8(rest) else { return };
    let mut parts = rest.splitn(3, '\0');
    let text = parts.next().unwrap_or("");
    let user = parts.next().filter(|_| flags & 1 != 0);
    let password = parts.next().filter(|_| flags & 2 != 0);
    let _ = mask_password(text);
    match ConnSpec::parse(text, user, password) {
        Ok(spec) => {
            let shown = spec.describe();
            assert!(!shown.is_empty());
            // A password given separately never shows in the description: where the text
            // shows `p`, it shows it with any other password too (`mysq` is in "mysql://").
            if let Some(p) = password.filter(|p| !p.is_empty() && shown.contains(*p)) {
                let other = ConnSpec::parse(text, user, Some("\u{1}")).map(|s| s.describe()).unwrap_or_default();
                assert!(other.contains(p), "{shown} shows the password {p:?}");
            }
        }
        Err(e) => assert!(e.message().contains("connection string"), "{e}"),
    }
    if let Err(e) = Dialect::parse(text) {
        said_something(&e);
    }
    if let Err(e) = ParamStyle::parse(text) {
        said_something(&e);
    }
}

/// `analyze_input`: the file `memwarden analyze` reads (a monitor export), then the analysis.
pub fn analyze_input(data: &[u8]) {
    thread_local! {
        static PATH: std::path::PathBuf = std::env::temp_dir().join(format!(
            "memwarden-fuzz-analyze-{}-{:?}.json",
            std::process::id(),
            std::thread::current().id()
        ));
    }
    PATH.with(|path| {
        std::fs::write(path, data).expect("write the input file");
        match read_export(path) {
            Ok(export) => {
                let a = analyze(&export.samples);
                assert_eq!(a.samples, export.samples.len());
                serde_json::to_string(&a).expect("the analysis serializes");
            }
            Err(e) => {
                let shown = path.display().to_string();
                assert!(e.message().contains(&shown), "the error does not name the file: {e}");
            }
        }
        let _ = std::fs::remove_file(path);
    });
}

/// `alert_template`: a user's e-mail template rendered with the seed's variables. Byte 0
/// picks the level; the rest is `subject\0body\0message`.
pub fn alert_template(data: &[u8]) {
    use memwarden_core::alert::{AlertConfig, Template, preview_email};
    let Some((&which, rest)) = data.split_first() else { return };
    let Ok(rest) = std::str::from_utf8(rest) else { return };
    let mut parts = rest.splitn(3, '\0');
    let subject = parts.next().unwrap_or("").to_string();
    let body = parts.next().unwrap_or("").to_string();
    let message = parts.next().unwrap_or("memory usage 91.5% reached the critical threshold (90%)");
    let level = [State::Warning, State::Critical, State::Emergency][which as usize % 3];
    let mut cfg = AlertConfig::default();
    cfg.templates.insert("custom".into(), Template { subject, body });
    let system = serde_json::json!({"cpu_percent": 12.5, "memory_total_mb": 2048, "disk_free_mb": 100});
    match preview_email(&cfg, "custom", level, message, 91.5, Some(system)) {
        Ok((subject, _body)) => assert!(!subject.contains(['\r', '\n']), "a subject with a line break: {subject:?}"),
        Err(e) => {
            said_something(&e);
            assert!(e.message().contains("template"), "{e}");
        }
    }
}
