//! The engine's error type: every failure a user can cause names what failed and where.

use std::path::PathBuf;

/// Errors raised by the engine. Each variant carries enough context (file, tensor, key)
/// for the message to be shown to a writer as it is.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a GGUF file (magic {found:?}, expected \"GGUF\")")]
    BadMagic { path: PathBuf, found: [u8; 4] },
    #[error("{path}: GGUF version {version} is not supported (2 and 3 are)")]
    UnsupportedGgufVersion { path: PathBuf, version: u32 },
    #[error("{path}: file is truncated ({what})")]
    Truncated { path: PathBuf, what: String },
    #[error("{path}: malformed model file: {what}")]
    Malformed { path: PathBuf, what: String },
    #[error("{path}: tensor `{tensor}` has dtype {dtype}, which Penwright cannot read")]
    UnsupportedDtype {
        path: PathBuf,
        tensor: String,
        dtype: String,
    },
    #[error(
        "{path}: tensor `{tensor}` holds {actual} bytes but its shape {shape:?} of {dtype} needs {expected}"
    )]
    TensorSize {
        path: PathBuf,
        tensor: String,
        shape: Vec<usize>,
        dtype: String,
        expected: usize,
        actual: usize,
    },
    #[error("{path}: tensor `{tensor}` is missing")]
    MissingTensor { path: PathBuf, tensor: String },
    #[error("{path}: tensor `{tensor}` has shape {actual:?}, expected {expected:?}")]
    TensorShape {
        path: PathBuf,
        tensor: String,
        expected: Vec<usize>,
        actual: Vec<usize>,
    },
    #[error("{path}: metadata key `{key}` is missing or has the wrong type")]
    MissingMetadata { path: PathBuf, key: String },
    #[error("unsupported architecture `{found}`; Penwright supports: {}", supported.join(", "))]
    UnsupportedArchitecture {
        found: String,
        supported: Vec<&'static str>,
    },
    #[error(
        "{path}: refusing to load a pickle/PyTorch checkpoint; convert it to safetensors or GGUF"
    )]
    PickleRefused { path: PathBuf },
    #[error(
        "no model found at {path}: expected a .gguf file, a folder with config.json + *.safetensors, or a catalog name"
    )]
    ModelNotFound { path: PathBuf },
    #[error("invalid config: {0}")]
    Config(String),
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("chat template: {0}")]
    ChatTemplate(String),
    #[error("the prompt has {tokens} tokens but the model's context holds {context}")]
    ContextOverflow { tokens: usize, context: usize },
    #[error("device: {0}")]
    Device(String),
    #[error("cancelled")]
    Cancelled,
    /// Downloading, verifying or listing model files.
    #[error(transparent)]
    Fetch(penwright_models::FetchError),
    #[error("{0}")]
    Other(String),
}

impl From<penwright_models::FetchError> for EngineError {
    fn from(e: penwright_models::FetchError) -> Self {
        match e {
            penwright_models::FetchError::Cancelled => EngineError::Cancelled,
            other => EngineError::Fetch(other),
        }
    }
}

impl EngineError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        EngineError::Io {
            path: path.into(),
            source,
        }
    }
}

pub type Result<T, E = EngineError> = std::result::Result<T, E>;
