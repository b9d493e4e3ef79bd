#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| memwarden_fuzz::size_string(data));
