//! Reading files an operator or a config names (the config itself, keys, passwords, certificates,
//! import files, plugin modules and signatures): regular files only, opened without blocking on a
//! FIFO, read once with a size cap; secrets checked for loose permissions; optionally only if the
//! file actually opened lies inside a directory (checked on the open descriptor, so a symlink
//! swapped between a check and the open cannot redirect the read). A FIFO, a device such as
//! `/dev/zero`, a directory or an oversized file is a clear error, never a hang or an allocation
//! without bound. Used by the gateway and the plugin host alike.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

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
    #[error("{what} {path}: resolves to {real}, outside the directory {dir}")]
    Outside {
        what: &'static str,
        path: PathBuf,
        real: PathBuf,
        dir: PathBuf,
    },
}

impl FileError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    }
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
    f.take(max.saturating_add(1))
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

/// As [`read`], and only if the file the kernel opened (not the name asked for) lies under `dir`:
/// symlinks inside the directory are fine, ones leading out are not.
pub fn read_inside(
    path: &Path,
    max: u64,
    what: &'static str,
    dir: &Path,
) -> Result<Vec<u8>, FileError> {
    let (f, _) = open_regular(path, max, what)?;
    check_inside(&f, path, dir, what)?;
    read_capped(f, path, max, what)
}

fn check_inside(f: &File, path: &Path, dir: &Path, what: &'static str) -> Result<(), FileError> {
    use std::os::fd::AsRawFd;
    let dir_real = std::fs::canonicalize(dir).map_err(|source| FileError::Io {
        what,
        path: dir.to_owned(),
        source,
    })?;
    let real =
        std::fs::read_link(format!("/proc/self/fd/{}", f.as_raw_fd())).map_err(|source| {
            FileError::Io {
                what,
                path: path.to_owned(),
                source,
            }
        })?;
    if real.starts_with(&dir_real) {
        Ok(())
    } else {
        Err(FileError::Outside {
            what,
            path: path.to_owned(),
            real,
            dir: dir_real,
        })
    }
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
