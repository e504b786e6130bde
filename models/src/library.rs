//! The models a user added beyond the catalog: files imported from disk (used where they
//! are, never copied) and repositories downloaded from the Hub by id (under
//! `models/hub/<owner>--<name>/`). Kept in `models/library.json`, written atomically.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::catalog::check_repo_id;
use crate::error::{FetchError, io_at};
use crate::paths;

/// Where a library model came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Origin {
    /// A `.gguf` file or Hugging Face folder the user picked on disk.
    Imported,
    /// Downloaded from a Hub repository.
    Hub { repo: String, revision: String },
}

/// One model of the library.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LibraryEntry {
    /// The path to load: a `.gguf` file or a model folder.
    pub path: PathBuf,
    pub origin: Origin,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct LibraryFile {
    models: Vec<LibraryEntry>,
}

/// The library kept in a models folder.
#[derive(Debug, Clone)]
pub struct Library {
    models_dir: PathBuf,
}

impl Library {
    /// The library of [`paths::models_dir`].
    pub fn open() -> Library {
        Library::in_dir(&paths::models_dir())
    }

    /// The library of an explicit models folder.
    pub fn in_dir(models_dir: &Path) -> Library {
        Library {
            models_dir: models_dir.to_path_buf(),
        }
    }

    fn file(&self) -> PathBuf {
        self.models_dir.join("library.json")
    }

    /// The folder a Hub repository downloads into: `models/hub/<owner>--<name>`.
    pub fn hub_dir(&self, repo: &str) -> Result<PathBuf, FetchError> {
        check_repo_id(repo).map_err(FetchError::Invalid)?;
        Ok(self.models_dir.join("hub").join(repo.replace('/', "--")))
    }

    /// The entries, in the order they were added. A missing file is an empty library; an
    /// unreadable one is an error naming it (it is never overwritten silently).
    pub fn entries(&self) -> Result<Vec<LibraryEntry>, FetchError> {
        let path = self.file();
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_at(&path)(e)),
        };
        let file: LibraryFile = serde_json::from_str(&text).map_err(|e| {
            FetchError::Invalid(format!("{} is not a model library: {e}", path.display()))
        })?;
        Ok(file.models)
    }

    /// Adds `entry`, replacing one with the same path.
    pub fn add(&self, entry: LibraryEntry) -> Result<(), FetchError> {
        let mut models = self.entries()?;
        models.retain(|m| m.path != entry.path);
        models.push(entry);
        self.write(models)
    }

    /// Forgets the model at `path`; returns the entry it was. Files are not touched.
    pub fn remove(&self, path: &Path) -> Result<Option<LibraryEntry>, FetchError> {
        let mut models = self.entries()?;
        let Some(at) = models.iter().position(|m| m.path == path) else {
            return Ok(None);
        };
        let removed = models.remove(at);
        self.write(models)?;
        Ok(Some(removed))
    }

    fn write(&self, models: Vec<LibraryEntry>) -> Result<(), FetchError> {
        let dir = &self.models_dir;
        fs::create_dir_all(dir).map_err(io_at(dir))?;
        let text = serde_json::to_string_pretty(&LibraryFile { models })
            .map_err(|e| FetchError::Invalid(e.to_string()))?;
        let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io_at(dir))?;
        tmp.write_all(text.as_bytes())
            .and_then(|()| tmp.as_file().sync_all())
            .map_err(io_at(tmp.path()))?;
        let path = self.file();
        tmp.persist(&path).map_err(|e| io_at(&path)(e.error))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_replaces_and_removes_entries() {
        let dir = tempfile::tempdir().unwrap();
        let lib = Library::in_dir(dir.path());
        assert!(lib.entries().unwrap().is_empty());
        let a = LibraryEntry {
            path: "/m/a.gguf".into(),
            origin: Origin::Imported,
        };
        let b = LibraryEntry {
            path: dir.path().join("hub/o--n"),
            origin: Origin::Hub {
                repo: "o/n".into(),
                revision: "main".into(),
            },
        };
        lib.add(a.clone()).unwrap();
        lib.add(b.clone()).unwrap();
        lib.add(a.clone()).unwrap();
        assert_eq!(lib.entries().unwrap(), vec![b.clone(), a.clone()]);
        // a second handle reads what the first wrote
        assert_eq!(Library::in_dir(dir.path()).entries().unwrap().len(), 2);
        assert_eq!(lib.remove(Path::new("/m/a.gguf")).unwrap(), Some(a));
        assert_eq!(lib.remove(Path::new("/m/a.gguf")).unwrap(), None);
        assert_eq!(lib.entries().unwrap(), vec![b]);
    }

    #[test]
    fn a_damaged_library_file_is_an_error_not_an_empty_library() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("library.json"), "{ not json").unwrap();
        let err = Library::in_dir(dir.path())
            .entries()
            .unwrap_err()
            .to_string();
        assert!(err.contains("library.json"), "{err}");
        // and adding refuses rather than overwriting it
        assert!(
            Library::in_dir(dir.path())
                .add(LibraryEntry {
                    path: "/x.gguf".into(),
                    origin: Origin::Imported
                })
                .is_err()
        );
    }

    #[test]
    fn hub_folders_are_named_after_the_repository_and_checked() {
        let lib = Library::in_dir(Path::new("/models"));
        assert_eq!(
            lib.hub_dir("Qwen/Qwen2.5-0.5B-Instruct").unwrap(),
            Path::new("/models/hub/Qwen--Qwen2.5-0.5B-Instruct")
        );
        assert!(lib.hub_dir("../etc").is_err());
        assert!(lib.hub_dir("a/b/c").is_err());
    }
}
