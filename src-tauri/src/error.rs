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
        CommandError::new(e.kind().as_str(), e.to_string())
    }
}

pub type CommandResult<T> = Result<T, CommandError>;
