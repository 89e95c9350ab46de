//! Any bytes as (flags, MAC, BTHome service data): parse, decrypt, and the whole advert engine.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    warden_ble::fuzzing::one(data);
});
