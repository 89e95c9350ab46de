//! Warden's S2 primitives against zwave-js's own (tests/peers/zwave/s2_vectors.cjs runs
//! @zwave-js/core's deriveNetworkKeys, deriveTempKeys, computePRK, computeNoncePRK + deriveMEI,
//! CtrDRBG and encryptAES128CCM on inputs chosen here, random each run).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::Path;
use std::process::Command;

use warden_zwave::s2::crypto;

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    for x in b.iter_mut() {
        *x = rand::random();
    }
    b
}

#[test]
fn key_derivation_drbg_and_ccm_match_zwave_js() {
    let peers = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/peers/zwave");
    assert!(
        peers.join("node_modules/@zwave-js/core").exists(),
        "zwave-js missing: run tests/scripts/install-zwave.sh"
    );
    for _ in 0..5 {
        let network_key: [u8; 16] = random();
        let prk: [u8; 16] = random();
        let (shared, pub_a, pub_b): ([u8; 32], [u8; 32], [u8; 32]) = (random(), random(), random());
        let (sender_ei, receiver_ei): ([u8; 16], [u8; 16]) = (random(), random());
        let ccm_key: [u8; 16] = random();
        let ccm_nonce: [u8; 13] = random();
        let aad: [u8; 9] = random();
        let plaintext: [u8; 23] = random();
        let input = serde_json::json!({
            "network_key": hex(&network_key), "prk": hex(&prk), "shared": hex(&shared),
            "pub_a": hex(&pub_a), "pub_b": hex(&pub_b), "sender_ei": hex(&sender_ei),
            "receiver_ei": hex(&receiver_ei), "ccm_key": hex(&ccm_key), "ccm_nonce": hex(&ccm_nonce),
            "aad": hex(&aad), "plaintext": hex(&plaintext),
        });
        let o = Command::new("node")
            .arg(peers.join("s2_vectors.cjs"))
            .arg(input.to_string())
            .current_dir(&peers)
            .output()
            .expect("node");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let want: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();

        let nk = crypto::network_keys(&network_key);
        assert_eq!(want["key_ccm"], hex(&nk.key_ccm));
        assert_eq!(want["personalization"], hex(&nk.personalization));
        assert_eq!(want["key_mpan"], hex(&nk.key_mpan));
        let tk = crypto::temp_keys(&prk);
        assert_eq!(want["temp_key_ccm"], hex(&tk.key_ccm));
        assert_eq!(want["temp_personalization"], hex(&tk.personalization));
        assert_eq!(
            want["temp_prk"],
            hex(&crypto::temp_prk(&shared, &pub_a, &pub_b))
        );
        let mei = crypto::mei(&sender_ei, &receiver_ei);
        assert_eq!(want["mei"], hex(&mei));
        let mut drbg = crypto::CtrDrbg::new(&mei, &nk.personalization);
        for n in want["nonces"].as_array().unwrap() {
            assert_eq!(*n, hex(&drbg.generate()[..13]));
        }
        let sealed = crypto::ccm_seal(&ccm_key, &ccm_nonce, &aad, &plaintext);
        assert_eq!(want["sealed"], hex(&sealed));
        assert_eq!(
            crypto::ccm_open(&ccm_key, &ccm_nonce, &aad, &sealed).unwrap(),
            plaintext
        );
    }
}

/// S2 multicast frames zwave-js's SecurityManager2 and Security2CC make for a group (MGRP, the
/// nonce from the group's MPAN) are decrypted by Warden once it holds the group's MPAN; before
/// it, a replay, a frame older than the MPAN, a tampered one and the catch-up over a lost one.
#[test]
fn multicast_frames_from_zwave_js_decrypt_with_the_groups_mpan() {
    use warden_zwave::s2::session::{Class, Keys, MPAN_GROUPS, S2Error, Sessions};
    let peers = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/peers/zwave");
    const HOME: u32 = 0xc0ff_ee01;
    const SENDER: u8 = 6;
    for _ in 0..3 {
        let network_key: [u8; 16] = random();
        let state: [u8; 16] = random();
        let input = serde_json::json!({
            "network_key": hex(&network_key), "sender": SENDER, "home": HOME, "members": [1, 2],
            "state": hex(&state), "values": [21.5, 22.5, 23.5, 24.5, 25.5],
        });
        let o = Command::new("node")
            .arg(peers.join("s2_multicast.cjs"))
            .arg(input.to_string())
            .current_dir(&peers)
            .output()
            .expect("node");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let want: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let group = u8::try_from(want["group"].as_u64().unwrap()).unwrap();
        let unhex = |s: &serde_json::Value| -> Vec<u8> {
            let s = s.as_str().unwrap();
            (0..s.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
                .collect()
        };
        let frames: Vec<Vec<u8>> = want["frames"]
            .as_array()
            .unwrap()
            .iter()
            .map(unhex)
            .collect();
        let commands: Vec<Vec<u8>> = want["commands"]
            .as_array()
            .unwrap()
            .iter()
            .map(unhex)
            .collect();

        let mut host = Sessions::new(HOME, 1);
        host.set_network_key(Class::Unauthenticated, &network_key);
        host.grant(SENDER, Class::Unauthenticated);
        // no MPAN for the group yet
        assert_eq!(
            host.open_multicast(SENDER, &frames[0]),
            Err(S2Error::NoMpan(group))
        );
        host.store_mpan(SENDER, group, state);
        let o = host.open_multicast(SENDER, &frames[0]).unwrap();
        assert_eq!(o.payload, commands[0]);
        assert_eq!(o.keys, Keys::Network(Class::Unauthenticated));
        // the same frame again
        assert!(matches!(
            host.open_multicast(SENDER, &frames[0]),
            Err(S2Error::MulticastReplay(g, _)) if g == group
        ));
        // frame 1 lost: frame 2 decrypts (the MPAN catches up)
        assert_eq!(
            host.open_multicast(SENDER, &frames[2]).unwrap().payload,
            commands[2]
        );
        // frame 1 late: its MPAN is behind; refused, and the state is kept
        assert_eq!(
            host.open_multicast(SENDER, &frames[1]),
            Err(S2Error::CannotDecode)
        );
        // a tampered frame 3 is refused and does not move the MPAN on
        let mut bad = frames[3].clone();
        let last = bad.len() - 1;
        bad[last] ^= 0x01;
        assert_eq!(
            host.open_multicast(SENDER, &bad),
            Err(S2Error::CannotDecode)
        );
        assert_eq!(
            host.open_multicast(SENDER, &frames[3]).unwrap().payload,
            commands[3]
        );
        // the same frames for a host under another key, or from another node, do not decrypt
        let mut other = Sessions::new(HOME, 1);
        other.set_network_key(Class::Unauthenticated, &random::<16>());
        other.grant(SENDER, Class::Unauthenticated);
        other.store_mpan(SENDER, group, state);
        assert_eq!(
            other.open_multicast(SENDER, &frames[0]),
            Err(S2Error::CannotDecode)
        );
        host.grant(SENDER + 1, Class::Unauthenticated);
        host.store_mpan(SENDER + 1, group, state);
        assert_eq!(
            host.open_multicast(SENDER + 1, &frames[4]),
            Err(S2Error::CannotDecode),
            "the sender's node id is in the authenticated data"
        );
        // bounded: at most MPAN_GROUPS groups per node
        for g in 0..=255u8 {
            host.store_mpan(SENDER, g, state);
        }
        assert_eq!(host.mpan_groups(SENDER), MPAN_GROUPS);
        // a node without a granted class gets nothing decrypted
        let mut none = Sessions::new(HOME, 1);
        none.set_network_key(Class::Unauthenticated, &network_key);
        none.store_mpan(SENDER, group, state);
        assert_eq!(
            none.open_multicast(SENDER, &frames[0]),
            Err(S2Error::NoSpan)
        );
    }
}
