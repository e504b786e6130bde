//! Writing files so that a crash, a full disk or a planted link never costs the previous
//! version: temp file + fsync + rename. Documents, adapters, job records and exports all
//! save this way.

use std::io::Write;
use std::path::Path;

use crate::{EngineError, Result};

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
}
