//! Sequenced (two-frame) S0 against zwave-js's own code (tests/peers/zwave/s0_vectors.cjs):
//! commands Warden splits and seals are decoded and joined by zwave-js's receive path
//! (CommandClass.parse, mergePartialCCs); parts zwave-js's S0 primitives build (zwave-js never
//! sends sequenced S0 itself) are opened and joined by Warden, and the same real frames in a
//! wrong order are refused with their typed errors. Nonces and keys are random each run.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use warden_zwave::s0::{self, Part, Reassembly, SequenceError};

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn peers() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/peers/zwave");
    assert!(
        p.join("node_modules/@zwave-js/cc").exists(),
        "zwave-js missing: run tests/scripts/install-zwave.sh"
    );
    p
}

fn zwave_js(input: &serde_json::Value) -> serde_json::Value {
    let o = Command::new("node")
        .arg(peers().join("s0_vectors.cjs"))
        .arg(input.to_string())
        .current_dir(peers())
        .output()
        .expect("node");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// Multi Command Encapsulated around `n` Multilevel Sensor Reports (°C, two decimals): a
/// command zwave-js parses, as long as we like.
fn multi_command(n: u8) -> Vec<u8> {
    let mut v = vec![0x8f, 0x01, n];
    for i in 0..n {
        let centi = 2150 + u16::from(i);
        let [hi, lo] = centi.to_be_bytes();
        v.extend_from_slice(&[0x06, 0x31, 0x05, 0x01, 0x42, hi, lo]);
    }
    v
}

const SOURCE: u8 = 1;
const NODE: u8 = 7;

#[test]
fn zwave_js_decodes_and_joins_what_warden_splits() {
    for n in [1u8, 4, 5, 6, 7] {
        let key: [u8; 16] = rand::random();
        let k = s0::Keys::new(&key);
        let payload = multi_command(n);
        let counter = rand::random::<u8>() & 0x0f;
        let parts = s0::split(&payload, counter).unwrap();
        assert_eq!(
            parts.len(),
            if payload.len() > s0::MAX_SINGLE { 2 } else { 1 }
        );
        let (mut frames, mut nonces) = (Vec::new(), Vec::new());
        for (part, bytes) in &parts {
            let (s, r): (s0::Nonce, s0::Nonce) = (rand::random(), rand::random());
            frames.push(hex(&k.seal_part(&s, &r, SOURCE, NODE, *part, bytes)));
            nonces.push(hex(&r));
        }
        // zwave-js is the receiver here: the frames go from Warden (SOURCE) to NODE
        let got = zwave_js(&serde_json::json!({
            "op": "decode", "network_key": hex(&key), "source": SOURCE, "own": NODE,
            "frames": frames, "nonces": nonces,
        }));
        let p = got["parts"].as_array().unwrap();
        assert_eq!(p.len(), parts.len(), "{got}");
        for ((part, bytes), z) in parts.iter().zip(p) {
            assert_eq!(z["bytes"], hex(bytes), "{got}");
            match part {
                Part::Single => assert_eq!(z["sequenced"], false, "{got}"),
                Part::First(c) | Part::Second(c) => {
                    assert_eq!(z["sequenced"], true, "{got}");
                    assert_eq!(z["second"], matches!(part, Part::Second(_)), "{got}");
                    assert_eq!(z["counter"], *c, "{got}");
                }
            }
        }
        assert_eq!(got["joined"], hex(&payload), "{got}");
        assert_eq!(got["inner"], "MultiCommandCCCommandEncapsulation", "{got}");
        let values: Vec<f64> = got["commands"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["value"].as_f64().unwrap())
            .collect();
        let want: Vec<f64> = (0..n).map(|i| 21.5 + f64::from(i) / 100.0).collect();
        assert_eq!(values, want, "{got}");
    }
}

/// Two parts built by zwave-js's S0 primitives from `NODE` to Warden (`SOURCE`), with these
/// sequence bytes; returns the frames and their receiver nonces.
fn zwave_js_parts(key: &[u8; 16], parts: &[(u8, &[u8])]) -> Vec<(Vec<u8>, s0::Nonce)> {
    let nonces: Vec<(s0::Nonce, s0::Nonce)> = parts
        .iter()
        .map(|_| (rand::random(), rand::random()))
        .collect();
    let input = serde_json::json!({
        "op": "encode", "network_key": hex(key), "source": NODE, "own": SOURCE,
        "parts": parts.iter().zip(&nonces).map(|((control, payload), (s, r))| serde_json::json!({
            "control": control, "payload": hex(payload), "sender": hex(s), "receiver": hex(r),
        })).collect::<Vec<_>>(),
    });
    let got = zwave_js(&input);
    got["frames"]
        .as_array()
        .unwrap()
        .iter()
        .zip(&nonces)
        .map(|(f, (_, r))| (unhex(f.as_str().unwrap()), *r))
        .collect()
}

/// Opens each frame under its nonce and feeds it to one reassembly.
fn feed(
    k: &s0::Keys,
    frames: &[(Vec<u8>, s0::Nonce)],
) -> Vec<Result<Option<Vec<u8>>, SequenceError>> {
    let mut r = Reassembly::default();
    frames
        .iter()
        .map(|(f, n)| {
            let e = s0::parse_encapsulated(f).unwrap();
            let (part, bytes) = k.open(&e, n, NODE, SOURCE).unwrap();
            r.accept(NODE, part, bytes, Instant::now())
        })
        .collect()
}

#[test]
fn warden_joins_parts_zwave_js_builds_and_refuses_them_out_of_order() {
    let key: [u8; 16] = rand::random();
    let k = s0::Keys::new(&key);
    let payload = multi_command(5);
    let (a, b) = payload.split_at(20);
    let c = rand::random::<u8>() & 0x0f;
    let first = 0x10 | c;
    let second = 0x30 | c;
    let other = 0x30 | ((c + 1) & 0x0f);

    // in order: the command
    let f = zwave_js_parts(&key, &[(first, a), (second, b)]);
    assert_eq!(feed(&k, &f), vec![Ok(None), Ok(Some(payload.clone()))]);
    // a single frame (sequence byte 0) passes as it is
    let f = zwave_js_parts(&key, &[(0x00, &payload[..7])]);
    assert_eq!(feed(&k, &f), vec![Ok(Some(payload[..7].to_vec()))]);
    // the second part first, then the first: out of order
    let f = zwave_js_parts(&key, &[(second, b), (first, a)]);
    assert_eq!(
        feed(&k, &f),
        vec![
            Err(SequenceError::SecondWithoutFirst { counter: c }),
            Ok(None)
        ]
    );
    // the second part with another counter
    let f = zwave_js_parts(&key, &[(first, a), (other, b)]);
    assert_eq!(
        feed(&k, &f),
        vec![
            Ok(None),
            Err(SequenceError::CounterMismatch {
                pending: c,
                got: (c + 1) & 0x0f
            })
        ]
    );
    // the first part again (a repeat), and a whole sequence again after it completed
    let f = zwave_js_parts(&key, &[(first, a), (first, a), (second, b), (first, a)]);
    assert_eq!(
        feed(&k, &f),
        vec![
            Ok(None),
            Err(SequenceError::Repeated { counter: c }),
            Ok(Some(payload.clone())),
            Err(SequenceError::Repeated { counter: c }),
        ]
    );
    // a new sequence's first part while one waits: out of order
    let f = zwave_js_parts(&key, &[(first, a), (0x10 | ((c + 1) & 0x0f), a)]);
    assert_eq!(
        feed(&k, &f),
        vec![
            Ok(None),
            Err(SequenceError::OutOfOrder {
                pending: c,
                got: (c + 1) & 0x0f
            })
        ]
    );
}
