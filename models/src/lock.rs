//! One installer per model at a time, across processes (the app and the CLI may both try).
//!
//! The lock is an advisory lock on `<models dir>/.<name>.lock`; the OS drops it when the
//! process ends, even on `kill -9`, so a stale lock never blocks the next run.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How long the lock may be busy before `on_wait` is told.
const QUIET_WAIT: Duration = Duration::from_secs(1);

use crate::error::{FetchError, io_at};

/// Held while a model folder is being installed; released on drop.
#[derive(Debug)]
pub(crate) struct InstallLock {
    _file: Option<File>,
}

impl InstallLock {
    /// Locks the model folder `dir` (which need not exist yet). When another process holds
    /// the lock for more than a second, calls `on_wait` once and waits, giving up with `Cancelled` when `cancel`
    /// is set.
    pub(crate) fn acquire(
        dir: &Path,
        cancel: Option<&AtomicBool>,
        on_wait: &mut dyn FnMut(&Path),
    ) -> Result<InstallLock, FetchError> {
        let path = lock_path(dir);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io_at(parent))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io_at(&path))?;
        let started = Instant::now();
        let mut told = false;
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(InstallLock { _file: Some(file) }),
                Err(TryLockError::WouldBlock) => {
                    // Brief contention is not worth a message: a child process spawned by
                    // another thread holds a copy of the descriptor until it execs.
                    if !told && started.elapsed() >= QUIET_WAIT {
                        on_wait(dir);
                        told = true;
                    }
                    if cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
                        return Err(FetchError::Cancelled);
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                // A file system without locks: go on unlocked rather than fail.
                Err(TryLockError::Error(_)) => return Ok(InstallLock { _file: None }),
            }
        }
    }
}

/// `<parent>/.<folder name>.lock`.
fn lock_path(dir: &Path) -> PathBuf {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into());
    let parent = dir.parent().unwrap_or(Path::new("."));
    parent.join(format!(".{name}.lock"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_locker_waits_and_can_cancel() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("m");
        let first = InstallLock::acquire(&dir, None, &mut |_| panic!("no wait")).unwrap();
        assert!(tmp.path().join(".m.lock").exists());
        let cancel = AtomicBool::new(false);
        let mut waits = 0;
        let second = InstallLock::acquire(&dir, Some(&cancel), &mut |_| {
            waits += 1;
            cancel.store(true, Ordering::Relaxed);
        });
        assert!(matches!(second, Err(FetchError::Cancelled)));
        assert_eq!(waits, 1);
        drop(first);
        InstallLock::acquire(&dir, None, &mut |_| panic!("no wait")).unwrap();
    }
}
