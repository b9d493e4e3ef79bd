#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| memwarden_fuzz::db_url(data));
