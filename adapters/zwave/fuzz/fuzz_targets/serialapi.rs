//! Any bytes as a Serial API stream, a frame's data and a command payload: see
//! `warden_zwave::fuzzing::one`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    warden_zwave::fuzzing::one(data);
});
