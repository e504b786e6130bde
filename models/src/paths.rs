//! Where Penwright keeps its files: models, LoRA adapters and the autosave recovery copy.
//!
//! The home is `$PENWRIGHT_HOME` when set, else `$XDG_DATA_HOME/penwright`, else
//! `$HOME/.local/share/penwright`.

use std::ffi::OsString;
use std::path::PathBuf;

/// Penwright's data folder (see the module docs for how it is chosen).
pub fn penwright_home() -> PathBuf {
    home_from(
        std::env::var_os("PENWRIGHT_HOME"),
        std::env::var_os("XDG_DATA_HOME"),
        std::env::var_os("HOME").or_else(|| std::env::var_os("USERPROFILE")),
    )
}

/// The installed models: one folder per catalog entry, `models/<name>/`.
pub fn models_dir() -> PathBuf {
    penwright_home().join("models")
}

/// The LoRA adapters trained in the fine-tune pane.
pub fn adapters_dir() -> PathBuf {
    penwright_home().join("adapters")
}

/// The editor's autosave recovery copies.
/// Where `penwright bench --synthetic` keeps the random-weight models it writes.
pub fn bench_dir() -> PathBuf {
    penwright_home().join("bench")
}

pub fn recovery_dir() -> PathBuf {
    penwright_home().join("recovery")
}

/// The rule of [`penwright_home`], on explicit values (empty counts as unset; a relative
/// `XDG_DATA_HOME` is ignored, as the XDG spec asks).
fn home_from(
    penwright_home: Option<OsString>,
    xdg_data_home: Option<OsString>,
    home: Option<OsString>,
) -> PathBuf {
    if let Some(dir) = penwright_home.filter(|v| !v.is_empty()) {
        return PathBuf::from(dir);
    }
    if let Some(dir) = xdg_data_home.map(PathBuf::from).filter(|p| p.is_absolute()) {
        return dir.join("penwright");
    }
    match home.filter(|v| !v.is_empty()) {
        Some(home) => PathBuf::from(home).join(".local/share/penwright"),
        // No home at all (a stripped-down service environment): the working directory.
        None => PathBuf::from(".penwright"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(s: &str) -> Option<OsString> {
        Some(OsString::from(s))
    }

    #[test]
    fn penwright_home_wins() {
        assert_eq!(
            home_from(os("/data/pw"), os("/xdg"), os("/home/u")),
            PathBuf::from("/data/pw")
        );
    }

    #[test]
    fn xdg_data_home_next() {
        assert_eq!(
            home_from(None, os("/xdg"), os("/home/u")),
            PathBuf::from("/xdg/penwright")
        );
        assert_eq!(
            home_from(os(""), os("/xdg"), os("/home/u")),
            PathBuf::from("/xdg/penwright")
        );
    }

    #[test]
    fn home_last() {
        assert_eq!(
            home_from(None, None, os("/home/u")),
            PathBuf::from("/home/u/.local/share/penwright")
        );
        // A relative XDG_DATA_HOME is invalid and ignored.
        assert_eq!(
            home_from(None, os("relative"), os("/home/u")),
            PathBuf::from("/home/u/.local/share/penwright")
        );
    }
}
