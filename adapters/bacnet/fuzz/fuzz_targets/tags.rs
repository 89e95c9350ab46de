//! Tagged property data: lengths, extended tags, nesting depth and element caps.
#![no_main]

use libfuzzer_sys::fuzz_target;
use warden_bacnet::tag;

fuzz_target!(|data: &[u8]| {
    let _ = tag::data(data, None);
    let _ = tag::app_value(data);
    if let Some((&n, rest)) = data.split_first() {
        let _ = tag::data(rest, Some(n & 0x3f));
    }
});
