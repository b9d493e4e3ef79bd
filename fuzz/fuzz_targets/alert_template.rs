#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| memwarden_fuzz::alert_template(data));
