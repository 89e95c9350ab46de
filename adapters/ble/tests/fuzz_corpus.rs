//! The fuzz target's body on the stable toolchain: a seed corpus of real adverts (plain, encrypted
//! under the fuzz key, with an included MAC) and every truncation and single-bit flip of each,
//! plus pseudo-random inputs. Nothing may panic; the positive control checks the seeds are adverts
//! the engine really accepts, so the mutations start from meaningful input.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::sync::Arc;
use std::time::Instant;

use warden_ble::bthome::DeviceInfo;
use warden_ble::engine::{Advert, BINDKEY, Engine, device_id};
use warden_ble::fuzzing::{FUZZ_KEY, one};
use warden_ble::{Config, crypto};
use warden_core::AdapterEvent;
use warden_core::testing::{MemoryState, StaticCredentials};

const MAC: [u8; 6] = [0xc4, 0x7c, 0x8d, 0x6a, 0x01, 0x02];

fn seeds() -> Vec<Vec<u8>> {
    let objects = [
        0x00, 0x07, 0x01, 0x64, 0x02, 0xca, 0x09, 0x3a, 0x01, 0x53, 0x02, b'h', b'i',
    ];
    let mut plain = vec![0u8];
    plain.extend(MAC);
    plain.push(0x40);
    plain.extend(objects);
    let mut enc = vec![1u8];
    enc.extend(MAC);
    enc.push(0x41);
    enc.extend(crypto::seal(&FUZZ_KEY, &MAC, DeviceInfo(0x41), 9, &objects));
    let mut with_mac = vec![0u8];
    with_mac.extend(MAC);
    with_mac.push(0x42);
    with_mac.extend(MAC.iter().rev());
    with_mac.extend([0x01, 0x64]);
    vec![plain, enc, with_mac]
}

#[test]
fn the_seeds_are_accepted_adverts() {
    for (i, s) in seeds().into_iter().enumerate() {
        let mut creds = StaticCredentials::default();
        if s[0] & 1 == 1 {
            creds = creds.with(&device_id(&MAC).unwrap(), BINDKEY, &FUZZ_KEY);
        }
        let mut e = Engine::new(
            &Config::default(),
            Arc::new(MemoryState::default()),
            Arc::new(creds),
        );
        let a = Advert {
            mac: MAC,
            bthome: Some(s[7..].to_vec()),
            ..Advert::default()
        };
        let ev = e.advert(&a, Instant::now());
        assert!(
            ev.iter().any(|e| matches!(e, AdapterEvent::Uplink(_))),
            "seed {i}: {ev:?}"
        );
    }
}

#[test]
fn truncations_bit_flips_and_noise_never_panic() {
    let mut n = 0;
    for s in seeds() {
        for cut in 0..=s.len() {
            one(&s[..cut]);
            n += 1;
        }
        for byte in 0..s.len() {
            for bit in 0..8 {
                let mut m = s.clone();
                m[byte] ^= 1 << bit;
                one(&m);
                n += 1;
            }
        }
    }
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..3_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let len = (x % 300) as usize;
        let data: Vec<u8> = (0..len).map(|i| (x >> (i % 56)) as u8 ^ i as u8).collect();
        one(&data);
        n += 1;
    }
    assert!(n > 3_000);
}
