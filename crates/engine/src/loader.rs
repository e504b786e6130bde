//! Finding and loading a model: a `.gguf` file, a Hugging Face folder (config.json +
//! safetensors, tokenizer.json optional), or a catalog name; the default is the catalog's
//! default model.

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::chat::ChatTemplate;
use crate::config::ModelConfig;
use crate::device::SelectedDevice;
use crate::gguf::GgufFile;
use crate::model::{LanguageModel, check_parameters_fit};
use crate::tokenizer::{GgufTokenizerSpec, Tokenizer};
use crate::weights::{GgufWeights, SafetensorsWeights, WeightSource, refuse_pickle};
use crate::{EngineError, Result};
use penwright_kernels::GgmlType;

/// What a loaded model is, for status bars and `--json` outputs.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelInfo {
    pub name: String,
    pub path: PathBuf,
    pub architecture: String,
    pub format: String,
    pub quantization: String,
    pub parameters: usize,
    pub context_length: usize,
    pub file_bytes: u64,
    /// What loading it takes in memory, estimated: see [`estimated_memory_bytes`].
    pub memory_bytes: u64,
    /// Why the model's own chat template is not used, when it is not (it failed to compile
    /// or to render a small conversation within its limits): ChatML stands in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template_note: Option<String>,
    /// Its vocabulary has fill-in-the-middle tokens: suggestions can see the text after the
    /// cursor (known once its tokenizer is loaded).
    pub fill_in_the_middle: bool,
}

impl ModelInfo {
    /// A short identifier for the model, as an API names it: the file's name without
    /// `.gguf`, or the model folder's name.
    pub fn id(&self) -> String {
        let name = if self.path.is_dir() {
            self.path.file_name()
        } else {
            self.path.file_stem()
        };
        name.map(|n| n.to_string_lossy().into_owned())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| self.name.clone())
    }
}

/// The context a memory estimate assumes for the KV cache.
pub const ESTIMATE_CONTEXT: usize = 2048;

/// Memory the engine needs to run a model: its weights as the file stores them (they stay
/// in their block format, memory-mapped on the CPU), an f32 KV cache of
/// [`ESTIMATE_CONTEXT`] tokens, and ~[`RUNTIME_BYTES`] of runtime and activations.
pub fn estimated_memory_bytes(config: &ModelConfig, weight_bytes: u64) -> u64 {
    let context = ESTIMATE_CONTEXT.min(config.max_position_embeddings.max(1)) as u64;
    let kv =
        2 * config.num_layers as u64 * context * (config.num_kv_heads * config.head_dim) as u64 * 4;
    weight_bytes + kv + RUNTIME_BYTES
}

/// The runtime, tokenizer, activations and logits beside weights and KV cache.
pub const RUNTIME_BYTES: u64 = 96 << 20;

/// What the model at `path` is (architecture, quantization, size, memory estimate) from
/// its header or config, without reading its weights; fails with the same specific error
/// loading would (unknown architecture, truncated file, no weights).
pub fn inspect_model(path: &Path) -> Result<ModelInfo> {
    Ok(inspect(path, false)?.0)
}

/// [`inspect_model`], and the model's tokenizer and chat template checked as a load would
/// check them (an import): a template that fails or runs past its limits is named in
/// `template_note` now, not at the first summary, and ChatML stands in for it.
pub fn inspect_model_for_import(path: &Path) -> Result<ModelInfo> {
    let (mut info, tokenizer) = inspect(path, true)?;
    info.template_note = tokenizer.as_ref().and_then(|t| read_chat_template(t).1);
    Ok(info)
}

/// The model's header or config read once; its tokenizer too when `with_tokenizer` (a
/// folder without tokenizer.json has none).
fn inspect(path: &Path, with_tokenizer: bool) -> Result<(ModelInfo, Option<Tokenizer>)> {
    refuse_pickle(path)?;
    if path.is_dir() {
        let config_path = path.join("config.json");
        if !config_path.exists() {
            return Err(EngineError::ModelNotFound {
                path: path.to_path_buf(),
            });
        }
        let config = ModelConfig::from_hf_json(&config_path)?;
        // reads the safetensors headers: no weights (or only pickles) is an error here
        let weights = WeightSource::Safetensors(SafetensorsWeights::open_dir(path)?);
        check_parameters_fit(&config, &weights)?;
        let tokenizer = (with_tokenizer && path.join("tokenizer.json").exists())
            .then(|| Tokenizer::from_hf_dir(path))
            .transpose()?;
        Ok((hf_info(path, &config), tokenizer))
    } else if path.is_file() {
        let file = GgufFile::open(path)?;
        let config = ModelConfig::from_gguf(&file)?;
        let info = gguf_info(path, &file, &config);
        let tokenizer = with_tokenizer
            .then(|| Tokenizer::from_gguf_spec(&GgufTokenizerSpec::from_gguf(&file)?))
            .transpose()?;
        let weights = WeightSource::Gguf(GgufWeights::new(
            file,
            config.architecture,
            config.num_heads,
            config.num_kv_heads,
        ));
        check_parameters_fit(&config, &weights)?;
        Ok((info, tokenizer))
    } else {
        Err(EngineError::ModelNotFound {
            path: path.to_path_buf(),
        })
    }
}

/// Loading progress: `stage` in reading → layers → ready.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LoadProgress {
    pub stage: &'static str,
    pub done: usize,
    pub total: usize,
}

pub struct LoadedModel {
    pub model: LanguageModel,
    /// What it was loaded with (a reload, with another adapter, uses the same).
    pub options: LoadOptions,
    pub tokenizer: Option<Tokenizer>,
    pub chat_template: Option<ChatTemplate>,
    pub info: ModelInfo,
    pub device: SelectedDevice,
    pub load_seconds: f64,
}

impl LoadedModel {
    /// The tokenizer, or an error saying the model folder has none.
    pub fn tokenizer(&self) -> Result<&Tokenizer> {
        self.tokenizer.as_ref().ok_or_else(|| {
            EngineError::Tokenizer(format!(
                "{} has no tokenizer (tokenizer.json)",
                self.info.path.display()
            ))
        })
    }
}

/// Turns a `--model` value into a path: an existing file or folder, else a catalog name;
/// `None` is the catalog's default model.
pub fn resolve_model(spec: Option<&str>) -> Result<PathBuf> {
    let catalog = penwright_models::Catalog::embedded();
    let entry = match spec {
        None => catalog.default_entry(),
        Some(s) if Path::new(s).exists() => return Ok(PathBuf::from(s)),
        Some(s) => catalog.find(s).ok_or_else(|| EngineError::ModelNotFound {
            path: PathBuf::from(s),
        })?,
    };
    let path = entry.primary_path();
    if !path.exists() {
        return Err(EngineError::NotInstalled {
            name: entry.name.clone(),
            path,
        });
    }
    Ok(path)
}

/// The tokenizer of a model, without its weights.
pub fn load_tokenizer(path: &Path) -> Result<Tokenizer> {
    if path.is_dir() {
        Tokenizer::from_hf_dir(path)
    } else {
        let file = GgufFile::open(path)?;
        Tokenizer::from_gguf_spec(&GgufTokenizerSpec::from_gguf(&file)?)
    }
}

/// How a model is loaded beyond its file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadOptions {
    /// Quantize unquantized (f32/f16/bf16) matrices to this type as they load (one of
    /// [`penwright_kernels::quantize::TARGETS`]).
    pub quantize: Option<GgmlType>,
}

impl LoadOptions {
    /// `q8_0`, `q4_0` or `q4_k` (any case) as a [`LoadOptions::quantize`] target.
    pub fn parse_quantize(s: &str) -> Result<GgmlType> {
        penwright_kernels::quantize::TARGETS
            .into_iter()
            .find(|t| t.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                EngineError::Config(format!("cannot quantize to `{s}` (q8_0, q4_0 or q4_k)"))
            })
    }
}

/// Loads the model at `path` onto `device`.
pub fn load_model(
    path: &Path,
    device: SelectedDevice,
    progress: &mut dyn FnMut(LoadProgress),
) -> Result<LoadedModel> {
    load_model_with(path, device, LoadOptions::default(), progress)
}

/// Loads the model at `path` onto `device` with `options`.
pub fn load_model_with(
    path: &Path,
    device: SelectedDevice,
    options: LoadOptions,
    progress: &mut dyn FnMut(LoadProgress),
) -> Result<LoadedModel> {
    let started = Instant::now();
    progress(LoadProgress {
        stage: "reading",
        done: 0,
        total: 1,
    });
    refuse_pickle(path)?;
    let mut on_layer = |done, total| {
        progress(LoadProgress {
            stage: "layers",
            done,
            total,
        })
    };
    let (model, tokenizer, (chat_template, template_note), mut info) = if path.is_dir() {
        load_hf_dir(path, &device, options, &mut on_layer)?
    } else if path.is_file() {
        load_gguf(path, &device, options, &mut on_layer)?
    } else {
        return Err(EngineError::ModelNotFound {
            path: path.to_path_buf(),
        });
    };
    info.template_note = template_note;
    info.fill_in_the_middle = tokenizer.as_ref().is_some_and(|t| t.fim_tokens().is_some());
    if let Some(ty) = options.quantize {
        info.quantization = format!("{} → {ty} at load", info.quantization);
        let bytes =
            model.config.parameter_count() as u64 * ty.type_size() as u64 / ty.block_size() as u64;
        info.memory_bytes = estimated_memory_bytes(&model.config, bytes);
    }
    Ok(LoadedModel {
        model,
        options,
        tokenizer,
        chat_template,
        info,
        device,
        load_seconds: started.elapsed().as_secs_f64(),
    })
}

/// The catalog's display name for an installed catalog model.
fn catalog_name(path: &Path) -> Option<String> {
    penwright_models::Catalog::embedded()
        .entries()
        .iter()
        .find(|e| e.primary_path() == path)
        .map(|e| e.display_name.clone())
}

type Loaded = (
    LanguageModel,
    Option<Tokenizer>,
    // the chat template, or why the model's own is not used
    (Option<ChatTemplate>, Option<String>),
    ModelInfo,
);

fn display_name(path: &Path) -> String {
    path.file_stem()
        .or_else(|| path.file_name())
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

fn load_gguf(
    path: &Path,
    device: &SelectedDevice,
    options: LoadOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Loaded> {
    let file = GgufFile::open(path)?;
    let config = ModelConfig::from_gguf(&file)?;
    let spec = GgufTokenizerSpec::from_gguf(&file)?;
    let tokenizer = Tokenizer::from_gguf_spec(&spec)?;
    let chat_template = read_chat_template(&tokenizer);
    let info = gguf_info(path, &file, &config);
    let weights = with_options(
        WeightSource::Gguf(GgufWeights::new(
            file,
            config.architecture,
            config.num_heads,
            config.num_kv_heads,
        )),
        options,
    );
    let model = LanguageModel::load(config, &weights, &device.device, progress)?;
    Ok((model, Some(tokenizer), chat_template, info))
}

fn gguf_info(path: &Path, file: &GgufFile, config: &ModelConfig) -> ModelInfo {
    // the file's name, which the user chose, rather than `general.name`, which converters
    // often fill with training-run labels
    let name = catalog_name(path).unwrap_or_else(|| display_name(path));
    let file_bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    ModelInfo {
        name,
        path: path.to_path_buf(),
        architecture: config.architecture.name().to_string(),
        format: "gguf".into(),
        quantization: dominant_dtype(file),
        parameters: config.parameter_count(),
        context_length: config.max_position_embeddings,
        file_bytes,
        memory_bytes: estimated_memory_bytes(config, file_bytes),
        template_note: None,
        fill_in_the_middle: false,
    }
}

/// The chat template the tokenizer ships (read once, with the tokenizer), compiled and
/// tried on a small conversation; a template that fails either (or runs past its step or
/// output limits) is not used, and the note says why (the tasks then use ChatML).
fn read_chat_template(tokenizer: &Tokenizer) -> (Option<ChatTemplate>, Option<String>) {
    let Some(source) = tokenizer.chat_template() else {
        return (None, None);
    };
    let piece = |id: Option<u32>| {
        id.and_then(|i| tokenizer.id_to_piece(i))
            .unwrap_or_default()
    };
    let template = ChatTemplate::new(
        source,
        &piece(tokenizer.bos_id()),
        &piece(tokenizer.eos_id()),
    )
    .and_then(|t| crate::isolated::check_template(&t).map(|()| t));
    match template {
        Ok(t) => (Some(t), None),
        Err(e) => {
            let note = format!("the model's chat template is not used ({e}); ChatML stands in");
            eprintln!("penwright: {note}");
            (None, Some(note))
        }
    }
}

/// The most common dtype among the 2-D tensors, e.g. "Q4_1".
fn dominant_dtype(file: &GgufFile) -> String {
    let mut counts: std::collections::BTreeMap<&str, usize> = Default::default();
    for t in &file.header.tensors {
        if t.dims.len() == 2 {
            *counts.entry(t.dtype.name()).or_default() += 1;
        }
    }
    counts
        .into_iter()
        .max_by_key(|(_, n)| *n)
        .map(|(d, _)| d.to_string())
        .unwrap_or_else(|| "unknown".into())
}

fn with_options(weights: WeightSource, options: LoadOptions) -> WeightSource {
    match options.quantize {
        Some(ty) => weights.quantize_at_load(ty),
        None => weights,
    }
}

fn load_hf_dir(
    dir: &Path,
    device: &SelectedDevice,
    options: LoadOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Loaded> {
    let config_path = dir.join("config.json");
    if !config_path.exists() {
        return Err(EngineError::ModelNotFound {
            path: dir.to_path_buf(),
        });
    }
    let config = ModelConfig::from_hf_json(&config_path)?;
    let weights = with_options(
        WeightSource::Safetensors(SafetensorsWeights::open_dir(dir)?),
        options,
    );
    let tokenizer = if dir.join("tokenizer.json").exists() {
        Some(Tokenizer::from_hf_dir(dir)?)
    } else {
        None
    };
    let chat_template = tokenizer.as_ref().map_or((None, None), read_chat_template);
    let info = hf_info(dir, &config);
    let model = LanguageModel::load(config, &weights, &device.device, progress)?;
    Ok((model, tokenizer, chat_template, info))
}

fn hf_info(dir: &Path, config: &ModelConfig) -> ModelInfo {
    let file_bytes = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .filter(|e| e.path().extension().is_some_and(|x| x == "safetensors"))
                .filter_map(|e| e.metadata().ok().map(|m| m.len()))
                .sum()
        })
        .unwrap_or(0);
    let dtype = std::fs::read_to_string(dir.join("config.json"))
        .ok()
        .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
        .and_then(|v| v.get("torch_dtype")?.as_str().map(str::to_string))
        .unwrap_or_else(|| "float32".into());
    ModelInfo {
        name: catalog_name(dir).unwrap_or_else(|| display_name(dir)),
        path: dir.to_path_buf(),
        architecture: config.architecture.name().to_string(),
        format: "safetensors".into(),
        quantization: dtype,
        parameters: config.parameter_count(),
        context_length: config.max_position_embeddings,
        file_bytes,
        memory_bytes: estimated_memory_bytes(config, file_bytes),
        template_note: None,
        fill_in_the_middle: false,
    }
}
