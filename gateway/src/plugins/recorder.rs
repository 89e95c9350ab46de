//! Records the requests that reach the plugin stage, one JSON object per line: the format
//! `warden plugin test --messages` reads, so real traffic becomes a plugin author's test input.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use warden_plugin_host::Request;

pub struct Recorder {
    path: PathBuf,
    out: BufWriter<File>,
    written: u64,
    max: u64,
    full: bool,
}

impl Recorder {
    /// Appends to `path` (created 0600: recordings hold device data) up to `max_bytes`.
    pub fn open(path: &Path, max_bytes: u64) -> std::io::Result<Self> {
        use std::os::unix::fs::OpenOptionsExt;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let f = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)?;
        let written = f.metadata()?.len();
        Ok(Self {
            path: path.to_owned(),
            out: BufWriter::new(f),
            written,
            max: max_bytes,
            full: false,
        })
    }

    pub fn write(&mut self, req: &Request) {
        if self.full {
            return;
        }
        let Ok(mut line) = serde_json::to_vec(req) else {
            return;
        };
        line.push(b'\n');
        if self.written + line.len() as u64 > self.max {
            self.full = true;
            let _ = self.out.flush();
            tracing::warn!(path = %self.path.display(), max_bytes = self.max,
                "plugin traffic recording reached plugins.record_max_mb; recording stopped");
            return;
        }
        match self.out.write_all(&line) {
            Ok(()) => self.written += line.len() as u64,
            Err(e) => {
                self.full = true;
                tracing::error!(path = %self.path.display(), error = %e, "plugin traffic recording failed; stopped");
            }
        }
    }

    pub fn flush(&mut self) {
        let _ = self.out.flush();
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.flush();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn records_lines_the_test_runner_reads_and_stops_at_the_bound() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("rec/traffic.jsonl");
        let mut r = Recorder::open(&p, 700).unwrap();
        let mut q = Request::default();
        q.device.id = "sim:a".into();
        q.time_ms = 5;
        for _ in 0..10 {
            r.write(&q);
        }
        drop(r);
        let text = std::fs::read_to_string(&p).unwrap();
        let lines: Vec<_> = text.lines().collect();
        assert!(
            !lines.is_empty() && lines.len() < 10,
            "{} lines",
            lines.len()
        );
        assert!(text.len() <= 700);
        for l in lines {
            let back = Request::from_json(l).unwrap();
            assert_eq!(back.device.id, "sim:a");
            assert_eq!(back.device.protocol, "sim");
        }
    }
}
