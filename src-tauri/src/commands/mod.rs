//! The commands the webview calls, grouped by what they act on.

pub mod documents;
pub mod finetune;
pub mod model;
pub mod tasks;
