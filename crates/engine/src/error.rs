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
    /// A document that is not UTF-8 (it may be an older Windows-1252 file: open it as one).
    #[error(
        "{path} is not UTF-8 text (invalid byte at offset {offset}); if it is an older Latin-1 / Windows-1252 file, open it as Windows-1252"
    )]
    NotUtf8 { path: PathBuf, offset: usize },
    /// Text with a character the document's encoding cannot store.
    #[error("“{character}” cannot be saved as {encoding}: save the document as UTF-8")]
    Unencodable {
        encoding: &'static str,
        character: char,
    },
    /// A catalog model (the default one, on first run) that is not downloaded yet.
    #[error(
        "model `{name}` is not installed at {path} (run `penwright fetch {name}` or `make setup`)"
    )]
    NotInstalled { name: String, path: PathBuf },
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
    #[error("no model is loaded")]
    NoModel,
    /// A request the engine refuses as given (a bad value, a prompt it cannot serve).
    #[error("{0}")]
    InvalidRequest(String),
    /// A bug hit while serving one request; the engine itself keeps serving.
    #[error("internal error while serving the request: {0}")]
    Panicked(String),
    #[error("the engine worker stopped")]
    WorkerStopped,
    /// A remote engine (an OpenAI-compatible server) failed.
    #[error("remote engine {server}: {message}")]
    Remote {
        server: String,
        failure: crate::remote::RemoteFailure,
        message: String,
    },
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

/// What kind of failure an [`EngineError`] is: what a front end branches on (the app's
/// messages, the server's HTTP status). Serialized in snake_case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    Cancelled,
    Io,
    ModelNotFound,
    NotInstalled,
    NotUtf8,
    Unencodable,
    NoModel,
    ContextOverflow,
    Device,
    UnsupportedModel,
    BadModelFile,
    ChatTemplate,
    InvalidRequest,
    Network,
    DiskFull,
    Checksum,
    Download,
    /// A bug (a caught panic) or the worker gone.
    Internal,
    /// A remote engine refused the key.
    RemoteUnauthorized,
    /// A remote engine failed otherwise (unknown model, busy, server error, bad answer).
    Remote,
    Engine,
}

impl ErrorKind {
    /// The kind's name, as serialized.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Cancelled => "cancelled",
            ErrorKind::Io => "io",
            ErrorKind::ModelNotFound => "model_not_found",
            ErrorKind::NotInstalled => "not_installed",
            ErrorKind::NotUtf8 => "not_utf8",
            ErrorKind::Unencodable => "unencodable",
            ErrorKind::NoModel => "no_model",
            ErrorKind::ContextOverflow => "context_overflow",
            ErrorKind::Device => "device",
            ErrorKind::UnsupportedModel => "unsupported_model",
            ErrorKind::BadModelFile => "bad_model_file",
            ErrorKind::ChatTemplate => "chat_template",
            ErrorKind::InvalidRequest => "invalid_request",
            ErrorKind::Network => "network",
            ErrorKind::DiskFull => "disk_full",
            ErrorKind::Checksum => "checksum",
            ErrorKind::Download => "download",
            ErrorKind::Internal => "internal",
            ErrorKind::RemoteUnauthorized => "remote_unauthorized",
            ErrorKind::Remote => "remote",
            ErrorKind::Engine => "engine",
        }
    }
}

impl EngineError {
    pub fn kind(&self) -> ErrorKind {
        use penwright_models::FetchError as F;
        match self {
            EngineError::Cancelled => ErrorKind::Cancelled,
            EngineError::Io { .. } => ErrorKind::Io,
            EngineError::ModelNotFound { .. } => ErrorKind::ModelNotFound,
            EngineError::NotInstalled { .. } => ErrorKind::NotInstalled,
            EngineError::NotUtf8 { .. } => ErrorKind::NotUtf8,
            EngineError::Unencodable { .. } => ErrorKind::Unencodable,
            EngineError::NoModel => ErrorKind::NoModel,
            EngineError::ContextOverflow { .. } => ErrorKind::ContextOverflow,
            EngineError::Device(_) => ErrorKind::Device,
            EngineError::UnsupportedArchitecture { .. } | EngineError::PickleRefused { .. } => {
                ErrorKind::UnsupportedModel
            }
            EngineError::BadMagic { .. }
            | EngineError::UnsupportedGgufVersion { .. }
            | EngineError::Truncated { .. }
            | EngineError::Malformed { .. }
            | EngineError::UnsupportedDtype { .. }
            | EngineError::TensorSize { .. }
            | EngineError::MissingTensor { .. }
            | EngineError::TensorShape { .. }
            | EngineError::MissingMetadata { .. }
            | EngineError::Config(_) => ErrorKind::BadModelFile,
            EngineError::ChatTemplate(_) => ErrorKind::ChatTemplate,
            EngineError::InvalidRequest(_) => ErrorKind::InvalidRequest,
            EngineError::Fetch(f) => match f {
                F::Offline { .. } | F::Network { .. } | F::NotFound { .. } | F::Http { .. } => {
                    ErrorKind::Network
                }
                F::DiskFull { .. } => ErrorKind::DiskFull,
                F::ChecksumMismatch { .. } | F::SizeMismatch { .. } => ErrorKind::Checksum,
                _ => ErrorKind::Download,
            },
            EngineError::Panicked(_) | EngineError::WorkerStopped => ErrorKind::Internal,
            EngineError::Remote { failure, .. } => match failure {
                crate::remote::RemoteFailure::Unreachable
                | crate::remote::RemoteFailure::Timeout => ErrorKind::Network,
                crate::remote::RemoteFailure::Unauthorized => ErrorKind::RemoteUnauthorized,
                _ => ErrorKind::Remote,
            },
            EngineError::Tokenizer(_) | EngineError::Other(_) => ErrorKind::Engine,
        }
    }

    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        EngineError::Io {
            path: path.into(),
            source,
        }
    }
}

pub type Result<T, E = EngineError> = std::result::Result<T, E>;
