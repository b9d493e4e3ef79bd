//! Generates the C header and its PHP-loadable variant into OUT_DIR. The committed copies
//! in include/ are compared against these by `tests/header.rs` (MEMWARDEN_BLESS=1 rewrites them).

use std::path::PathBuf;

fn main() {
    let crate_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).expect("cbindgen.toml");
    let bindings = cbindgen::Builder::new()
        .with_crate(&crate_dir)
        .with_config(config)
        .generate()
        .expect("cbindgen could not generate the header");
    let mut c = Vec::new();
    bindings.write(&mut c);
    let c = String::from_utf8(c).unwrap();
    std::fs::write(out.join("memwarden.h"), &c).unwrap();
    std::fs::write(out.join("memwarden_php.h"), php_variant(&c)).unwrap();
}

/// PHP's FFI parser takes no preprocessor lines and no `extern "C"`; constants become comments.
fn php_variant(c: &str) -> String {
    let mut s =
        String::from("/* memwarden.h for PHP's FFI::cdef: generated from include/memwarden.h; do not edit. */\n");
    let mut in_comment = false;
    for line in c.lines() {
        let t = line.trim_start();
        if in_comment || t.starts_with("/*") {
            in_comment = !t.contains("*/");
            continue;
        }
        if t.starts_with('#')
            || t.starts_with("extern \"C\"")
            || t.starts_with("}  // extern \"C\"")
            || t.starts_with("//")
        {
            continue;
        }
        if line.trim().is_empty() && s.ends_with("\n\n") {
            continue;
        }
        s.push_str(line);
        s.push('\n');
    }
    s
}
