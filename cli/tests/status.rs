//! `memwarden status` run as a user would run it.

use std::process::Command;

fn memwarden(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_memwarden")).args(args).output().expect("run memwarden")
}

#[test]
fn status_json_has_usage_limit_origin_state_and_psi() {
    let out = memwarden(&["status", "--format", "json", "--config", r#"{"memory_limit": "8G"}"#]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["usage"]["current_bytes"].as_u64().unwrap() > 0);
    assert_eq!(v["limit"]["bytes"], 8u64 << 30);
    assert_eq!(v["limit"]["origin"], "explicit");
    assert_eq!(v["state"], "normal");
    let psi_present = std::path::Path::new("/proc/pressure/memory").exists();
    assert_eq!(!v["psi"].is_null(), psi_present);
}

#[test]
fn status_table_names_the_limit_origin() {
    let out = memwarden(&["status"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for needle in ["Current", "Peak", "Limit", "State", "PSI"] {
        assert!(text.contains(needle), "{needle} missing from:\n{text}");
    }
    assert!(["from cgroup_v1", "from cgroup_v2", "from physical"].iter().any(|o| text.contains(o)), "{text}");
}

#[test]
fn bad_config_is_a_clear_error_and_exit_code_1() {
    let out = memwarden(&["status", "--config", r#"{"warning_treshold": 0.5}"#]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("did you mean 'warning_threshold'"), "{err}");
}

/// The rule `memwarden --help` states: bad input is 1 in every subcommand, usage errors from the
/// argument parser are 2.
#[test]
fn exit_codes_follow_the_documented_rule() {
    let help = String::from_utf8(memwarden(&["--help"]).stdout).unwrap();
    assert!(help.contains("Exit status") && help.contains("1  bad input") && help.contains("2  usage error"), "{help}");
    let bad_input: [&[&str]; 5] = [
        &["status", "--config", "{not json"],
        &["monitor", "--interval", "0"],
        &["monitor", "--pid", "999999999", "--duration", "0"],
        &["analyze", "/nonexistent-dir/run.json"],
        &["plot", "/nonexistent-dir/run.json", "-o", "/nonexistent-dir/c.svg"],
    ];
    for args in bad_input {
        let out = memwarden(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stderr).starts_with("memwarden: "), "{args:?}");
    }
    let usage: [&[&str]; 5] = [
        &["frobnicate"],
        &["status", "--no-such-flag"],
        &["status", "--format", "xml"],
        &["analyze"],
        &["plot", "x.json", "--format", "gif", "-o", "x.gif"],
    ];
    for args in usage {
        let out = memwarden(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
}
