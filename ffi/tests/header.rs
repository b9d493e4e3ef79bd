//! The committed headers must equal what the pinned cbindgen generates now.
//! `MEMWARDEN_BLESS=1 cargo test -p memwarden-ffi --test header` rewrites them.

use std::path::Path;

fn check(name: &str, generated: &str) {
    let committed = Path::new(env!("CARGO_MANIFEST_DIR")).join("../include").join(name);
    if std::env::var_os("MEMWARDEN_BLESS").is_some() {
        std::fs::write(&committed, generated).unwrap();
        return;
    }
    let current = std::fs::read_to_string(&committed).unwrap_or_default();
    assert!(
        current == generated,
        "include/{name} is stale: regenerate it with `MEMWARDEN_BLESS=1 cargo test -p memwarden-ffi --test header`"
    );
}

#[test]
fn c_header_is_up_to_date() {
    check("memwarden.h", include_str!(concat!(env!("OUT_DIR"), "/memwarden.h")));
}

#[test]
fn php_header_is_up_to_date() {
    check("memwarden_php.h", include_str!(concat!(env!("OUT_DIR"), "/memwarden_php.h")));
}

#[test]
fn header_version_matches_the_crate() {
    let h = include_str!(concat!(env!("OUT_DIR"), "/memwarden.h"));
    for (name, v) in [
        ("MW_VERSION_MAJOR", env!("CARGO_PKG_VERSION_MAJOR")),
        ("MW_VERSION_MINOR", env!("CARGO_PKG_VERSION_MINOR")),
        ("MW_VERSION_PATCH", env!("CARGO_PKG_VERSION_PATCH")),
    ] {
        assert!(h.contains(&format!("#define {name} {v}")), "{name} is not {v} in the header");
    }
}
