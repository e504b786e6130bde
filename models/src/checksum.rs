//! sha256 of files, streamed; a file checked against what the catalog knows of it; folder
//! syncs after a rename. Installing (`fetch`) and downloading (`hub`) both build on this.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::catalog::ModelFile;
use crate::error::{FetchError, io_at, io_error};

/// Bytes read at a time while hashing or copying.
pub(crate) const CHUNK: usize = 1 << 20;

/// The lowercase hex sha256 of the file at `path`, and its length.
pub fn sha256_file(path: &Path) -> io::Result<(String, u64)> {
    let mut hasher = Sha256::new();
    let len = hash_into(&mut File::open(path)?, &mut hasher)?;
    Ok((hex::encode(hasher.finalize()), len))
}

/// Feeds everything `reader` yields into `hasher`; returns the byte count.
pub(crate) fn hash_into(reader: &mut dyn Read, hasher: &mut Sha256) -> io::Result<u64> {
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        total += n as u64;
    }
}

/// The lowercase hex sha256 of `bytes`.
pub fn sha256_bytes(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The state of an installed model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerifyStatus {
    /// A file of the model is not there.
    Missing,
    /// Every file is there, with the size and sha256 the catalog gives (where it gives them).
    Ok,
    /// `path` does not match the catalog (sha256, or size written as `N bytes`).
    Corrupt {
        path: PathBuf,
        expected: String,
        actual: String,
    },
}

/// Checks one file against what the catalog knows of it (size, then sha256).
pub(crate) fn verify_file(path: &Path, file: &ModelFile) -> Result<VerifyStatus, FetchError> {
    let len = match fs::metadata(path) {
        Ok(m) if m.is_file() => m.len(),
        Ok(_) => return Ok(VerifyStatus::Missing),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(VerifyStatus::Missing),
        Err(e) => return Err(io_error(path, e)),
    };
    match &file.sha256 {
        Some(expected) => {
            let (actual, _) = sha256_file(path).map_err(io_at(path))?;
            if &actual != expected {
                return Ok(VerifyStatus::Corrupt {
                    path: path.to_path_buf(),
                    expected: expected.clone(),
                    actual,
                });
            }
        }
        None => {
            if let Some(size) = file.size.filter(|&s| s != len) {
                return Ok(VerifyStatus::Corrupt {
                    path: path.to_path_buf(),
                    expected: format!("{size} bytes"),
                    actual: format!("{len} bytes"),
                });
            }
        }
    }
    Ok(VerifyStatus::Ok)
}

/// fsyncs a folder so a rename inside it survives a crash (best effort; Unix only).
pub(crate) fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    #[cfg(not(unix))]
    let _ = dir;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_digests() {
        assert_eq!(
            sha256_bytes(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("abc");
        std::fs::write(&path, b"abc").unwrap();
        assert_eq!(
            sha256_file(&path).unwrap(),
            (
                "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad".to_string(),
                3
            )
        );
    }
}
