//! TLS on the listener (rustls): a certificate chain and key read from PEM files, offered
//! with ALPN h2 and http/1.1, and read again on SIGHUP (a renewed certificate is served to
//! new connections without a restart; a bad file keeps the previous one, with an error).

use anyhow::Context;
use rustls::{
    ServerConfig,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
};
use std::{
    path::{Path, PathBuf},
    sync::{Arc, RwLock},
};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

/// The listener's TLS settings, reloadable.
#[derive(Clone)]
pub struct Tls {
    cert: PathBuf,
    key: PathBuf,
    current: Arc<RwLock<TlsAcceptor>>,
}

impl Tls {
    /// Reads `cert` (a PEM chain, leaf first) and `key` (a PEM private key); fails with the
    /// path and the reason when either is unusable.
    pub fn load(cert: &Path, key: &Path) -> anyhow::Result<Self> {
        let acceptor = acceptor(cert, key)?;
        Ok(Self {
            cert: cert.to_owned(),
            key: key.to_owned(),
            current: Arc::new(RwLock::new(acceptor)),
        })
    }

    /// The acceptor for a new connection.
    pub fn acceptor(&self) -> TlsAcceptor {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Reads the files again; on failure keeps serving the previous certificate.
    pub fn reload(&self) -> anyhow::Result<()> {
        let fresh = acceptor(&self.cert, &self.key)?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = fresh;
        Ok(())
    }

    /// Reloads on every SIGHUP until `stop`.
    pub fn reload_on_sighup(&self, stop: CancellationToken) -> anyhow::Result<()> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hup = signal(SignalKind::hangup()).context("cannot listen for SIGHUP")?;
        let tls = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    got = hup.recv() => if got.is_none() { return },
                }
                match tls.reload() {
                    Ok(()) => {
                        tracing::info!(cert = %tls.cert.display(), "TLS certificate reloaded")
                    }
                    Err(e) => tracing::error!(
                        error = format!("{e:#}"),
                        "TLS certificate not reloaded: still serving the previous one"
                    ),
                }
            }
        });
        Ok(())
    }
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("cert", &self.cert)
            .finish_non_exhaustive()
    }
}

fn acceptor(cert: &Path, key: &Path) -> anyhow::Result<TlsAcceptor> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("cannot read the TLS certificate {}", cert.display()))?;
    if chain.is_empty() {
        anyhow::bail!("{} holds no certificate", cert.display());
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("cannot read the TLS private key {}", key.display()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("the TLS certificate and key do not make a usable pair")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
