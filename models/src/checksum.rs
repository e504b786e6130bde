//! sha256 of files, streamed.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use sha2::{Digest, Sha256};

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
