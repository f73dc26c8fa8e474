//! S3 over HTTPS: the server reaches a real S3 server (s3s-fs) through a TLS endpoint whose
//! certificate comes from a throwaway CA, trusted through `EPOP_S3_CA_FILE`; a server that
//! does not trust the CA cannot reach the bucket and says so instead of accepting the file.

use crate::{
    events::{client, group, send},
    files::{S3Server, presign, put},
    helpers::*,
    test_ca::{free_port, test_ca},
};
use epop::pb;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};
use tonic::Code;

/// A TLS endpoint on 127.0.0.1 forwarding every connection to `upstream` (host:port);
/// answers its port and a count of finished handshakes.
async fn tls_front(dir: &std::path::Path, upstream: String) -> (u16, Arc<AtomicUsize>) {
    let chain = CertificateDer::pem_file_iter(dir.join("cert.pem"))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(dir.join("key.pem")).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let port = free_port();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let handshakes = Arc::new(AtomicUsize::new(0));
    let count = handshakes.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, upstream, count) = (acceptor.clone(), upstream.clone(), count.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                count.fetch_add(1, Ordering::SeqCst);
                if let Ok(mut s3) = tokio::net::TcpStream::connect(&upstream).await {
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut s3).await;
                }
            });
        }
    });
    (port, handshakes)
}

/// Uploads `data` and sends it into `g`: the send checks the upload in the bucket.
async fn attach(
    app: &TestApp,
    g: &str,
    token: &str,
    data: &[u8],
) -> Result<tonic::Response<pb::Message>, tonic::Status> {
    let p = presign(app, token, "a.pdf", "application/pdf", data).await;
    assert_eq!(put(&p, data.to_vec()).await, 200, "stored in the bucket");
    let req = pb::SendMessageRequest {
        attachment_ids: vec![p.file.unwrap().id],
        ..send(g, "see attached")
    };
    client(app).await.send_message(authed(req, token)).await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_bucket_is_reached_over_https_with_a_private_ca_and_refused_without_it() {
    let s3 = S3Server::start();
    let dir = tempfile::tempdir().unwrap();
    test_ca(dir.path(), "DNS:localhost,IP:127.0.0.1");
    let upstream = s3.endpoint.trim_start_matches("http://").to_owned();
    let (port, handshakes) = tls_front(dir.path(), upstream).await;
    // The server calls the bucket over HTTPS; clients upload to it directly by its plain
    // name (as a browser would reach a MinIO by another address).
    let configure = |c: &mut epop::config::Config, trust: bool| {
        s3.configure(c);
        c.files.s3_public_endpoint = Some(s3.endpoint.clone());
        c.files.s3_endpoint = Some(format!("https://localhost:{port}"));
        c.files.s3_ca_file = trust.then(|| dir.path().join("ca.pem"));
    };

    let app = TestApp::spawn_with(|c| configure(c, true)).await;
    let (_, ann) = user(&app, "ann").await;
    let (bob_id, _) = user(&app, "bob").await;
    let g = group(&app, &ann, &[&bob_id]).await;
    let data = b"%PDF- over https".to_vec();
    let sent = attach(&app, &g, &ann, &data)
        .await
        .expect("the upload is checked over HTTPS");
    assert_eq!(sent.into_inner().attachments.len(), 1);
    assert!(
        handshakes.load(Ordering::SeqCst) > 0,
        "no TLS connection was made"
    );

    // Without the CA the certificate is refused: the upload cannot be confirmed, and the
    // send fails as the bucket being out of reach, not as the file being bad.
    let before = handshakes.load(Ordering::SeqCst);
    let untrusting = TestApp::spawn_with(|c| {
        configure(c, false);
        c.store.database_url = Some(database_url(&app.db_name).into());
    })
    .await;
    let err = attach(&untrusting, &g, &ann, &data).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert_eq!(handshakes.load(Ordering::SeqCst), before);
}
