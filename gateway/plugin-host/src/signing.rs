//! Plugin signatures: Ed25519 over the SHA-256 digest of the module file.
//!
//! Files (all base64, one line):
//! - private key `NAME`: the 32-byte seed, written with mode 0600;
//! - public key `NAME.pub`: the 32-byte public key;
//! - signature `MODULE.sig` (next to the module): the 64-byte signature over the 32-byte digest.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

/// Why signing or verification failed.
#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{0}: not a valid key")]
    Key(String),
    #[error("{0}: not a valid signature file")]
    Malformed(String),
    #[error("signature does not match the module")]
    Mismatch,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> SigningError + '_ {
    move |source| SigningError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The SHA-256 digest of a file's contents.
pub fn file_sha256(path: &Path) -> io::Result<[u8; 32]> {
    Ok(sha256(&fs::read(path)?))
}

pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// The signature file of a module: `MODULE.sig` (the module's full file name plus `.sig`).
pub fn sig_path(module: &Path) -> PathBuf {
    let mut s = module.as_os_str().to_owned();
    s.push(".sig");
    PathBuf::from(s)
}

/// A key's id: hex of the first 8 bytes of the public key.
pub fn key_id(key: &VerifyingKey) -> String {
    hex::encode(key.as_bytes().get(..8).unwrap_or_default())
}

/// Creates `out_dir/NAME.key` (private, 0600) and `out_dir/NAME.pub`. Refuses to overwrite either.
pub fn keygen(out_dir: &Path, name: &str) -> io::Result<(PathBuf, PathBuf)> {
    if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("invalid key name {name:?}"),
        ));
    }
    fs::create_dir_all(out_dir)?;
    let private = out_dir.join(format!("{name}.key"));
    let public = out_dir.join(format!("{name}.pub"));
    if public.exists() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} already exists", public.display()),
        ));
    }
    let seed: [u8; 32] = rand::random();
    let key = SigningKey::from_bytes(&seed);
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&private)?;
    f.write_all(format!("{}\n", B64.encode(seed)).as_bytes())?;
    f.sync_all()?;
    fs::write(
        &public,
        format!("{}\n", B64.encode(key.verifying_key().as_bytes())),
    )?;
    Ok((private, public))
}

fn decode_32(text: &str) -> Option<[u8; 32]> {
    let bytes = B64.decode(text.trim()).ok()?;
    <[u8; 32]>::try_from(bytes.as_slice()).ok()
}

/// Reads a private key file (base64 of the 32-byte seed).
pub fn read_signing_key(path: &Path) -> Result<SigningKey, SigningError> {
    let text = fs::read_to_string(path).map_err(io_err(path))?;
    let seed = decode_32(&text).ok_or_else(|| SigningError::Key(path.display().to_string()))?;
    Ok(SigningKey::from_bytes(&seed))
}

/// Reads a public key from a `.pub` file, or from its base64 text given inline.
pub fn read_pubkey(path_or_base64: &str) -> Result<VerifyingKey, SigningError> {
    let path = Path::new(path_or_base64);
    let text = if path.is_file() {
        fs::read_to_string(path).map_err(io_err(path))?
    } else {
        path_or_base64.to_owned()
    };
    let bytes = decode_32(&text).ok_or_else(|| SigningError::Key(path_or_base64.to_owned()))?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| SigningError::Key(path_or_base64.to_owned()))
}

/// Signs `module` with the private key file `key`, writing `MODULE.sig`; returns its path.
pub fn sign(module: &Path, key: &Path) -> Result<PathBuf, SigningError> {
    let key = read_signing_key(key)?;
    let digest = file_sha256(module).map_err(io_err(module))?;
    let sig = key.sign(&digest);
    let out = sig_path(module);
    fs::write(&out, format!("{}\n", B64.encode(sig.to_bytes()))).map_err(io_err(&out))?;
    Ok(out)
}

/// Reads a signature file (a regular file of at most [`crate::files::SIG_MAX`] bytes).
pub fn read_signature(sig: &Path) -> Result<Signature, SigningError> {
    let bytes = crate::files::read(sig, crate::files::SIG_MAX, "signature", None).map_err(|e| {
        SigningError::Io {
            path: sig.to_owned(),
            source: io::Error::other(e.to_string()),
        }
    })?;
    parse_signature(&bytes, sig)
}

/// Parses the contents of a signature file (`sig` names it in errors).
pub fn parse_signature(contents: &[u8], sig: &Path) -> Result<Signature, SigningError> {
    let text = std::str::from_utf8(contents)
        .map_err(|_| SigningError::Malformed(sig.display().to_string()))?;
    let bytes = B64
        .decode(text.trim())
        .map_err(|_| SigningError::Malformed(sig.display().to_string()))?;
    let bytes = <[u8; 64]>::try_from(bytes.as_slice())
        .map_err(|_| SigningError::Malformed(sig.display().to_string()))?;
    Ok(Signature::from_bytes(&bytes))
}

/// Checks a signature over a module digest.
pub fn verify_digest(
    digest: &[u8; 32],
    sig: &Signature,
    pubkey: &VerifyingKey,
) -> Result<(), SigningError> {
    pubkey
        .verify_strict(digest, sig)
        .map_err(|_| SigningError::Mismatch)
}

/// Checks `sig` (a `.sig` file) over the file `module` with `pubkey`.
pub fn verify(module: &Path, sig: &Path, pubkey: &VerifyingKey) -> Result<(), SigningError> {
    let digest = file_sha256(module).map_err(io_err(module))?;
    verify_digest(&digest, &read_signature(sig)?, pubkey)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn keygen_sign_verify_and_tamper() {
        let dir = tempfile::tempdir().unwrap();
        let (private, public) = keygen(dir.path(), "ops").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&private).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(keygen(dir.path(), "ops").is_err(), "never overwrites a key");
        let module = dir.path().join("p.wasm");
        fs::write(&module, b"\0asm module bytes").unwrap();
        let sig = sign(&module, &private).unwrap();
        assert_eq!(sig, dir.path().join("p.wasm.sig"));
        let pk = read_pubkey(public.to_str().unwrap()).unwrap();
        let inline = read_pubkey(fs::read_to_string(&public).unwrap().trim()).unwrap();
        assert_eq!(pk, inline);
        assert_eq!(key_id(&pk).len(), 16);
        verify(&module, &sig, &pk).unwrap();

        fs::write(&module, b"\0asm module bytez").unwrap();
        assert!(matches!(
            verify(&module, &sig, &pk),
            Err(SigningError::Mismatch)
        ));

        let (_, other_pub) = keygen(dir.path(), "other").unwrap();
        let other = read_pubkey(other_pub.to_str().unwrap()).unwrap();
        fs::write(&module, b"\0asm module bytes").unwrap();
        assert!(matches!(
            verify(&module, &sig, &other),
            Err(SigningError::Mismatch)
        ));
        fs::write(&sig, "not base64!").unwrap();
        assert!(matches!(
            verify(&module, &sig, &pk),
            Err(SigningError::Malformed(_))
        ));
        assert!(read_pubkey("garbage").is_err());
    }
}
