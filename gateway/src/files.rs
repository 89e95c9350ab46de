//! Reading the files a config or an operator names (the config itself, keys, passwords,
//! certificates, import files): regular files only, read once with a size cap, secrets checked for
//! loose permissions. A FIFO, a device such as `/dev/zero`, a directory or an oversized file is a
//! clear error, never a hang or an allocation without bound.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Caps, by kind of file.
pub const CONFIG_MAX: u64 = 4 << 20;
pub const KEY_MAX: u64 = 64 << 10;
pub const PEM_MAX: u64 = 1 << 20;
pub const IMPORT_MAX: u64 = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{what} {path}: not a regular file")]
    NotRegular { what: &'static str, path: PathBuf },
    #[error("{what} {path}: larger than {max} bytes")]
    TooLarge {
        what: &'static str,
        path: PathBuf,
        max: u64,
    },
    #[error(
        "{what} {path}: permissions {mode:04o} are too open (a secret must be 0600 or 0640, owned by the gateway's user)"
    )]
    Permissions {
        what: &'static str,
        path: PathBuf,
        mode: u32,
    },
}

/// Opens `path` without blocking on a FIFO and without taking a terminal, and checks it is a
/// regular file no larger than `max`.
fn open_regular(path: &Path, max: u64, what: &'static str) -> Result<(File, u32), FileError> {
    let io = |source| FileError::Io {
        what,
        path: path.to_owned(),
        source,
    };
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(io)?;
    let meta = f.metadata().map_err(io)?;
    if !meta.is_file() {
        return Err(FileError::NotRegular {
            what,
            path: path.to_owned(),
        });
    }
    if meta.len() > max {
        return Err(FileError::TooLarge {
            what,
            path: path.to_owned(),
            max,
        });
    }
    Ok((f, meta.permissions().mode() & 0o7777))
}

fn read_capped(f: File, path: &Path, max: u64, what: &'static str) -> Result<Vec<u8>, FileError> {
    let mut buf = Vec::new();
    // the file may grow between the check and the read: never read past the cap
    f.take(max + 1)
        .read_to_end(&mut buf)
        .map_err(|source| FileError::Io {
            what,
            path: path.to_owned(),
            source,
        })?;
    if buf.len() as u64 > max {
        return Err(FileError::TooLarge {
            what,
            path: path.to_owned(),
            max,
        });
    }
    Ok(buf)
}

/// A regular file of at most `max` bytes.
pub fn read(path: &Path, max: u64, what: &'static str) -> Result<Vec<u8>, FileError> {
    let (f, _) = open_regular(path, max, what)?;
    read_capped(f, path, max, what)
}

/// A regular file of at most `max` bytes, as UTF-8 text.
pub fn read_text(path: &Path, max: u64, what: &'static str) -> Result<String, FileError> {
    let b = read(path, max, what)?;
    String::from_utf8(b).map_err(|_| FileError::Io {
        what,
        path: path.to_owned(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8 text"),
    })
}

/// A secret: as [`read`], and refused unless only its owner (and at most its group, read-only)
/// can read it.
pub fn read_secret(path: &Path, max: u64, what: &'static str) -> Result<Vec<u8>, FileError> {
    let (f, mode) = open_regular(path, max, what)?;
    if mode & 0o037 != 0 {
        return Err(FileError::Permissions {
            what,
            path: path.to_owned(),
            mode,
        });
    }
    read_capped(f, path, max, what)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn devices_fifos_directories_and_oversized_files_are_refused_at_once() {
        let d = tempfile::tempdir().unwrap();
        assert!(matches!(
            read(Path::new("/dev/zero"), 10, "test"),
            Err(FileError::NotRegular { .. })
        ));
        assert!(matches!(
            read(d.path(), 10, "test"),
            Err(FileError::NotRegular { .. })
        ));
        let fifo = d.path().join("fifo");
        // mkfifo(1) keeps this crate free of unsafe
        let ok = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(ok.success());
        // opening a FIFO with no writer would block without O_NONBLOCK
        assert!(matches!(
            read(&fifo, 10, "test"),
            Err(FileError::NotRegular { .. })
        ));
        let big = d.path().join("big");
        std::fs::write(&big, vec![b'x'; 11]).unwrap();
        assert!(matches!(
            read(&big, 10, "test"),
            Err(FileError::TooLarge { max: 10, .. })
        ));
        assert_eq!(read(&big, 11, "test").unwrap().len(), 11);
    }

    #[test]
    fn secrets_need_tight_permissions() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("pw");
        std::fs::write(&p, b"hunter2").unwrap();
        for (mode, ok) in [
            (0o600, true),
            (0o640, true),
            (0o400, true),
            (0o644, false),
            (0o660, false),
            (0o604, false),
        ] {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
            assert_eq!(read_secret(&p, 100, "password").is_ok(), ok, "{mode:o}");
        }
        let e = read_secret(&p, 100, "password").unwrap_err().to_string();
        assert!(e.contains("0604") && !e.contains("hunter2"), "{e}");
    }
}
