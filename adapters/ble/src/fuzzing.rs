//! The body of the fuzz target (`fuzz/fuzz_targets/bthome.rs`), kept in the crate so the stable
//! test suite runs it too (`tests/fuzz_corpus.rs`): any bytes through the BTHome parser, the
//! decryption and the whole advert engine must never panic.

use std::sync::Arc;
use std::time::Instant;

use warden_core::testing::{MemoryState, StaticCredentials};

use crate::bthome;
use crate::crypto;
use crate::engine::{Advert, BINDKEY, Engine, device_id};

/// The key the fuzzed engine holds for every device whose first input byte is odd.
pub const FUZZ_KEY: [u8; 16] = [0x42; 16];

/// Input layout: byte 0 = flags (bit 0: the device has a bind key), bytes 1-6 = the advertiser's
/// MAC, the rest = service data under 0xFCD2.
pub fn one(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let Some((mac, sd)) = rest.split_first_chunk::<6>() else {
        return;
    };
    if let Ok(f) = bthome::frame(sd) {
        let _ = bthome::parse_objects(f.body).map(|p| p.points());
        let _ =
            crypto::open(&FUZZ_KEY, mac, f.info, f.body).map(|o| bthome::parse_objects(&o.objects));
    }
    let _ = crypto::claimed_counter(sd);
    let mut creds = StaticCredentials::default();
    if flags & 1 == 1
        && let Some(id) = device_id(mac)
    {
        creds = creds.with(&id, BINDKEY, &FUZZ_KEY);
    }
    let mut e = Engine::new(
        &crate::Config::default(),
        Arc::new(MemoryState::default()),
        Arc::new(creds),
    );
    let a = Advert {
        mac: *mac,
        bthome: Some(sd.to_vec()),
        ..Advert::default()
    };
    // twice: the second pass meets the first one's dedup and counter state
    let _ = e.advert(&a, Instant::now());
    let _ = e.advert(&a, Instant::now());
}
