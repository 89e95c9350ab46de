//! Storage and durability: audit retention leaves a signed checkpoint the rest of the chain
//! verifies from (with the pruned ranges exported first); a full disk raises the alarm and puts the
//! gateway in its degraded mode without stopping the message path or losing a security record; a
//! flood of garbage datagrams grows the audit log by aggregates, not rows.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::Path;
use std::time::Duration;

use warden_e2e::*;

fn db(dd: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(dd.join("warden.db")).unwrap()
}

fn checkpoint(dd: &Path) -> Option<(u64, Vec<u8>)> {
    db(dd)
        .query_row(
            "SELECT seq, hash FROM audit_checkpoints ORDER BY seq DESC LIMIT 1",
            [],
            |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?)),
        )
        .ok()
}

#[test]
fn audit_retention_prunes_to_a_signed_checkpoint_that_the_rest_verifies_from() {
    let t = tempfile::tempdir().unwrap();
    let p = Ports::new();
    let cfg = t.path().join("w.toml");
    std::fs::write(
        &cfg,
        format!(
            "{}\n[audit]\nmax_bytes = 30000\nkeep_records = 40\nprune_every_s = 1\nexport_dir = \"archive\"\n",
            base_config(&p)
        ),
    )
    .unwrap();
    let dd = t.path().join("data");
    let g = Gateway::start(&dd, &cfg, &p, &[]);
    // a pending device's messages are denied one record each: the log grows past 30 kB
    for chunk in 0..4 {
        g.sim(
            &(0..50)
                .map(|i| format!("stranger n={}", chunk * 50 + i))
                .collect::<Vec<_>>(),
        );
    }
    wait_for(Duration::from_secs(60), "a retention checkpoint", || {
        checkpoint(&dd)
    });
    g.stop();

    let (cp, cp_hash) = checkpoint(&dd).unwrap();
    let o = warden(&dd, &["audit", "verify"]);
    let out = format!("{}{}", stdout(&o), stderr(&o));
    assert!(o.status.success(), "{out}");
    assert!(
        out.contains(&format!(
            "from the signed retention checkpoint at #{cp} (records 1..{cp} pruned)"
        )),
        "{out}"
    );
    // the kept records start right after the checkpoint, and the prune is on record
    let recs = audit_records(&dd);
    assert_eq!(recs[0]["seq"].as_u64(), Some(cp + 1));
    let pruned: Vec<_> = recs
        .iter()
        .filter(|r| r["action"] == "audit-pruned")
        .collect();
    assert!(!pruned.is_empty());
    let d = json(pruned.last().unwrap()["detail"].as_str().unwrap());
    assert!(d["exported"].as_str().unwrap().contains("archive"), "{d}");

    // every pruned record was exported first, in order, ending at the checkpoint's hash
    let mut files: Vec<_> = std::fs::read_dir(t.path().join("archive"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let exported: Vec<serde_json::Value> = files
        .iter()
        .flat_map(|f| {
            std::fs::read_to_string(f)
                .unwrap()
                .lines()
                .map(json)
                .collect::<Vec<_>>()
        })
        .collect();
    let seqs: Vec<u64> = exported
        .iter()
        .map(|r| r["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, (1..=cp).collect::<Vec<_>>());
    assert_eq!(
        exported.last().unwrap()["hash"].as_str().unwrap(),
        hex::encode(&cp_hash)
    );

    // the gateway starts again on the pruned chain (its anchors are vouched for by the checkpoint)
    let g = Gateway::start(&dd, &cfg, &p, &[]);
    g.stop();
    assert!(warden(&dd, &["audit", "verify"]).status.success());

    // an edit inside the kept range is still found, and named (the restart may have pruned more)
    let victim = checkpoint(&dd).unwrap().0 + 3;
    let edited = db(&dd)
        .execute(
            "UPDATE audit SET reason = 'nothing happened' WHERE seq = ?1",
            [victim as i64],
        )
        .unwrap();
    assert_eq!(edited, 1);
    let o = warden(&dd, &["audit", "verify"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains(&format!("audit record {victim}:")),
        "{}",
        stderr(&o)
    );
}

/// A tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, mib: u64) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let o = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "this test mounts a small tmpfs as the data dir and needs root: {}",
            stderr(&o)
        );
        Self(dir.to_owned())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// Writes `path` until the filesystem is full; returns the bytes written.
fn fill(path: &Path) -> u64 {
    use std::io::Write;
    let mut f = std::fs::File::create(path).unwrap();
    let block = vec![0x5a_u8; 64 << 10];
    let mut n = 0u64;
    loop {
        match f.write(&block) {
            Ok(0) | Err(_) => break,
            Ok(k) => n += k as u64,
        }
    }
    let _ = f.flush();
    n
}

#[test]
fn a_full_disk_raises_the_alarm_keeps_deciding_and_loses_no_security_record() {
    let t = tempfile::tempdir().unwrap();
    let dd = t.path().join("data");
    let _fs = Tmpfs::mount(&dd, 40);
    let p = Ports::new();
    let cfg = t.path().join("w.toml");
    std::fs::write(
        &cfg,
        format!(
            "{}\n[audit]\ndisk_low_mib = 6\ndisk_reserve_mib = 4\ndisk_check_s = 1\n",
            base_config(&p)
        ),
    )
    .unwrap();
    let g = Gateway::start(&dd, &cfg, &p, &[]);
    let f = t.path().join("d.toml");
    std::fs::write(&f, "[[devices]]\nid = \"sim:cnt\"\nprofile = \"counter\"\n").unwrap();
    assert!(
        g.cli(&["devices", "import", f.to_str().unwrap()])
            .status
            .success()
    );
    let sub = Subscriber::spawn(
        &operator_args(
            &dd,
            p.mqtt,
            &[
                "-t",
                "warden/gateway/alarm",
                "-t",
                "warden/devices/sim:cnt/telemetry/#",
                "-t",
                "warden/devices/sim:cnt/status",
            ],
        ),
        &t.path().join("sub.txt"),
    );
    let telemetry = |l: &[(String, String)], n: f64| {
        l.iter()
            .any(|(t, b)| t.contains("/telemetry/") && json(b)["value"].as_f64() == Some(n))
    };
    // subscribed once the import's retained status arrives
    sub.wait_lines(Duration::from_secs(15), "the device's status", |l| {
        l.iter().any(|(t, _)| t.ends_with("/status"))
    });
    g.sim(&["cnt n=1".to_string()]);
    sub.wait_lines(Duration::from_secs(15), "telemetry before", |l| {
        telemetry(l, 1.0)
    });
    // the reserve file is in place
    assert!(dd.join("disk-reserve").metadata().unwrap().len() >= 4 << 20);

    // fill the disk: the alarm goes up on MQTT, the reserve is given back
    fill(&t.path().join("data/filler-1"));
    let alarm = |l: &[(String, String)], active: bool| {
        l.iter().any(|(t, b)| {
            t == "warden/gateway/alarm"
                && json(b)["alarm"] == "disk-low"
                && json(b)["active"] == active
        })
    };
    sub.wait_lines(Duration::from_secs(20), "the disk-low alarm", |l| {
        alarm(l, true)
    });
    assert!(!dd.join("disk-reserve").exists());
    let st = g.status();
    assert_eq!(st["disk"]["low"], true, "{st}");
    let m = metrics_text(p.api, &dd);
    assert_eq!(metric_sum(&m, "warden_disk_alarm", &[]), 1.0, "{m}");

    // now truly full (the reserve's room taken too): writes fail, the gateway goes on deciding
    fill(&t.path().join("data/filler-2"));
    let decided = |m: &str| metric_sum(m, "warden_messages_total", &["direction=\"uplink\""]);
    let before = decided(&metrics_text(p.api, &dd));
    g.sim(&["cnt n=2".to_string(), "stranger n=1".to_string()]);
    wait_for(Duration::from_secs(20), "both messages decided", || {
        (decided(&metrics_text(p.api, &dd)) >= before + 2.0).then_some(())
    });
    // the disk really refused writes (the writers retry off the message path)
    wait_for(Duration::from_secs(20), "a failed write", || {
        g.log_text()
            .contains("write failed; retrying")
            .then_some(())
    });
    let st = g.status();
    assert_eq!(st["disk"]["degraded"], true, "{st}");
    // the API still answers, the stranger was not registered (degraded: no new devices)
    let devs = g.cli(&["devices", "list"]);
    assert!(devs.status.success(), "{}", stderr(&devs));
    assert!(!stdout(&devs).contains("sim:stranger"), "{}", stdout(&devs));

    // room again: the alarm clears, and what was decided while full reaches MQTT and the log
    std::fs::remove_file(t.path().join("data/filler-1")).unwrap();
    std::fs::remove_file(t.path().join("data/filler-2")).unwrap();
    sub.wait_lines(
        Duration::from_secs(30),
        "the alarm cleared, n=2 published",
        |l| alarm(l, false) && telemetry(l, 2.0),
    );
    g.stop();
    let recs = audit_records(&dd);
    let has = |action: &str| recs.iter().any(|r| r["action"] == action);
    assert!(has("disk-low") && has("disk-ok"), "{recs:?}");
    let low = recs.iter().find(|r| r["action"] == "disk-low").unwrap();
    assert_eq!(low["category"], "security");
    // the stranger's denial, decided while writes failed, is in the log: degraded, it is counted
    // (an aggregate naming it and the cause), not recorded in full
    assert!(
        recs.iter().any(|r| {
            r["action"] == "rejected-unknown" && {
                let d = json(r["detail"].as_str().unwrap());
                d["source"] == "sim:stranger" && d["cause"] == "disk-low" && d["count"] == 1
            }
        }),
        "{recs:?}"
    );
    // nothing had to be dropped: the queue held it all
    assert!(!has("audit-records-lost"), "{recs:?}");
    let o = warden(&dd, &["audit", "verify"]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn a_flood_of_garbage_datagrams_grows_the_audit_log_by_aggregates_not_rows() {
    let t = tempfile::tempdir().unwrap();
    let p = Ports::new();
    let udp = free_port();
    let cfg = t.path().join("w.toml");
    std::fs::write(
        &cfg,
        format!(
            "{}\n[adapters.lorawan]\nbind = \"127.0.0.1:{udp}\"\nforwarders = [\"0102030405060708\"]\nregion = \"EU868\"\n",
            base_config(&p)
        ),
    )
    .unwrap();
    let dd = t.path().join("data");
    let g = Gateway::start(&dd, &cfg, &p, &[]);
    let before = audit_count(&dd);
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    const N: u64 = 100_000;
    let seen = |m: &str| {
        metric_sum(
            m,
            "warden_adapter_rejections_total",
            &["cause=\"malformed-datagram\""],
        ) + metric_sum(
            m,
            "warden_link_notices_total",
            &["kind=\"udp-receive-buffer\""],
        )
    };
    for i in 0..N {
        // version byte 9: no Semtech UDP packet
        let d = format!("\x09garbage {i}");
        sock.send_to(d.as_bytes(), ("127.0.0.1", udp)).unwrap();
        if (i + 1) % 5_000 == 0 {
            // pace on the gateway, not on a clock: wait until this batch is accounted for
            wait_for(Duration::from_secs(60), "the batch counted", || {
                (seen(&metrics_text(p.api, &dd)) >= (i + 1) as f64).then_some(())
            });
        }
    }
    let m = metrics_text(p.api, &dd);
    let rejected = metric_sum(
        &m,
        "warden_adapter_rejections_total",
        &["cause=\"malformed-datagram\""],
    );
    assert!(rejected > 0.0);
    assert_eq!(seen(&m), N as f64, "every datagram counted: {m}");
    g.stop();

    let recs = audit_records(&dd);
    let flood: Vec<_> = recs
        .iter()
        .filter(|r| r["detail"].as_str().unwrap().contains("malformed-datagram"))
        .collect();
    let full = flood.iter().filter(|r| r["category"] == "decision").count();
    let aggregated: u64 = flood
        .iter()
        .filter(|r| r["action"] == "rejected-unknown")
        .map(|r| {
            json(r["detail"].as_str().unwrap())["count"]
                .as_u64()
                .unwrap()
        })
        .sum();
    // the first few of each minute in full (8 a minute for one source and cause)
    assert!((1..=16).contains(&full), "{full} in full");
    assert_eq!(
        full as f64 + aggregated as f64,
        rejected,
        "the rest counted in aggregates"
    );
    let grew = audit_count(&dd) - before;
    assert!(
        grew < 50,
        "the log grew by {grew} records for {N} datagrams"
    );
}

fn audit_count(dd: &Path) -> u64 {
    db(dd)
        .query_row("SELECT COUNT(*) FROM audit", [], |r| r.get::<_, i64>(0))
        .unwrap() as u64
}
