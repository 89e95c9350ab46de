//! TLS for the dashboard's optional LAN listener (`api.lan_listen`): a configured PEM certificate
//! chain and key, or a self-signed certificate generated at first start into the data dir
//! (`api-tls.crt`, `api-tls.key`, mode 0600) and reused after. The loopback listener stays plain
//! HTTP for the CLI.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

/// The generated certificate and key, in the data dir.
pub const SELF_SIGNED_CERT: &str = "api-tls.crt";
pub const SELF_SIGNED_KEY: &str = "api-tls.key";

/// Writes a file readable by the owner only, replacing none (a second start reuses it).
fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(data)?;
    f.sync_all()
}

/// The certificate and key to serve: the configured pair, or the self-signed one (generated now
/// if the data dir has none). `names` go into a generated certificate's subject alternative names.
pub fn cert_paths(
    cert: Option<&Path>,
    key: Option<&Path>,
    data_dir: &Path,
    names: &[String],
) -> anyhow::Result<(PathBuf, PathBuf)> {
    if let (Some(c), Some(k)) = (cert, key) {
        return Ok((c.to_owned(), k.to_owned()));
    }
    let (c, k) = (
        data_dir.join(SELF_SIGNED_CERT),
        data_dir.join(SELF_SIGNED_KEY),
    );
    if c.exists() && k.exists() {
        return Ok((c, k));
    }
    let ck = rcgen::generate_simple_self_signed(names.to_vec())
        .context("cannot generate the dashboard's self-signed certificate")?;
    let _ = std::fs::remove_file(&c);
    let _ = std::fs::remove_file(&k);
    write_private(&k, ck.signing_key.serialize_pem().as_bytes())
        .with_context(|| format!("cannot write {}", k.display()))?;
    write_private(&c, ck.cert.pem().as_bytes())
        .with_context(|| format!("cannot write {}", c.display()))?;
    tracing::info!(cert = %c.display(), "generated a self-signed certificate for the dashboard's LAN listener");
    Ok((c, k))
}

/// A TLS acceptor (TLS 1.2/1.3, ring, HTTP/1.1) for a PEM certificate chain and key.
pub fn acceptor(cert: &Path, key: &Path) -> anyhow::Result<TlsAcceptor> {
    let chain = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("cannot read {}", cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{} is not a PEM certificate chain", cert.display()))?;
    anyhow::ensure!(!chain.is_empty(), "{} holds no certificate", cert.display());
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("cannot read a PEM private key from {}", key.display()))?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .context("TLS protocol versions")?
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .context("the dashboard's certificate and key do not match")?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(cfg)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_self_signed_pair_is_generated_once_owner_only_and_loads() {
        let d = tempfile::tempdir().unwrap();
        let names = vec!["localhost".to_owned()];
        let (c, k) = cert_paths(None, None, d.path(), &names).unwrap();
        for p in [&c, &k] {
            let mode = std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", p.display());
        }
        let first = std::fs::read(&c).unwrap();
        let (c2, _) = cert_paths(None, None, d.path(), &names).unwrap();
        assert_eq!(std::fs::read(c2).unwrap(), first, "reused, not regenerated");
        assert!(acceptor(&c, &k).is_ok());
    }

    #[test]
    fn a_configured_pair_is_used_as_is() {
        let d = tempfile::tempdir().unwrap();
        let (c, k) = cert_paths(
            Some(Path::new("/etc/x.crt")),
            Some(Path::new("/etc/x.key")),
            d.path(),
            &[],
        )
        .unwrap();
        assert_eq!(c, Path::new("/etc/x.crt"));
        assert_eq!(k, Path::new("/etc/x.key"));
        assert!(!d.path().join(SELF_SIGNED_CERT).exists());
    }

    #[test]
    fn a_key_that_is_not_pem_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let (c, _) = cert_paths(None, None, d.path(), &["localhost".to_owned()]).unwrap();
        let bad = d.path().join("bad.key");
        std::fs::write(&bad, "not a key").unwrap();
        assert!(acceptor(&c, &bad).is_err());
    }
}
