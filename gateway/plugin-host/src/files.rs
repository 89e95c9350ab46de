//! Reading a plugin's files (module, signature, cache entry): regular files only, opened without
//! blocking on a FIFO, read once with a size cap, and — when a plugin directory is given — only
//! if the file actually opened lies inside it (checked on the open descriptor, so a symlink
//! swapped between a check and the open cannot redirect the read).
//!
//! The gateway binary has its own `files.rs` for config-named files; this crate cannot depend on
//! the binary, hence this small equivalent.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Default cap on a module file (`HostOptions::max_module_bytes`).
pub const MODULE_MAX_DEFAULT: u64 = 64 << 20;
/// Cap on a `.sig` file: one line of base64 (88 characters for 64 bytes) plus slack.
pub const SIG_MAX: u64 = 512;

/// Why a plugin file was not read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("{what} {path}: not a regular file (devices, FIFOs and directories are refused)")]
    NotRegular { what: &'static str, path: PathBuf },
    #[error("{what} {path}: larger than {max} bytes")]
    TooLarge {
        what: &'static str,
        path: PathBuf,
        max: u64,
    },
    #[error("{what} {path}: resolves to {real}, outside the plugin directory {dir}")]
    Outside {
        what: &'static str,
        path: PathBuf,
        real: PathBuf,
        dir: PathBuf,
    },
}

impl ReadError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::Io { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }
}

/// Reads `path`: a regular file of at most `max` bytes which, when `inside` is given, really
/// lies inside that directory (symlinks inside the directory are fine; ones leading out are not).
pub fn read(
    path: &Path,
    max: u64,
    what: &'static str,
    inside: Option<&Path>,
) -> Result<Vec<u8>, ReadError> {
    let io = |source| ReadError::Io {
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
        return Err(ReadError::NotRegular {
            what,
            path: path.to_owned(),
        });
    }
    if meta.len() > max {
        return Err(ReadError::TooLarge {
            what,
            path: path.to_owned(),
            max,
        });
    }
    if let Some(dir) = inside {
        check_inside(&f, path, dir, what)?;
    }
    let mut buf = Vec::new();
    // the file may grow between the check and the read: never read past the cap
    f.take(max.saturating_add(1))
        .read_to_end(&mut buf)
        .map_err(io)?;
    if buf.len() as u64 > max {
        return Err(ReadError::TooLarge {
            what,
            path: path.to_owned(),
            max,
        });
    }
    Ok(buf)
}

/// The path the kernel opened for `f` (not the name we asked for) must be under `dir`.
fn check_inside(f: &File, path: &Path, dir: &Path, what: &'static str) -> Result<(), ReadError> {
    use std::os::fd::AsRawFd;
    let dir_real = std::fs::canonicalize(dir).map_err(|source| ReadError::Io {
        what,
        path: dir.to_owned(),
        source,
    })?;
    let real =
        std::fs::read_link(format!("/proc/self/fd/{}", f.as_raw_fd())).map_err(|source| {
            ReadError::Io {
                what,
                path: path.to_owned(),
                source,
            }
        })?;
    if real.starts_with(&dir_real) {
        Ok(())
    } else {
        Err(ReadError::Outside {
            what,
            path: path.to_owned(),
            real,
            dir: dir_real,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn regular_capped_and_contained() {
        let d = tempfile::tempdir().unwrap();
        let inside = d.path().join("plugins");
        std::fs::create_dir(&inside).unwrap();
        let outside = d.path().join("elsewhere.wasm");
        std::fs::write(&outside, b"x").unwrap();
        let ok = inside.join("a.wasm");
        std::fs::write(&ok, b"abc").unwrap();
        assert_eq!(read(&ok, 3, "module", Some(&inside)).unwrap(), b"abc");
        assert!(matches!(
            read(&ok, 2, "module", None),
            Err(ReadError::TooLarge { .. })
        ));
        // a symlink inside the directory to a file inside it is fine
        std::os::unix::fs::symlink(&ok, inside.join("cur.wasm")).unwrap();
        assert!(read(&inside.join("cur.wasm"), 3, "module", Some(&inside)).is_ok());
        // one leading out is not
        let esc = inside.join("esc.wasm");
        std::os::unix::fs::symlink(&outside, &esc).unwrap();
        let e = read(&esc, 3, "module", Some(&inside)).unwrap_err();
        assert!(matches!(e, ReadError::Outside { .. }), "{e}");
        assert!(read(&inside, 3, "module", None).is_err(), "a directory");
        assert!(
            read(&inside.join("none"), 3, "module", None)
                .unwrap_err()
                .is_not_found()
        );
    }
}
