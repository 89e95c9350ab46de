//! Opening a link's transport: a TCP connection, a serial port, or a TLS connection whose server
//! certificate is checked against the configured CA and whose role extension is read.

use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use sha2::{Digest, Sha256};
use tokio::net::TcpStream;
use tokio_modbus::client::Context;
use tokio_modbus::slave::Slave;

use crate::codec::{ROLE_OID, parse_role};
use crate::config::{LinkConfig, Parity, Transport};

/// What the TLS handshake proved about the server.
#[derive(Debug, Clone, PartialEq)]
pub struct Peer {
    /// SHA-256 of the server certificate (DER), hex.
    pub fingerprint: String,
    /// The Modbus/TCP Security role, when the certificate carries one.
    pub role: Option<String>,
}

/// Why a link could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("tls setup: {0}")]
    TlsSetup(String),
    #[error("connect: {0}")]
    Connect(String),
    #[error("tls handshake refused: {0}")]
    Handshake(String),
    #[error("server certificate: {0}")]
    Certificate(String),
    #[error("serial port: {0}")]
    Serial(String),
    #[error("timed out after {0:?}")]
    Timeout(Duration),
}

/// Builds the rustls client configuration (reads the PEM files).
pub fn tls_config(c: &LinkConfig) -> Result<Arc<rustls::ClientConfig>, OpenError> {
    let setup = |m: String| OpenError::TlsSetup(m);
    let (Some(ca), Some(cert), Some(key)) = (&c.ca, &c.cert, &c.key) else {
        return Err(setup("ca, cert and key are required".into()));
    };
    let mut roots = rustls::RootCertStore::empty();
    for der in
        CertificateDer::pem_file_iter(ca).map_err(|e| setup(format!("{}: {e}", ca.display())))?
    {
        let der = der.map_err(|e| setup(format!("{}: {e}", ca.display())))?;
        roots
            .add(der)
            .map_err(|e| setup(format!("{}: {e}", ca.display())))?;
    }
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| setup(format!("{}: {e}", cert.display())))?
        .collect::<Result<_, _>>()
        .map_err(|e| setup(format!("{}: {e}", cert.display())))?;
    let key =
        PrivateKeyDer::from_pem_file(key).map_err(|e| setup(format!("{}: {e}", key.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| setup(e.to_string()))?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| setup(e.to_string()))?;
    Ok(Arc::new(cfg))
}

/// Reads fingerprint and role from the server's end-entity certificate.
pub fn inspect(cert_der: &[u8]) -> Result<Peer, OpenError> {
    let fingerprint = hex::encode(Sha256::digest(cert_der));
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der)
        .map_err(|e| OpenError::Certificate(e.to_string()))?;
    let mut role = None;
    for ext in cert.extensions() {
        if ext.oid.to_id_string() == ROLE_OID {
            role = Some(parse_role(ext.value).map_err(|e| OpenError::Certificate(e.to_string()))?);
        }
    }
    Ok(Peer { fingerprint, role })
}

/// What the link's config asks of the server certificate beyond the chain: its pinned
/// fingerprint, and with `require_role` the Modbus/TCP Security role extension.
pub fn accept(c: &LinkConfig, peer: &Peer) -> Result<(), OpenError> {
    if let Some(pin) = &c.pin_sha256
        && !pin.eq_ignore_ascii_case(&peer.fingerprint)
    {
        return Err(OpenError::Certificate(format!(
            "fingerprint {} does not match the pinned one",
            peer.fingerprint
        )));
    }
    if c.require_role && peer.role.is_none() {
        return Err(OpenError::Certificate(format!(
            "server certificate sha256:{} carries no Modbus/TCP Security role (require_role)",
            peer.fingerprint
        )));
    }
    Ok(())
}

async fn within<T>(
    d: Duration,
    f: impl Future<Output = Result<T, OpenError>>,
) -> Result<T, OpenError> {
    tokio::time::timeout(d, f)
        .await
        .map_err(|_| OpenError::Timeout(d))?
}

/// Opens the transport and returns a client context (and, for TLS, what the handshake proved).
pub async fn open(
    c: &LinkConfig,
    tls: Option<&Arc<rustls::ClientConfig>>,
) -> Result<(Context, Option<Peer>), OpenError> {
    let t = Duration::from_millis(c.timeout_ms.max(1000));
    match c.transport {
        Transport::Tcp => {
            within(t, async {
                let host = c.host.as_deref().unwrap_or("");
                let s = TcpStream::connect((host, c.port.unwrap_or(502)))
                    .await
                    .map_err(|e| OpenError::Connect(e.to_string()))?;
                let _ = s.set_nodelay(true);
                Ok((tokio_modbus::client::tcp::attach_slave(s, Slave(1)), None))
            })
            .await
        }
        Transport::Tls => {
            let cfg = tls
                .ok_or_else(|| OpenError::TlsSetup("no tls configuration".into()))?
                .clone();
            within(t, async {
                let host = c.host.as_deref().unwrap_or("");
                let name = c.server_name.clone().unwrap_or_else(|| host.to_owned());
                let name = ServerName::try_from(name)
                    .map_err(|e| OpenError::TlsSetup(format!("server_name: {e}")))?;
                let s = TcpStream::connect((host, c.port.unwrap_or(802)))
                    .await
                    .map_err(|e| OpenError::Connect(e.to_string()))?;
                let _ = s.set_nodelay(true);
                let stream = tokio_rustls::TlsConnector::from(cfg)
                    .connect(name, s)
                    .await
                    .map_err(|e| OpenError::Handshake(e.to_string()))?;
                let leaf = stream
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .ok_or_else(|| OpenError::Certificate("server sent none".into()))?;
                let peer = inspect(leaf.as_ref())?;
                accept(c, &peer)?;
                Ok((
                    tokio_modbus::client::tcp::attach_slave(stream, Slave(1)),
                    Some(peer),
                ))
            })
            .await
        }
        Transport::Rtu => {
            let path = c.path.as_deref().unwrap_or("");
            let builder = tokio_serial::new(path, c.baud)
                .parity(match c.parity {
                    Parity::None => tokio_serial::Parity::None,
                    Parity::Even => tokio_serial::Parity::Even,
                    Parity::Odd => tokio_serial::Parity::Odd,
                })
                .stop_bits(if c.stop_bits == 2 {
                    tokio_serial::StopBits::Two
                } else {
                    tokio_serial::StopBits::One
                })
                .data_bits(match c.data_bits {
                    5 => tokio_serial::DataBits::Five,
                    6 => tokio_serial::DataBits::Six,
                    7 => tokio_serial::DataBits::Seven,
                    _ => tokio_serial::DataBits::Eight,
                });
            let port = tokio_serial::SerialStream::open(&builder)
                .map_err(|e| OpenError::Serial(format!("{path}: {e}")))?;
            Ok((
                tokio_modbus::client::rtu::attach_slave(port, Slave(1)),
                None,
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn link(extra: &str) -> LinkConfig {
        let v: toml::Value = toml::from_str(&format!(
            "[[links]]\ntransport = \"tls\"\nhost = \"127.0.0.1\"\nca = \"ca.pem\"\ncert = \"c.pem\"\nkey = \"k.pem\"\n{extra}\n[[links.devices]]\nunit = 1\n[[links.devices.groups]]\ninterval_ms = 1000\npoints = [{{ name = \"t\", table = \"holding\", address = 1, type = \"u16\" }}]\n"
        ))
        .unwrap();
        crate::config::parse(&v).unwrap().links.remove(0)
    }

    #[test]
    fn require_role_refuses_a_server_certificate_without_one() {
        let with = Peer {
            fingerprint: "ab".into(),
            role: Some("Server".into()),
        };
        let without = Peer {
            fingerprint: "ab".into(),
            role: None,
        };
        let strict = link("require_role = true");
        assert!(accept(&strict, &with).is_ok());
        let e = accept(&strict, &without).unwrap_err().to_string();
        assert!(e.contains("no Modbus/TCP Security role"), "{e}");
        // the default takes a certificate without a role
        let lax = link("");
        assert!(accept(&lax, &without).is_ok());
        // the pin is checked as before
        let pinned = link("pin_sha256 = \"cd\"");
        assert!(accept(&pinned, &with).is_err());
    }
}
