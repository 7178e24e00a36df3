//! TLS to etcd, through rustls: the CA that signs etcd's server
//! certificates (`[store] ca_file`, else the system's web roots) and this
//! host's client certificate and key (`cert_file`, `key_file`).

use super::EtcdConfig;
use crate::fleet::kv::KvError;
use std::path::PathBuf;
use std::sync::Arc;

pub(super) fn tls_config(config: &EtcdConfig) -> Result<Arc<rustls::ClientConfig>, KvError> {
    let fail = |what: String| KvError::Failed(format!("etcd TLS: {what}"));
    let read = |path: &PathBuf| -> Result<Vec<u8>, KvError> {
        std::fs::read(path).map_err(|e| fail(format!("cannot read {}: {e}", path.display())))
    };
    let mut roots = rustls::RootCertStore::empty();
    match &config.ca_file {
        Some(path) => {
            let pem = read(path)?;
            for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
                let cert = cert.map_err(|e| fail(format!("{}: {e}", path.display())))?;
                roots
                    .add(cert)
                    .map_err(|e| fail(format!("{}: {e}", path.display())))?;
            }
            if roots.is_empty() {
                return Err(fail(format!("{} holds no PEM certificate", path.display())));
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| fail(e.to_string()))?
        .with_root_certificates(roots);
    let tls = match (&config.cert_file, &config.key_file) {
        (Some(cert), Some(key)) => {
            let certs = rustls_pemfile::certs(&mut read(cert)?.as_slice())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| fail(format!("{}: {e}", cert.display())))?;
            let key_pem = zeroize::Zeroizing::new(read(key)?);
            let key_der = rustls_pemfile::private_key(&mut key_pem.as_slice())
                .map_err(|e| fail(format!("{}: {e}", key.display())))?
                .ok_or_else(|| fail(format!("{} holds no private key", key.display())))?;
            builder
                .with_client_auth_cert(certs, key_der)
                .map_err(|e| fail(e.to_string()))?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => {
            return Err(fail(
                "cert_file and key_file go together: give both or neither".into(),
            ));
        }
    };
    Ok(Arc::new(tls))
}
