//! The paths the webview may name, as Tauri's fs scope does for its own commands: those the
//! writer chose in a dialog the app opened (the `pick_*` commands), those the app itself
//! listed (recent files, the recovery copy, models, adapters), and what lies in Penwright's
//! own data folder. A command given any other path refuses it, so a compromised page cannot
//! read or overwrite files the writer never pointed at.

use std::collections::HashSet;
use std::path::{Component, Path, PathBuf};
use std::sync::Mutex;

use crate::error::{CommandError, CommandResult};

pub struct PathRegistry {
    allowed: Mutex<HashSet<PathBuf>>,
    /// Penwright's own folder (`PENWRIGHT_HOME`): models, adapters, recovery.
    home: PathBuf,
}

impl PathRegistry {
    pub fn new(home: PathBuf) -> Self {
        PathRegistry {
            allowed: Mutex::new(HashSet::new()),
            home,
        }
    }

    /// The writer chose `path`, or the app listed it.
    pub fn allow(&self, path: &Path) {
        if let Some(p) = plain(path) {
            self.allowed.lock().expect("paths lock").insert(p);
        }
    }

    pub fn allow_all<'a>(&self, paths: impl IntoIterator<Item = &'a Path>) {
        for p in paths {
            self.allow(p);
        }
    }

    /// `path` if the webview may use it; a `path_not_allowed` error otherwise.
    pub fn check(&self, path: &Path) -> CommandResult<PathBuf> {
        let refused = || {
            CommandError::new(
                "path_not_allowed",
                format!(
                    "{}: Penwright only opens files you chose in its dialogs or that it listed itself",
                    path.display()
                ),
            )
        };
        let p = plain(path).ok_or_else(refused)?;
        if p.starts_with(&self.home) || self.allowed.lock().expect("paths lock").contains(&p) {
            Ok(p)
        } else {
            Err(refused())
        }
    }
}

/// An absolute path without `.` or `..` in it (nothing can climb out of where it points).
fn plain(path: &Path) -> Option<PathBuf> {
    let clean = path.is_absolute()
        && path.components().all(|c| {
            matches!(
                c,
                Component::RootDir | Component::Normal(_) | Component::Prefix(_)
            )
        });
    clean.then(|| path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_chosen_listed_or_own_paths_pass() {
        let paths = PathRegistry::new(PathBuf::from("/home/w/.local/share/penwright"));
        // Penwright's own folder
        assert!(
            paths
                .check(Path::new("/home/w/.local/share/penwright/models/m.gguf"))
                .is_ok()
        );
        // anything else until chosen
        let essay = Path::new("/home/w/Documents/essay.md");
        let err = paths.check(essay).unwrap_err();
        assert_eq!(err.kind, "path_not_allowed");
        paths.allow(essay);
        assert_eq!(paths.check(essay).unwrap(), essay);
        // no climbing out, no relative paths, and a chosen file is not its folder
        assert!(
            paths
                .check(Path::new(
                    "/home/w/.local/share/penwright/../../../../etc/passwd"
                ))
                .is_err()
        );
        assert!(paths.check(Path::new("Documents/essay.md")).is_err());
        assert!(
            paths
                .check(Path::new("/home/w/Documents/other.md"))
                .is_err()
        );
        paths.allow(Path::new("/home/w/../w/x.md"));
        assert!(paths.check(Path::new("/home/w/x.md")).is_err());
    }
}
