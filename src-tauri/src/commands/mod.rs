//! The commands the webview calls, grouped by what they act on.

pub mod dialogs;
pub mod documents;
pub mod finetune;
pub mod library;
pub mod model;
pub mod remote;
pub mod serve;
pub mod tasks;
