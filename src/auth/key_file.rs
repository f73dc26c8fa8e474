//! `<data-dir>/jwt.key`, the signing key earlier versions generated per data directory: when
//! the database has no signing key yet, the file's key (if any) becomes its first, so tokens
//! and stream cursors from before the upgrade stay valid. Whatever the file holds must be a
//! base64 key of at least [`MIN_KEY_BYTES`] bytes, or the server refuses to start.

use super::jwt::MIN_KEY_BYTES;
use anyhow::{Context, bail};
use std::path::Path;

/// The file under the data directory.
pub const KEY_FILE: &str = "jwt.key";

/// The key in `path`, or None when there is no such file.
pub fn read(path: &Path) -> anyhow::Result<Option<Vec<u8>>> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse(path, &text).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

fn parse(path: &Path, text: &str) -> anyhow::Result<Vec<u8>> {
    use base64::{Engine, engine::general_purpose::STANDARD};
    let fix = "delete it (a new key is then created in the database; access tokens signed \
               with the old one stop working) or set EPOP_JWT_SECRET";
    let key = STANDARD
        .decode(text.trim())
        .map_err(|_| anyhow::anyhow!("{} is not a base64 key: {fix}", path.display()))?;
    if key.len() < MIN_KEY_BYTES {
        bail!(
            "{} holds a {}-byte key, at least {MIN_KEY_BYTES} are required: {fix}",
            path.display(),
            key.len()
        );
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_short_or_garbled_key_file_is_refused_with_what_to_do() {
        for (content, says) in [
            ("", "0-byte key"),
            ("\n", "0-byte key"),
            ("c2hvcnQ=\n", "5-byte key"),
            ("not base64 at all!\n", "not a base64 key"),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join(KEY_FILE);
            std::fs::write(&path, content).unwrap();
            let err = read(&path).unwrap_err().to_string();
            assert!(err.contains(says), "{content:?}: {err}");
            assert!(err.contains("EPOP_JWT_SECRET"), "{content:?}: {err}");
        }
    }

    #[test]
    fn no_file_is_no_key_and_a_whole_key_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(KEY_FILE);
        assert!(read(&path).unwrap().is_none());
        std::fs::write(&path, format!("{}\n", "QUFB".repeat(11))).unwrap();
        assert_eq!(read(&path).unwrap().unwrap(), vec![b'A'; 33]);
    }
}
