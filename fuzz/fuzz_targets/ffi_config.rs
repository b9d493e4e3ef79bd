#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| memwarden_fuzz::ffi_config(data));
