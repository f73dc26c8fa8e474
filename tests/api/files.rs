//! Files through presigned URLs, on both backends: the local directory served by the server
//! itself, and a real S3 server (`s3s-fs`, which checks SigV4 signatures; `scripts/test`
//! installs it and names it in `EPOP_TEST_S3FS`). Uploads and downloads use a plain HTTP
//! client, as a browser or app would.

use crate::{
    events::{client, group, next, open, send},
    helpers::*,
};
use base64::{Engine, engine::general_purpose::STANDARD};
use epop::pb::{self, event::Kind, file_service_client::FileServiceClient};
use futures::StreamExt;
use sha2::{Digest, Sha256};
use std::{path::PathBuf, time::Duration};
use tonic::Code;

pub(crate) const BUCKET: &str = "epop-files";

/// An `s3s-fs` server of the test's own, on a free port, over a temporary directory.
pub(crate) struct S3Server {
    pub endpoint: String,
    pub root: tempfile::TempDir,
    child: std::process::Child,
}

impl S3Server {
    pub(crate) fn start() -> Self {
        let bin = std::env::var("EPOP_TEST_S3FS")
            .expect("EPOP_TEST_S3FS names the s3s-fs binary: run the tests with ./scripts/test");
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join(BUCKET)).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = std::process::Command::new(bin)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args([
                "--access-key",
                "epop-test",
                "--secret-key",
                "epop-test-secret",
            ])
            .arg(root.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("s3s-fs starts");
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            endpoint: format!("http://127.0.0.1:{port}"),
            root,
            child,
        }
    }

    /// Points `c` at this server.
    pub(crate) fn configure(&self, c: &mut epop::config::Config) {
        c.files.s3_bucket = Some(BUCKET.into());
        c.files.s3_endpoint = Some(self.endpoint.clone());
        c.files.s3_access_key_id = Some("epop-test".into());
        c.files.s3_secret_access_key = Some("epop-test-secret".to_owned().into());
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A server on one backend, and where its objects land on disk.
pub(crate) struct Setup {
    pub app: TestApp,
    s3: Option<S3Server>,
}

impl Setup {
    pub(crate) async fn new(s3: bool, tweak: impl FnOnce(&mut epop::config::Config)) -> Self {
        let s3 = s3.then(S3Server::start);
        let app = TestApp::spawn_with(|c| {
            if let Some(s) = &s3 {
                s.configure(c);
            }
            tweak(c);
        })
        .await;
        Self { app, s3 }
    }

    /// The file holding the bytes of file `id` now: its upload while pending, its sealed
    /// copy once attached (both backends keep objects as files).
    pub(crate) async fn object_path(&self, id: &str) -> PathBuf {
        let key = db_text(
            &self.app.db_name,
            &format!(
                "SELECT CASE WHEN state = 'pending' THEN staging_key ELSE key END AS v \
                 FROM attachments WHERE id = '{id}'"
            ),
        )
        .await;
        self.path_of(&key)
    }

    /// Where the object `key` is kept on disk.
    pub(crate) fn path_of(&self, key: &str) -> PathBuf {
        match &self.s3 {
            Some(s) => s.root.path().join(BUCKET).join(key),
            None => self.app.data_dir.join("files").join(key),
        }
    }
}

pub(crate) async fn files(app: &TestApp) -> FileServiceClient<tonic::transport::Channel> {
    FileServiceClient::new(app.channel().await)
}

pub(crate) fn bytes(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 31 % 251) as u8).collect()
}

pub(crate) fn sha256(b: &[u8]) -> String {
    STANDARD.encode(Sha256::digest(b))
}

/// Presigns an upload of `data` as `name` (`type`), with its checksum.
pub(crate) async fn presign(
    app: &TestApp,
    token: &str,
    name: &str,
    ty: &str,
    data: &[u8],
) -> pb::PresignUploadResponse {
    files(app)
        .await
        .presign_upload(authed(
            pb::PresignUploadRequest {
                file_name: name.into(),
                content_type: ty.into(),
                size: data.len() as i64,
                checksum_sha256: sha256(data),
            },
            token,
        ))
        .await
        .expect("PresignUpload")
        .into_inner()
}

/// PUTs `data` to a presigned upload with its headers; the status.
pub(crate) async fn put(p: &pb::PresignUploadResponse, data: Vec<u8>) -> u16 {
    let mut req = reqwest::Client::new().put(&p.upload_url);
    for (k, v) in &p.headers {
        if k != "content-length" {
            req = req.header(k, v);
        }
    }
    req.body(data).send().await.unwrap().status().as_u16()
}

/// Presigns and uploads `data`; the file's id.
pub(crate) async fn upload(app: &TestApp, token: &str, name: &str, data: &[u8]) -> String {
    let p = presign(app, token, name, "application/pdf", data).await;
    assert_eq!(put(&p, data.to_vec()).await, 200, "the upload is stored");
    p.file.unwrap().id
}

fn with_files(conversation: &str, text: &str, ids: &[&str]) -> pb::SendMessageRequest {
    pb::SendMessageRequest {
        attachment_ids: ids.iter().map(|s| s.to_string()).collect(),
        ..send(conversation, text)
    }
}

async fn download_url(app: &TestApp, token: &str, id: &str) -> Result<String, tonic::Status> {
    files(app)
        .await
        .presign_download(authed(pb::PresignDownloadRequest { id: id.into() }, token))
        .await
        .map(|r| r.into_inner().download_url)
}

async fn message_count(app: &TestApp, token: &str, conversation: &str) -> usize {
    client(app)
        .await
        .list_messages(authed(
            pb::ListMessagesRequest {
                conversation_id: conversation.into(),
                ..Default::default()
            },
            token,
        ))
        .await
        .unwrap()
        .into_inner()
        .messages
        .len()
}

async fn round_trip(s3: bool) {
    let s = Setup::new(s3, |_| {}).await;
    let app = &s.app;
    let (_, ann) = user(app, "ann").await;
    let (bob_id, bob) = user(app, "bob").await;
    let (_, carol) = user(app, "carol").await;
    let g = group(app, &ann, &[&bob_id]).await;
    let mut bob_events = open(app, &bob, "").await;

    let data = bytes(300_000);
    let name = "Q3 report – ünïcode \"final\".pdf";
    let p = presign(app, &ann, name, "application/pdf", &data).await;
    assert_eq!(p.method, "PUT");
    assert_eq!(p.headers.get("content-type").unwrap(), "application/pdf");
    let file = p.file.clone().unwrap();
    assert_eq!(file.state(), pb::FileState::Pending);
    // The uploader sees a pending upload; nobody else does.
    let mut f = files(app).await;
    f.get_file(authed(
        pb::GetFileRequest {
            id: file.id.clone(),
        },
        &ann,
    ))
    .await
    .unwrap();
    let hidden = f
        .get_file(authed(
            pb::GetFileRequest {
                id: file.id.clone(),
            },
            &bob,
        ))
        .await
        .unwrap_err();
    assert_eq!(hidden.code(), Code::NotFound);
    assert_eq!(put(&p, data.clone()).await, 200);

    let sent = client(app)
        .await
        .send_message(authed(with_files(&g, "see attached", &[&file.id]), &ann))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(sent.attachment_ids, vec![file.id.clone()]);
    assert_eq!(sent.attachments[0].file_name, name);

    // Bob's stream carries the file's metadata.
    let e = next(&mut bob_events).await;
    let Some(Kind::MessageCreated(m)) = e.kind else {
        panic!("expected the message, got {e:?}")
    };
    let a = &m.attachments[0];
    assert_eq!(
        (
            a.id.as_str(),
            a.file_name.as_str(),
            a.content_type.as_str(),
            a.size
        ),
        (file.id.as_str(), name, "application/pdf", data.len() as i64)
    );
    assert_eq!(a.state(), pb::FileState::Attached);

    // In message reads and search results too.
    let listed = client(app)
        .await
        .list_messages(authed(
            pb::ListMessagesRequest {
                conversation_id: g.clone(),
                ..Default::default()
            },
            &bob,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.messages[0].attachments[0].id, file.id);
    let found = client(app)
        .await
        .search_messages(authed(
            pb::SearchMessagesRequest {
                query: "attached".into(),
                ..Default::default()
            },
            &bob,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(found.messages[0].attachments[0].file_name, name);

    // Bob downloads it, byte for byte, as an attachment with its name and type.
    let url = download_url(app, &bob, &file.id).await.unwrap();
    let got = reqwest::get(&url).await.unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(got.headers()["content-type"], "application/pdf");
    let disposition = got.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(disposition.starts_with("attachment;"), "{disposition}");
    assert!(
        disposition.contains(
            "filename*=UTF-8''Q3%20report%20%E2%80%93%20%C3%BCn%C3%AFcode%20%22final%22%2Epdf"
        ),
        "{disposition}"
    );
    assert_eq!(got.bytes().await.unwrap().as_ref(), &data[..]);

    // Carol is no member: the same NOT_FOUND as for an id that does not exist.
    for id in [file.id.clone(), uuid::Uuid::new_v4().to_string()] {
        let e = download_url(app, &carol, &id).await.unwrap_err();
        assert_eq!(e.code(), Code::NotFound, "{id}");
        let e = f
            .get_file(authed(pb::GetFileRequest { id: id.clone() }, &carol))
            .await
            .unwrap_err();
        assert_eq!((e.code(), e.message()), (Code::NotFound, "file not found"));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_file_goes_up_and_down_through_presigned_urls_on_the_local_backend() {
    round_trip(false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_file_goes_up_and_down_through_presigned_urls_on_s3() {
    round_trip(true).await;
}

/// A refusal of a bad URL: 403 from this server; S3 servers say 403 or 400.
fn refused(s3: bool, status: u16) {
    if s3 {
        assert!(status == 403 || status == 400, "{status}");
    } else {
        assert_eq!(status, 403);
    }
}

/// Tampered, expired and wrong-method URLs are refused; an upload larger than signed is
/// refused and stores nothing.
async fn refusals(s3: bool) {
    let s = Setup::new(s3, |c| {
        c.files.files_upload_url_ttl = Duration::from_secs(2)
    })
    .await;
    let app = &s.app;
    let (_, ann) = user(app, "ann").await;
    let data = bytes(1000);

    let p = presign(app, &ann, "a.bin", "application/octet-stream", &data).await;
    // Another size in the URL, or a changed signature.
    let mut tampered = p.clone();
    tampered.upload_url = p.upload_url.replace("size=1000", "size=2000");
    if s3 {
        tampered.upload_url = p.upload_url.replace("X-Amz-Expires=2", "X-Amz-Expires=9");
    }
    assert_ne!(tampered.upload_url, p.upload_url);
    refused(s3, put(&tampered, data.clone()).await);
    let mut resigned = p.clone();
    let at = p.upload_url.len() - 3;
    let flipped = if &p.upload_url[at..at + 1] == "A" {
        "B"
    } else {
        "A"
    };
    resigned.upload_url.replace_range(at..at + 1, flipped);
    refused(s3, put(&resigned, data.clone()).await);
    // The upload URL does not download.
    let wrong = reqwest::get(&p.upload_url).await.unwrap().status().as_u16();
    assert!(
        wrong == 403 || wrong == 405,
        "GET on an upload URL: {wrong}"
    );
    // Larger than signed: refused, nothing stored.
    let mut more = data.clone();
    more.push(0);
    let status = put(&p, more).await;
    assert!((400..500).contains(&status), "an oversize upload: {status}");
    let id = p.file.clone().unwrap().id;
    assert!(!s.object_path(&id).await.exists());
    // Bytes other than the checksum: refused.
    let mut other = data.clone();
    other[0] ^= 1;
    let status = put(&p, other).await;
    assert!((400..500).contains(&status), "a corrupted upload: {status}");
    // (s3s-fs writes the object before it compares checksums and leaves it in place; S3
    // and this server never store it.)
    if !s3 {
        assert!(!s.object_path(&id).await.exists());
    }
    // After the expiry, the URL is refused.
    tokio::time::sleep(Duration::from_millis(3100)).await;
    refused(s3, put(&p, data.clone()).await);
    if !s3 {
        assert!(!s.object_path(&id).await.exists());
    }

    // Over the size limit: refused at presigning, naming the field.
    let e = files(app)
        .await
        .presign_upload(authed(
            pb::PresignUploadRequest {
                file_name: "big.bin".into(),
                size: 25 * 1024 * 1024 + 1,
                ..Default::default()
            },
            &ann,
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert_eq!(violations(&e), vec!["size"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn tampered_expired_wrong_method_and_oversize_uploads_are_refused_locally() {
    refusals(false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn tampered_expired_wrong_method_and_oversize_uploads_are_refused_by_s3() {
    refusals(true).await;
}

/// Attaching anything but one's own complete upload fails and sends nothing.
async fn attach_rules(s3: bool) {
    let s = Setup::new(s3, |_| {}).await;
    let app = &s.app;
    let (_, ann) = user(app, "ann").await;
    let (bob_id, bob) = user(app, "bob").await;
    let g = group(app, &ann, &[&bob_id]).await;
    let data = bytes(5000);
    let bobs = upload(app, &bob, "bob.pdf", &data).await;
    let not_uploaded = presign(app, &ann, "later.pdf", "application/pdf", &data)
        .await
        .file
        .unwrap()
        .id;
    let resized = upload(app, &ann, "resized.pdf", &data).await;
    // The stored object changes size behind the server's back.
    std::fs::write(s.object_path(&resized).await, b"short").unwrap();
    let unknown = uuid::Uuid::new_v4().to_string();
    for (id, why) in [
        (&bobs, "not an upload of yours"),
        (&unknown, "not an upload of yours"),
        (&not_uploaded, "was not uploaded"),
        (&resized, "has 5 bytes, not the 5000 announced"),
    ] {
        let e = client(app)
            .await
            .send_message(authed(with_files(&g, "x", &[id]), &ann))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{why}");
        assert_eq!(violations(&e), vec!["attachment_ids"]);
        assert!(
            e.message().contains(id.as_str()) && e.message().contains(why),
            "{}",
            e.message()
        );
    }
    assert_eq!(message_count(app, &ann, &g).await, 0, "nothing was sent");
    // Bob's own upload attaches once; a second time it is no longer pending.
    client(app)
        .await
        .send_message(authed(with_files(&g, "mine", &[&bobs]), &bob))
        .await
        .unwrap();
    let again = client(app)
        .await
        .send_message(authed(with_files(&g, "again", &[&bobs]), &bob))
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::InvalidArgument);
    assert_eq!(message_count(app, &ann, &g).await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn only_my_complete_uploads_attach_locally() {
    attach_rules(false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn only_my_complete_uploads_attach_on_s3() {
    attach_rules(true).await;
}

async fn delete_message(app: &TestApp, token: &str, conversation: &str, message: &str) {
    let request = pb::DeleteMessageRequest {
        conversation_id: conversation.into(),
        message_id: message.into(),
    };
    client(app)
        .await
        .delete_message(authed(request, token))
        .await
        .unwrap();
}

async fn wait_until_gone(s: &Setup, path: &std::path::Path, id: &str) {
    for _ in 0..100 {
        let rows = db_count(
            &s.app.db_name,
            &format!("SELECT count(*) AS n FROM attachments WHERE id = '{id}'"),
        )
        .await;
        if rows == 0 && !path.exists() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{id} was not deleted");
}

/// An upload never attached is deleted after the configured time; deleting a message
/// deletes its files.
async fn cleanup(s3: bool) {
    let s = Setup::new(s3, |c| c.files.files_pending_ttl = Duration::from_secs(1)).await;
    let app = &s.app;
    let (_, ann) = user(app, "ann").await;
    let (bob_id, _) = user(app, "bob").await;
    let g = group(app, &ann, &[&bob_id]).await;
    let data = bytes(2000);

    let orphan = upload(app, &ann, "orphan.pdf", &data).await;
    let path = s.object_path(&orphan).await;
    assert!(path.exists());
    wait_until_gone(&s, &path, &orphan).await;

    // Attached within the time, a file stays.
    let kept = upload(app, &ann, "kept.pdf", &data).await;
    let m = client(app)
        .await
        .send_message(authed(with_files(&g, "kept", &[&kept]), &ann))
        .await
        .unwrap()
        .into_inner();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let path = s.object_path(&kept).await;
    assert!(path.exists(), "an attached file outlives the pending time");
    delete_message(app, &ann, &g, &m.id).await;
    let e = download_url(app, &ann, &kept).await.unwrap_err();
    assert_eq!(
        e.code(),
        Code::NotFound,
        "a deleted message's file is gone at once"
    );
    wait_until_gone(&s, &path, &kept).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn orphans_and_deleted_messages_lose_their_files_locally() {
    cleanup(false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn orphans_and_deleted_messages_lose_their_files_on_s3() {
    cleanup(true).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_local_upload_over_its_size_is_cut_off_while_streaming() {
    use std::sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    };
    let s = Setup::new(false, |_| {}).await;
    let app = &s.app;
    let (_, ann) = user(app, "ann").await;
    let p = files(app)
        .await
        .presign_upload(authed(
            pb::PresignUploadRequest {
                file_name: "stream.bin".into(),
                size: 1 << 20,
                ..Default::default()
            },
            &ann,
        ))
        .await
        .unwrap()
        .into_inner();
    // A chunked body that would go on for 256 MiB: the server must stop reading it.
    let pulled = Arc::new(AtomicUsize::new(0));
    let counter = pulled.clone();
    let chunks = futures::stream::iter(0..4096).map(move |_| {
        counter.fetch_add(64 * 1024, Ordering::Relaxed);
        Ok::<_, std::io::Error>(vec![7u8; 64 * 1024])
    });
    let sent = reqwest::Client::new()
        .put(&p.upload_url)
        .header("content-type", "application/octet-stream")
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await;
    if let Ok(r) = sent {
        assert_eq!(r.status(), 413);
    }
    let read = pulled.load(Ordering::Relaxed);
    assert!(
        read < 64 << 20,
        "the server kept reading: {read} bytes pulled"
    );
    let id = p.file.unwrap().id;
    let path = s.object_path(&id).await;
    assert!(!path.exists());
    // No half-written staging file is left either.
    let dir = path.parent().unwrap();
    let left = std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0);
    assert_eq!(left, 0, "staging files left in {}", dir.display());
}

/// GET `path` on the REST edge with `token`: the JSON answer.
async fn rest_get(app: &TestApp, token: &str, path: &str) -> serde_json::Value {
    reqwest::Client::new()
        .get(format!("{}{path}", app.url()))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn files_work_over_rest_with_the_seed_routes() {
    let s = Setup::new(false, |_| {}).await;
    let app = &s.app;
    let (_, ann) = user(app, "ann").await;
    let http = reqwest::Client::new();
    let data = bytes(1234);
    let r = rest_get(
        app,
        &ann,
        "/api/files/presign-upload?fileName=notes.txt&contentType=text/plain&size=1234",
    )
    .await;
    let url = r["uploadUrl"].as_str().unwrap();
    let id = r["file"]["id"].as_str().unwrap();
    let put = http
        .put(url)
        .header("content-type", "text/plain")
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200);
    let info = rest_get(app, &ann, &format!("/api/files/{id}")).await;
    assert_eq!(info["fileName"], "notes.txt");
    assert_eq!(info["state"], "FILE_STATE_PENDING");
    let d = rest_get(app, &ann, &format!("/api/files/presign-download?id={id}")).await;
    let got = http
        .get(d["downloadUrl"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(got.headers()["content-type"], "text/plain");
    assert_eq!(got.bytes().await.unwrap().as_ref(), &data[..]);
    // HTML is served inert.
    let j = rest_get(
        app,
        &ann,
        "/api/files/presign-upload?fileName=x.html&contentType=text/html&size=1",
    )
    .await;
    assert_eq!(j["file"]["contentType"], "application/octet-stream");
    let anonymous = http
        .get(format!("{}/api/files/{id}", app.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
}

/// A presigned upload of `size` bytes without a declared checksum.
async fn presign_unchecked(app: &TestApp, token: &str, size: usize) -> pb::PresignUploadResponse {
    files(app)
        .await
        .presign_upload(authed(
            pb::PresignUploadRequest {
                file_name: "invoice.txt".into(),
                content_type: "text/plain".into(),
                size: size as i64,
                checksum_sha256: String::new(),
            },
            token,
        ))
        .await
        .unwrap()
        .into_inner()
}

/// The regular files under `dir`, however deep.
fn files_under(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut found = vec![];
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for e in entries.flatten() {
        let path = e.path();
        if path.is_dir() {
            found.extend(files_under(&path));
        } else {
            found.push(path);
        }
    }
    found
}

/// Issue 34, items 2 and 3: once attached, a file's bytes cannot change. A second PUT to its
/// upload URL changes nothing members download; the message carries the checksum of what was
/// sealed; after the message is deleted and its files cleaned up, a PUT to the URL leaves
/// nothing behind once the URL has expired.
async fn sealed_files(s3: bool) {
    let s = Setup::new(s3, |c| {
        c.files.files_upload_url_ttl = Duration::from_secs(8);
    })
    .await;
    let app = &s.app;
    let (_, ann) = user(app, "ann").await;
    let (bob_id, bob) = user(app, "bob").await;
    let g = group(app, &ann, &[&bob_id]).await;
    let original = b"total=100 EUR".to_vec();
    let swapped = b"total=999 EUR".to_vec();
    let p = presign_unchecked(app, &ann, original.len()).await;
    let id = p.file.clone().unwrap().id;
    assert_eq!(put(&p, original.clone()).await, 200);
    let m = client(app)
        .await
        .send_message(authed(with_files(&g, "invoice", &[&id]), &ann))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(m.attachments[0].checksum_sha256, sha256(&original));
    let dir = db_text(
        &app.db_name,
        &format!("SELECT staging_key AS v FROM attachments WHERE id = '{id}'"),
    )
    .await;
    let dir = dir.trim_end_matches("/upload").to_owned();

    // The uploader writes other bytes of the same size to the same URL: stored or not,
    // members still download what was sent.
    let again = put(&p, swapped.clone()).await;
    assert!([200, 403].contains(&again), "{again}");
    let url = download_url(app, &bob, &id).await.unwrap();
    let got = reqwest::get(&url).await.unwrap().bytes().await.unwrap();
    assert_eq!(&got[..], &original[..], "members download what was sent");
    let info = files(app)
        .await
        .get_file(authed(pb::GetFileRequest { id: id.clone() }, &bob))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(info.checksum_sha256, sha256(&original));

    // Deleted and cleaned up, then written again through the still valid URL.
    let sealed = s.object_path(&id).await;
    assert!(sealed.exists());
    delete_message(app, &ann, &g, &m.id).await;
    wait_until_gone(&s, &sealed, &id).await;
    let late = put(&p, swapped).await;
    assert!([200, 403].contains(&late), "{late}");
    // Once the URL has expired (and a short grace), nothing of the file is left.
    let place = s.path_of(&dir);
    for _ in 0..200 {
        if files_under(&place).is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("left behind: {:?}", files_under(&place));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_attached_file_cannot_change_and_a_late_upload_leaves_nothing_locally() {
    sealed_files(false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_attached_file_cannot_change_and_a_late_upload_leaves_nothing_on_s3() {
    sealed_files(true).await;
}
