//! Errors as the webview receives them: a kind to branch on and a message to show.

use serde::Serialize;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CommandError {
    pub kind: &'static str,
    pub message: String,
}

impl CommandError {
    pub fn new(kind: &'static str, message: impl Into<String>) -> Self {
        CommandError {
            kind,
            message: message.into(),
        }
    }
}

impl From<penwright_engine::EngineError> for CommandError {
    fn from(e: penwright_engine::EngineError) -> Self {
        use penwright_engine::EngineError as E;
        let kind = match &e {
            E::Cancelled => "cancelled",
            E::Io { .. } => "io",
            E::ModelNotFound { .. } => "model_not_found",
            E::ContextOverflow { .. } => "context_overflow",
            E::Device(_) => "device",
            E::UnsupportedArchitecture { .. } | E::PickleRefused { .. } => "unsupported_model",
            E::BadMagic { .. }
            | E::UnsupportedGgufVersion { .. }
            | E::Truncated { .. }
            | E::Malformed { .. }
            | E::UnsupportedDtype { .. }
            | E::TensorSize { .. }
            | E::MissingTensor { .. }
            | E::TensorShape { .. }
            | E::MissingMetadata { .. } => "bad_model_file",
            E::Fetch(f) => match f {
                penwright_models::FetchError::Offline { .. }
                | penwright_models::FetchError::Network { .. }
                | penwright_models::FetchError::NotFound { .. }
                | penwright_models::FetchError::Http { .. } => "network",
                penwright_models::FetchError::DiskFull { .. } => "disk_full",
                penwright_models::FetchError::ChecksumMismatch { .. }
                | penwright_models::FetchError::SizeMismatch { .. } => "checksum",
                _ => "download",
            },
            _ => "engine",
        };
        CommandError::new(kind, e.to_string())
    }
}

pub type CommandResult<T> = Result<T, CommandError>;
