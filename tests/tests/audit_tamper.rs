//! The audit log is tamper-evident: `warden audit verify` works on a stopped gateway's data dir and
//! names the first record that was edited, deleted, inserted or reordered.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::path::Path;

use warden_e2e::*;

/// Runs a gateway long enough to write a few dozen audit records, then stops it.
fn make_log(root: &Path) -> std::path::PathBuf {
    let p = Ports::new();
    let cfg = root.join("w.toml");
    std::fs::write(&cfg, base_config(&p)).unwrap();
    let dd = root.join("data");
    let g = Gateway::start(&dd, &cfg, &p, &[]);
    let f = root.join("d.toml");
    std::fs::write(&f, "[[devices]]\nid = \"sim:cnt\"\nprofile = \"counter\"\n").unwrap();
    assert!(
        g.cli(&["devices", "import", f.to_str().unwrap()])
            .status
            .success()
    );
    // denials are recorded one by one: a pending device and a point outside the profile
    g.sim(
        &(0..10)
            .map(|i| format!("stranger n={i}"))
            .collect::<Vec<_>>(),
    );
    g.sim(
        &(0..10)
            .map(|i| format!("cnt n={i} shell=1"))
            .collect::<Vec<_>>(),
    );
    g.stop();
    dd
}

fn verify(dd: &Path) -> (bool, String) {
    let o = warden(dd, &["audit", "verify"]);
    (o.status.success(), format!("{}{}", stdout(&o), stderr(&o)))
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

fn tamper(dd: &Path, sql: &str) {
    let c = rusqlite::Connection::open(dd.join("warden.db")).unwrap();
    c.execute_batch(sql).unwrap();
}

#[test]
fn edit_delete_insert_reorder_are_each_detected() {
    let t = tempfile::tempdir().unwrap();
    let dd = make_log(t.path());
    let (ok, out) = verify(&dd);
    assert!(ok, "fresh log does not verify: {out}");
    let n: u64 = {
        let c = rusqlite::Connection::open(dd.join("warden.db")).unwrap();
        c.query_row("SELECT COUNT(*) FROM audit", [], |r| r.get::<_, i64>(0))
            .unwrap() as u64
    };
    assert!(n >= 20, "expected at least 20 records, got {n}");

    let cases: [(&str, &str, u64); 4] = [
        (
            "edit",
            "UPDATE audit SET reason = 'all fine' WHERE seq = 10",
            10,
        ),
        ("delete", "DELETE FROM audit WHERE seq = 10", 11),
        (
            "insert",
            "UPDATE audit SET seq = seq + 100000 WHERE seq >= 10;
             UPDATE audit SET seq = seq - 99999 WHERE seq >= 100000;
             INSERT INTO audit SELECT 10, ts, category, 'approve', device, 'mallory', decider,
                verdict, reason, detail, prev, hash, seal FROM audit WHERE seq = 9;",
            10,
        ),
        (
            "reorder",
            "UPDATE audit SET seq = -1 WHERE seq = 10; UPDATE audit SET seq = 10 WHERE seq = 11;
             UPDATE audit SET seq = 11 WHERE seq = -1;",
            10,
        ),
    ];
    for (name, sql, first_bad) in cases {
        let copy = t.path().join(format!("copy-{name}"));
        copy_dir(&dd, &copy);
        tamper(&copy, sql);
        let (ok, out) = verify(&copy);
        assert!(!ok, "{name} was not detected: {out}");
        assert!(
            out.contains(&format!("audit record {first_bad}:")),
            "{name}: wrong record named: {out}"
        );
    }
    // tail and export still work on the stopped gateway's data dir
    let o = warden(&dd, &["audit", "tail", "-n", "5"]);
    assert!(o.status.success());
    assert_eq!(stdout(&o).lines().count(), 5);
    let o = warden(&dd, &["audit", "export", "--format", "jsonl"]);
    assert!(o.status.success());
    let lines: Vec<serde_json::Value> = stdout(&o).lines().map(json).collect();
    assert_eq!(lines.len() as u64, n);
    assert!(
        lines
            .iter()
            .any(|r| r["verdict"] == "deny" && r["reason"].as_str().unwrap().contains("pending"))
    );
    assert!(
        lines
            .iter()
            .any(|r| r["verdict"] == "deny" && r["reason"].as_str().unwrap().contains("shell"))
    );
    assert!(lines.iter().any(|r| r["action"] == "import"));
}
