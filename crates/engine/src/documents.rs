//! The writer's files: atomic saves (temp file + fsync + rename, so a crash mid-save leaves
//! the last good file), UTF-8 checks that name the offending byte, the autosave recovery copy
//! and the recent-files list.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::{EngineError, Result};

/// Reads a document; a file that is not UTF-8 is an error naming the byte offset.
pub fn read_document(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| EngineError::io(path, e))?;
    String::from_utf8(bytes).map_err(|e| {
        EngineError::Other(format!(
            "{} is not UTF-8 text (invalid byte at offset {}); Penwright opens UTF-8 .md and .txt files",
            path.display(),
            e.utf8_error().valid_up_to()
        ))
    })
}

/// Writes `contents` to `path` atomically: a new temp file in the same folder, fsync, rename.
/// On any error (a full disk included) the previous file is untouched and no temp file stays.
pub fn atomic_write(path: &Path, contents: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| EngineError::Other(format!("{} is not a file path", path.display())))?;
    // a new file with a random name, created exclusively (O_EXCL): nothing already there,
    // a link planted under a guessable name included, is opened or overwritten
    let result = (|| -> std::io::Result<()> {
        let mut tmp = tempfile::Builder::new()
            .prefix(&format!(".{}.", name.to_string_lossy()))
            .suffix(".penwright-tmp")
            .tempfile_in(dir)?;
        tmp.write_all(contents)?;
        tmp.as_file().sync_all()?;
        if let Ok(meta) = std::fs::metadata(path) {
            let _ = tmp.as_file().set_permissions(meta.permissions());
        }
        // on failure the temp file is removed when `tmp` drops
        tmp.persist(path).map_err(|e| e.error)?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if let Err(e) = result {
        let message = if e.raw_os_error() == Some(28) {
            format!(
                "cannot save {}: the disk is full (the previous version is kept)",
                path.display()
            )
        } else {
            format!(
                "cannot save {}: {e} (the previous version is kept)",
                path.display()
            )
        };
        return Err(EngineError::Other(message));
    }
    Ok(())
}

/// The unsaved text kept by autosave.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Recovery {
    pub text: String,
    pub path: Option<PathBuf>,
    /// Seconds since the Unix epoch.
    pub saved_at: u64,
}

/// Autosave copies and recent files under one folder (`$PENWRIGHT_HOME/recovery`).
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
    fn atomic_write_replaces_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("draft.md");
        atomic_write(&p, b"first").unwrap();
        atomic_write(&p, b"second").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "second");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }

    #[test]
    #[cfg(unix)]
    fn a_link_planted_where_the_temp_file_might_go_is_not_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim.txt");
        std::fs::write(&victim, "untouched").unwrap();
        // the names an older Penwright would have used
        for name in [
            format!(".draft.md.penwright-tmp-{}", std::process::id()),
            ".draft.md.penwright-tmp".to_string(),
        ] {
            std::os::unix::fs::symlink(&victim, dir.path().join(name)).unwrap();
        }
        let p = dir.path().join("draft.md");
        atomic_write(&p, b"the writer's text").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "the writer's text");
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "untouched");
        // no temp file is left: the draft, the victim and the two planted links
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 4);
    }

    #[test]
    fn failed_write_keeps_the_previous_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("draft.md");
        atomic_write(&p, b"good").unwrap();
        // a path whose folder does not exist fails before touching anything
        let err = atomic_write(&dir.path().join("missing/draft.md"), b"x").unwrap_err();
        assert!(
            err.to_string().contains("previous version is kept"),
            "{err}"
        );
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "good");
    }

    #[test]
    fn non_utf8_documents_are_refused_with_the_offset() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("latin1.txt");
        std::fs::write(&p, b"caf\xe9").unwrap();
        let err = read_document(&p).unwrap_err().to_string();
        assert!(
            err.contains("not UTF-8") && err.contains("offset 3"),
            "{err}"
        );
    }

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
