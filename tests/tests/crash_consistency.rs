//! `kill -9` during a burst of writes leaves the registry and the audit log consistent.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::time::Duration;

use warden_e2e::*;

#[test]
fn kill_9_during_a_write_burst_then_restart_and_verify() {
    let t = tempfile::tempdir().unwrap();
    let p = Ports::new();
    let cfg = t.path().join("w.toml");
    // 200 devices sending every 5 ms, half of them never provisioned (each denial is an audit record)
    std::fs::write(
        &cfg,
        format!(
            "{}\n[[sim.devices]]\naddress = \"ok\"\nkind = \"counter\"\ncount = 100\ninterval_ms = 5\nprofile = \"counter\"\nprovision = true\n\
             [[sim.devices]]\naddress = \"new\"\nkind = \"counter\"\ncount = 100\ninterval_ms = 5\n",
            base_config(&p)
        ),
    )
    .unwrap();
    let dd = t.path().join("data");
    let g = Gateway::start(&dd, &cfg, &p, &[]);
    // concurrent operator writes: imports of 50 devices each, with credentials
    let mut imported = 0;
    for batch in 0..6 {
        let f = t.path().join(format!("imp{batch}.toml"));
        let mut s = String::new();
        for i in 0..50 {
            s.push_str(&format!(
                "[[devices]]\nid = \"sim:imp-{batch}-{i}\"\nprofile = \"counter\"\ncredentials = {{ key = \"hex:00112233445566778899aabbccddeeff\" }}\n"
            ));
        }
        std::fs::write(&f, s).unwrap();
        if g.cli(&["devices", "import", f.to_str().unwrap()])
            .status
            .success()
        {
            imported += 50;
        }
    }
    assert_eq!(imported, 300);
    std::thread::sleep(Duration::from_millis(700));
    let before = g.status()["audit_head"]["seq"].as_u64().unwrap();
    assert!(
        before > 100,
        "burst wrote too little to be meaningful: {before}"
    );
    g.kill9();

    // forensics on the dead gateway's data dir
    let o = warden(&dd, &["audit", "verify"]);
    assert!(
        o.status.success(),
        "audit broken after kill -9: {}{}",
        stdout(&o),
        stderr(&o)
    );
    let c = rusqlite::Connection::open(dd.join("warden.db")).unwrap();
    let ok: String = c
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ok, "ok");
    // every imported device is there with its credential, and each has its import record
    let devs: i64 = c
        .query_row(
            "SELECT COUNT(*) FROM devices WHERE id LIKE 'sim:imp-%'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let creds: i64 = c
        .query_row(
            "SELECT COUNT(*) FROM credentials WHERE device LIKE 'sim:imp-%'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let recs: i64 = c
        .query_row(
            "SELECT COUNT(*) FROM audit WHERE action = 'import' AND device LIKE 'sim:imp-%'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!((devs, creds, recs), (300, 300, 300));
    // every pending device in the registry has its registration record (same transaction)
    let orphans: i64 = c
        .query_row(
            "SELECT COUNT(*) FROM devices d WHERE status = 'pending' AND NOT EXISTS
               (SELECT 1 FROM audit a WHERE a.device = d.id AND a.action = 'device-registered')",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(orphans, 0);
    drop(c);

    // restart on the same data dir: it starts, keeps appending to the same chain, and still verifies
    let g = Gateway::start(&dd, &cfg, &p, &[]);
    let st = g.status();
    assert!(st["devices"].as_u64().unwrap() >= 500, "{st}");
    std::thread::sleep(Duration::from_millis(500));
    g.stop();
    let o = warden(&dd, &["audit", "verify"]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
}
