//! Reading a plugin's files (module, signature, cache entry): regular files only, opened without
//! blocking on a FIFO, read once with a size cap, and — when a plugin directory is given — only
//! if the file actually opened lies inside it (checked on the open descriptor, so a symlink
//! swapped between a check and the open cannot redirect the read).
//!
//! The reading itself is [`warden_core::files`], shared with the gateway; this module adds the
//! plugin files' caps.

use std::path::Path;

/// Default cap on a module file (`HostOptions::max_module_bytes`).
pub const MODULE_MAX_DEFAULT: u64 = 64 << 20;
/// Cap on a `.sig` file: one line of base64 (88 characters for 64 bytes) plus slack.
pub const SIG_MAX: u64 = 512;

/// Why a plugin file was not read.
pub use warden_core::files::FileError as ReadError;

/// Reads `path`: a regular file of at most `max` bytes which, when `inside` is given, really
/// lies inside that directory (symlinks inside the directory are fine; ones leading out are not).
pub fn read(
    path: &Path,
    max: u64,
    what: &'static str,
    inside: Option<&Path>,
) -> Result<Vec<u8>, ReadError> {
    match inside {
        Some(dir) => warden_core::files::read_inside(path, max, what, dir),
        None => warden_core::files::read(path, max, what),
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
