//! The writer's files: atomic saves (temp file + fsync + rename, so a crash mid-save leaves
//! the last good file), UTF-8 checks that name the offending byte, older Windows-1252
//! (Latin-1) files opened and saved back in their encoding when the writer says so, the
//! autosave recovery copy and the recent-files list.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::{EngineError, Result};

/// The encoding a document is read and saved in: UTF-8, or Windows-1252 (the superset of
/// Latin-1 that older Windows and Mac editors wrote), only where the writer chose it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum TextEncoding {
    #[default]
    #[serde(rename = "utf-8")]
    Utf8,
    #[serde(rename = "windows-1252")]
    Windows1252,
}

impl std::str::FromStr for TextEncoding {
    type Err = EngineError;

    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "utf-8" | "utf8" => Ok(TextEncoding::Utf8),
            "windows-1252" | "cp1252" | "latin-1" | "latin1" | "iso-8859-1" => {
                Ok(TextEncoding::Windows1252)
            }
            other => Err(EngineError::Other(format!(
                "unknown encoding {other:?}; use utf-8 or windows-1252 (latin-1)"
            ))),
        }
    }
}

impl TextEncoding {
    pub fn label(self) -> &'static str {
        match self {
            TextEncoding::Utf8 => "UTF-8",
            TextEncoding::Windows1252 => "Windows-1252",
        }
    }
}

/// Reads a document as UTF-8; a file that is not is an error naming the byte offset.
pub fn read_document(path: &Path) -> Result<String> {
    read_document_as(path, TextEncoding::Utf8)
}

/// Reads a document in `encoding`. Every byte sequence is Windows-1252 text, and saving it
/// back with [`encode_document`] gives the same bytes.
pub fn read_document_as(path: &Path, encoding: TextEncoding) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| EngineError::io(path, e))?;
    match encoding {
        TextEncoding::Utf8 => String::from_utf8(bytes).map_err(|e| EngineError::NotUtf8 {
            path: path.to_path_buf(),
            offset: e.utf8_error().valid_up_to(),
        }),
        TextEncoding::Windows1252 => {
            let (text, _) = encoding_rs::WINDOWS_1252.decode_without_bom_handling(&bytes);
            Ok(text.into_owned())
        }
    }
}

/// The bytes of `text` in `encoding`; a character Windows-1252 has no byte for is an error
/// naming it (save as UTF-8 instead), never a silent `?`.
pub fn encode_document(text: &str, encoding: TextEncoding) -> Result<Vec<u8>> {
    match encoding {
        TextEncoding::Utf8 => Ok(text.as_bytes().to_vec()),
        TextEncoding::Windows1252 => {
            let (bytes, _, unmappable) = encoding_rs::WINDOWS_1252.encode(text);
            if unmappable {
                let ch = text
                    .chars()
                    .find(|c| {
                        let mut buf = [0u8; 4];
                        encoding_rs::WINDOWS_1252.encode(c.encode_utf8(&mut buf)).2
                    })
                    .unwrap_or('?');
                return Err(EngineError::Unencodable {
                    encoding: encoding.label(),
                    character: ch,
                });
            }
            Ok(bytes.into_owned())
        }
    }
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
    fn windows_1252_files_open_when_asked_and_save_back_byte_for_byte() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("old.txt");
        // every byte value, the undefined 0x81/0x8D/0x8F/0x90/0x9D included
        let all: Vec<u8> = (0..=255).collect();
        std::fs::write(&p, &all).unwrap();
        let text = read_document_as(&p, TextEncoding::Windows1252).unwrap();
        assert!(text.contains("€") && text.contains("é") && text.contains("ÿ"));
        assert_eq!(
            encode_document(&text, TextEncoding::Windows1252).unwrap(),
            all
        );
        // a character the encoding has no byte for is named, not replaced
        let err = encode_document("café ✓", TextEncoding::Windows1252).unwrap_err();
        assert_eq!(err.kind().as_str(), "unencodable");
        assert!(err.to_string().contains('✓'), "{err}");
        assert_eq!(
            encode_document("café ✓", TextEncoding::Utf8).unwrap(),
            "café ✓".as_bytes()
        );
    }

    #[test]
    fn non_utf8_documents_are_refused_with_the_offset() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("latin1.txt");
        std::fs::write(&p, b"caf\xe9").unwrap();
        let err = read_document(&p).unwrap_err();
        assert_eq!(err.kind().as_str(), "not_utf8");
        let err = err.to_string();
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
