//! Raw HTTP and MQTT for the management-surface tests: each request on its own connection, every
//! read bounded.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// One request; returns (status, body). `auth` is the whole Authorization header value.
pub fn http(port: u16, method: &str, path: &str, auth: Option<&str>, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let auth = auth
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut b = String::new();
    let _ = s.read_to_string(&mut b);
    let status = b
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = b
        .split_once("\r\n\r\n")
        .map(|x| x.1.to_owned())
        .unwrap_or_default();
    (status, body)
}

pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn mqtt_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// An MQTT 3.1.1 CONNECT with a user name and password; returns the CONNACK return code, or None
/// when the broker did not answer within 5 s.
pub fn mqtt_connect(port: u16, user: &str, password: &str) -> Option<u8> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut rest = vec![0, 4, b'M', b'Q', b'T', b'T', 4, 0xC2, 0, 30];
    mqtt_str(&mut rest, &format!("t{}", std::process::id()));
    mqtt_str(&mut rest, user);
    mqtt_str(&mut rest, password);
    let mut pkt = vec![0x10, rest.len() as u8];
    pkt.extend(rest);
    s.write_all(&pkt).ok()?;
    let mut ack = [0u8; 4];
    s.read_exact(&mut ack).ok()?;
    (ack[0] == 0x20).then_some(ack[3])
}

/// The API token `warden operators add` printed.
pub fn token_from(out: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix("API token (shown once): "))
        .unwrap_or_else(|| panic!("no token in: {out}"))
        .trim()
        .to_owned()
}
