//! The app's own files beside the writer's: the autosave recovery copy and the
//! recent-files list, under one folder (`$PENWRIGHT_HOME/recovery`).

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use penwright_engine::fs::atomic_write;
use penwright_engine::{EngineError, Result};

/// The unsaved text kept by autosave.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Recovery {
    pub text: String,
    pub path: Option<PathBuf>,
    /// Seconds since the Unix epoch.
    pub saved_at: u64,
}

/// Autosave copies and recent files under one folder.
pub struct RecoveryStore {
    dir: PathBuf,
}

impl RecoveryStore {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        RecoveryStore { dir: dir.into() }
    }

    fn file(&self) -> PathBuf {
        self.dir.join("recovery.json")
    }

    pub fn write(&self, text: &str, path: Option<&Path>) -> Result<()> {
        std::fs::create_dir_all(&self.dir).map_err(|e| EngineError::io(&self.dir, e))?;
        let saved_at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let rec = Recovery {
            text: text.to_string(),
            path: path.map(Path::to_path_buf),
            saved_at,
        };
        atomic_write(
            &self.file(),
            serde_json::to_string(&rec).expect("json").as_bytes(),
        )
    }

    /// The recovery copy, if one was left by a session that did not end cleanly.
    pub fn read(&self) -> Option<Recovery> {
        let text = std::fs::read_to_string(self.file()).ok()?;
        serde_json::from_str(&text).ok()
    }

    pub fn clear(&self) -> Result<()> {
        match std::fs::remove_file(self.file()) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(EngineError::io(self.file(), e)),
        }
    }

    pub fn recent(&self) -> Vec<PathBuf> {
        std::fs::read_to_string(self.dir.join("recent.json"))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default()
    }

    /// Puts `path` first in the recent list (10 entries, existing files only).
    pub fn add_recent(&self, path: &Path) -> Result<()> {
        std::fs::create_dir_all(&self.dir).map_err(|e| EngineError::io(&self.dir, e))?;
        let mut list = self.recent();
        list.retain(|p| p != path && p.exists());
        list.insert(0, path.to_path_buf());
        list.truncate(10);
        atomic_write(
            &self.dir.join("recent.json"),
            serde_json::to_string(&list).expect("json").as_bytes(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovery_round_trips_and_clears() {
        let dir = tempfile::tempdir().unwrap();
        let store = RecoveryStore::new(dir.path());
        assert!(store.read().is_none());
        store
            .write("unsaved words", Some(Path::new("/tmp/a.md")))
            .unwrap();
        let rec = store.read().unwrap();
        assert_eq!(rec.text, "unsaved words");
        store.clear().unwrap();
        assert!(store.read().is_none());
    }
}
