//! TLS to PostgreSQL (rustls), chosen by the connection string's `sslmode` with libpq's
//! meanings: `disable` never; `prefer` (the default) encrypts when the server offers TLS;
//! `require` insists on it; neither checks the certificate. `verify-ca` also checks the
//! chain against the roots, `verify-full` the chain and the host name. The roots are the
//! PEM file named by `sslrootcert`, or else the system's (which honours `SSL_CERT_FILE`).
//! Both forms of connection string work: `postgres://...?sslmode=verify-full` and
//! `host=... sslmode=verify-full` (values without spaces).

use anyhow::Context;
use diesel::{ConnectionError, ConnectionResult};
use diesel_async::AsyncPgConnection;
use rustls::{
    ClientConfig, DigitallySignedStruct, Error as TlsError, SignatureScheme,
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    client::{VerifierBuilderError, WebPkiServerVerifier},
    crypto::WebPkiSupportedAlgorithms,
    pki_types::{CertificateDer, ServerName, UnixTime, pem::PemObject},
};
use std::sync::Arc;
use tokio_postgres_rustls::MakeRustlsConnect;

/// Where and how to connect: the connection string tokio-postgres understands (with
/// `sslmode` reduced to `disable`, `prefer` or `require`) and the TLS client for it.
#[derive(Clone)]
pub struct Target {
    conninfo: String,
    tls: MakeRustlsConnect,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Target { .. }")
    }
}

/// libpq's `sslmode` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl Target {
    /// Reads `sslmode` and `sslrootcert` out of `url` and builds the TLS client they ask
    /// for; fails naming the setting that is wrong.
    pub fn parse(url: &str) -> anyhow::Result<Self> {
        let (conninfo, mode, root) = split_tls_settings(url)?;
        let tls = client_config(mode, root.as_deref())?;
        Ok(Self {
            conninfo,
            tls: MakeRustlsConnect::new(tls),
        })
    }

    /// Opens one connection.
    pub async fn establish(&self) -> ConnectionResult<AsyncPgConnection> {
        let (client, connection) = tokio_postgres::connect(&self.conninfo, self.tls.clone())
            .await
            .map_err(|e| ConnectionError::BadConnection(format!("{:#}", anyhow::Error::from(e))))?;
        AsyncPgConnection::try_from_client_and_connection(client, connection).await
    }
}

/// The connection string without `sslrootcert`, with `sslmode` as tokio-postgres knows it,
/// and the mode and root file asked for.
fn split_tls_settings(url: &str) -> anyhow::Result<(String, Mode, Option<String>)> {
    let mut mode = None;
    let mut root = None;
    let mut take = |key: &str, value: &str| -> anyhow::Result<bool> {
        match key {
            "sslmode" => mode = Some(parse_mode(value)?),
            "sslrootcert" => root = Some(value.to_owned()),
            _ => return Ok(false),
        }
        Ok(true)
    };
    let mut rest = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        // Only the query is rewritten: the authority may name several hosts
        // (`h1:5432,h2:5432`, libpq's failover list), which a URL parser refuses.
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let mut kept = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
            if !take(&k, &v)? {
                kept.append_pair(&k, &v);
            }
        }
        let kept = kept.finish();
        if kept.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{kept}")
        }
    } else {
        let mut kept = Vec::new();
        for word in url.split_whitespace() {
            match word.split_once('=') {
                Some((k, v)) if take(k.trim(), v.trim())? => {}
                _ => kept.push(word),
            }
        }
        kept.join(" ")
    };
    let mode = mode.unwrap_or(Mode::Prefer);
    let reduced = match mode {
        Mode::Disable => "disable",
        Mode::Prefer => "prefer",
        Mode::Require | Mode::VerifyCa | Mode::VerifyFull => "require",
    };
    if rest.contains("://") {
        rest.push(if rest.contains('?') { '&' } else { '?' });
        rest.push_str("sslmode=");
    } else {
        rest.push_str(" sslmode=");
    }
    rest.push_str(reduced);
    Ok((rest, mode, root))
}

fn parse_mode(value: &str) -> anyhow::Result<Mode> {
    Ok(match value {
        "disable" => Mode::Disable,
        // libpq's `allow` tries plaintext first; TLS when offered is at least as safe.
        "allow" | "prefer" => Mode::Prefer,
        "require" => Mode::Require,
        "verify-ca" => Mode::VerifyCa,
        "verify-full" => Mode::VerifyFull,
        other => anyhow::bail!(
            "DATABASE_URL: sslmode `{other}` is not one of disable, allow, prefer, require, verify-ca, verify-full"
        ),
    })
}

fn client_config(mode: Mode, root: Option<&str>) -> anyhow::Result<ClientConfig> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?;
    let chain = match mode {
        Mode::Disable | Mode::Prefer | Mode::Require => None,
        Mode::VerifyCa | Mode::VerifyFull => Some(
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots(root)?), provider.clone())
                .build()
                .map_err(|e: VerifierBuilderError| anyhow::anyhow!("DATABASE_URL: {e}"))?,
        ),
    };
    let verifier = Verifier {
        chain,
        check_name: mode == Mode::VerifyFull,
        algorithms: provider.signature_verification_algorithms,
    };
    Ok(builder
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth())
}

/// The roots certificates are checked against: the `sslrootcert` file, or the system's.
fn roots(file: Option<&str>) -> anyhow::Result<rustls::RootCertStore> {
    let mut store = rustls::RootCertStore::empty();
    let certs: Vec<CertificateDer<'static>> = match file {
        Some(path) => CertificateDer::pem_file_iter(path)
            .and_then(|certs| certs.collect())
            .with_context(|| format!("DATABASE_URL: cannot read sslrootcert {path}"))?,
        None => rustls_native_certs::load_native_certs().certs,
    };
    let (added, _) = store.add_parsable_certificates(certs);
    if added == 0 {
        anyhow::bail!(
            "DATABASE_URL: sslmode verify-ca/verify-full, but no root certificate to check against (set sslrootcert, or SSL_CERT_FILE)"
        );
    }
    Ok(store)
}

/// The certificate check of a mode. The handshake's signatures are always checked, so the
/// connection is encrypted to whoever holds the certificate's key; `chain` (verify-ca and
/// verify-full) must lead to a trusted root, and with `check_name` (verify-full) name the
/// host. Without a chain any certificate is accepted, as libpq does for prefer and require.
#[derive(Debug)]
struct Verifier {
    chain: Option<Arc<WebPkiServerVerifier>>,
    check_name: bool,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, TlsError> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(TlsError::InvalidCertificate(
                rustls::CertificateError::NotValidForName
                | rustls::CertificateError::NotValidForNameContext { .. },
            )) if !self.check_name => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tls_settings_come_out_of_both_forms_of_connection_string() {
        let (url, mode, root) = split_tls_settings(
            "postgres://u@db:5432/epop?sslmode=verify-full&sslrootcert=/ca.pem&application_name=x",
        )
        .unwrap();
        assert_eq!(
            url,
            "postgres://u@db:5432/epop?application_name=x&sslmode=require"
        );
        assert_eq!((mode, root.as_deref()), (Mode::VerifyFull, Some("/ca.pem")));
        let (url, mode, root) = split_tls_settings("postgres://u@db/epop").unwrap();
        assert_eq!(url, "postgres://u@db/epop?sslmode=prefer");
        assert_eq!((mode, root), (Mode::Prefer, None));
        let (kv, mode, _) =
            split_tls_settings("host='/run/pg' user='me' dbname=epop sslmode=verify-ca").unwrap();
        assert_eq!(kv, "host='/run/pg' user='me' dbname=epop sslmode=require");
        assert_eq!(mode, Mode::VerifyCa);
        let (url, _, _) =
            split_tls_settings("postgres://u@h1:5432,h2:5433/epop?target_session_attrs=read-write")
                .unwrap();
        assert_eq!(
            url,
            "postgres://u@h1:5432,h2:5433/epop?target_session_attrs=read-write&sslmode=prefer"
        );
        let err = split_tls_settings("postgres://db/epop?sslmode=always").unwrap_err();
        assert!(err.to_string().contains("sslmode `always`"), "{err}");
    }
}
