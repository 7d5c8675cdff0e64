//! MQTT over TLS (`[mqtt.tls]`): rustls with the `ring` provider, trusting the CA certificates
//! in `ca_file`, optionally presenting a client certificate (mutual TLS). The broker's
//! certificate must name `mqtt.host` (a DNS name or an IP address in its subjectAltName).
//!
//! Everything is read and checked when the configuration is loaded, so `emonet check` reports a
//! missing or unreadable file, a file without certificates or a key that is not a key, naming the
//! setting and the file.

use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::TlsSettings;

/// The rustls client configuration for `tls` (which must be enabled).
pub fn client_config(tls: &TlsSettings) -> Result<Arc<rustls::ClientConfig>> {
    if tls.ca_file.as_os_str().is_empty() {
        bail!("mqtt.tls.ca_file must name the PEM file of the CA that signed the broker's certificate");
    }
    let with_cert = !tls.client_cert.as_os_str().is_empty();
    let with_key = !tls.client_key.as_os_str().is_empty();
    match (with_cert, with_key) {
        (true, false) => bail!("mqtt.tls.client_cert is set but mqtt.tls.client_key is empty"),
        (false, true) => bail!("mqtt.tls.client_key is set but mqtt.tls.client_cert is empty"),
        _ => {}
    }
    let mut roots = rustls::RootCertStore::empty();
    for cert in certificates("mqtt.tls.ca_file", &tls.ca_file)? {
        roots.add(cert).with_context(|| {
            format!(
                "mqtt.tls.ca_file {}: not a usable CA certificate",
                tls.ca_file.display()
            )
        })?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS: no protocol version available")?
        .with_root_certificates(roots);
    let config = if with_cert {
        let chain = certificates("mqtt.tls.client_cert", &tls.client_cert)?;
        let key = PrivateKeyDer::from_pem_file(&tls.client_key).map_err(|e| {
            anyhow::anyhow!(
                "mqtt.tls.client_key {}: no private key in PEM form ({e})",
                tls.client_key.display()
            )
        })?;
        builder.with_client_auth_cert(chain, key).with_context(|| {
            format!(
                "mqtt.tls.client_key {} does not fit mqtt.tls.client_cert {}",
                tls.client_key.display(),
                tls.client_cert.display()
            )
        })?
    } else {
        builder.with_no_client_auth()
    };
    Ok(Arc::new(config))
}

/// The certificates of a PEM file; at least one.
fn certificates(key: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    std::fs::metadata(path).with_context(|| format!("{key} {}", path.display()))?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect())
        .map_err(|e| anyhow::anyhow!("{key} {}: {e}", path.display()))?;
    if certs.is_empty() {
        bail!("{key} {}: no PEM certificate in this file", path.display());
    }
    Ok(certs)
}

/// Words for a failed TLS connection that tell the operator which setting to look at.
pub fn hint(error: &str) -> &'static str {
    if error.contains("UnknownIssuer") || error.contains("BadSignature") {
        " (the broker's certificate is not signed by the CA in mqtt.tls.ca_file)"
    } else if error.contains("NotValidForName") || error.contains("not valid for name") {
        " (the broker's certificate does not name mqtt.host)"
    } else if error.contains("Expired") || error.contains("NotValidYet") {
        " (the broker's certificate is outside its validity period: check the clock)"
    } else if error.contains("CertificateRequired") || error.contains("certificate required") {
        " (the broker wants a client certificate: mqtt.tls.client_cert / client_key)"
    } else {
        ""
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_or_empty_files_name_the_setting() {
        let tls = TlsSettings {
            enabled: true,
            ca_file: "/nonexistent/ca.pem".into(),
            ..TlsSettings::default()
        };
        let err = format!("{:#}", client_config(&tls).unwrap_err());
        assert!(
            err.contains("mqtt.tls.ca_file /nonexistent/ca.pem"),
            "{err}"
        );

        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let tls = TlsSettings {
            ca_file: empty.clone(),
            ..tls
        };
        let err = format!("{:#}", client_config(&tls).unwrap_err());
        assert!(
            err.contains("mqtt.tls.ca_file") && err.contains("no PEM certificate"),
            "{err}"
        );

        let tls = TlsSettings {
            client_cert: empty,
            ..tls
        };
        let err = format!("{:#}", client_config(&tls).unwrap_err());
        assert!(err.contains("mqtt.tls.client_key"), "{err}");
    }
}
