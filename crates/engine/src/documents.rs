//! The writer's documents as text: UTF-8 checks that name the offending byte, older
//! Windows-1252 (Latin-1) files read and encoded back when the writer says so. Both front
//! ends read documents this way; saving goes through [`crate::fs::atomic_write`].

use std::path::Path;

use crate::{EngineError, Result};

/// The encoding a document is read and saved in: UTF-8, or Windows-1252 (the superset of
/// Latin-1 that older Windows and Mac editors wrote), only where the writer chose it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum TextEncoding {
    #[default]
    #[serde(rename = "utf-8")]
    Utf8,
    #[serde(rename = "windows-1252")]
    Windows1252,
}

impl std::str::FromStr for TextEncoding {
    type Err = EngineError;

    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "utf-8" | "utf8" => Ok(TextEncoding::Utf8),
            "windows-1252" | "cp1252" | "latin-1" | "latin1" | "iso-8859-1" => {
                Ok(TextEncoding::Windows1252)
            }
            other => Err(EngineError::Other(format!(
                "unknown encoding {other:?}; use utf-8 or windows-1252 (latin-1)"
            ))),
        }
    }
}

impl TextEncoding {
    pub fn label(self) -> &'static str {
        match self {
            TextEncoding::Utf8 => "UTF-8",
            TextEncoding::Windows1252 => "Windows-1252",
        }
    }
}

/// Reads a document as UTF-8; a file that is not is an error naming the byte offset.
pub fn read_document(path: &Path) -> Result<String> {
    read_document_as(path, TextEncoding::Utf8)
}

/// Reads a document in `encoding`. Every byte sequence is Windows-1252 text, and saving it
/// back with [`encode_document`] gives the same bytes.
pub fn read_document_as(path: &Path, encoding: TextEncoding) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| EngineError::io(path, e))?;
    match encoding {
        TextEncoding::Utf8 => String::from_utf8(bytes).map_err(|e| EngineError::NotUtf8 {
            path: path.to_path_buf(),
            offset: e.utf8_error().valid_up_to(),
        }),
        TextEncoding::Windows1252 => {
            let (text, _) = encoding_rs::WINDOWS_1252.decode_without_bom_handling(&bytes);
            Ok(text.into_owned())
        }
    }
}

/// The bytes of `text` in `encoding`; a character Windows-1252 has no byte for is an error
/// naming it (save as UTF-8 instead), never a silent `?`.
pub fn encode_document(text: &str, encoding: TextEncoding) -> Result<Vec<u8>> {
    match encoding {
        TextEncoding::Utf8 => Ok(text.as_bytes().to_vec()),
        TextEncoding::Windows1252 => {
            let (bytes, _, unmappable) = encoding_rs::WINDOWS_1252.encode(text);
            if unmappable {
                let ch = text
                    .chars()
                    .find(|c| {
                        let mut buf = [0u8; 4];
                        encoding_rs::WINDOWS_1252.encode(c.encode_utf8(&mut buf)).2
                    })
                    .unwrap_or('?');
                return Err(EngineError::Unencodable {
                    encoding: encoding.label(),
                    character: ch,
                });
            }
            Ok(bytes.into_owned())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_1252_files_open_when_asked_and_save_back_byte_for_byte() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("old.txt");
        // every byte value, the undefined 0x81/0x8D/0x8F/0x90/0x9D included
        let all: Vec<u8> = (0..=255).collect();
        std::fs::write(&p, &all).unwrap();
        let text = read_document_as(&p, TextEncoding::Windows1252).unwrap();
        assert!(text.contains("€") && text.contains("é") && text.contains("ÿ"));
        assert_eq!(
            encode_document(&text, TextEncoding::Windows1252).unwrap(),
            all
        );
        // a character the encoding has no byte for is named, not replaced
        let err = encode_document("café ✓", TextEncoding::Windows1252).unwrap_err();
        assert_eq!(err.kind().as_str(), "unencodable");
        assert!(err.to_string().contains('✓'), "{err}");
        assert_eq!(
            encode_document("café ✓", TextEncoding::Utf8).unwrap(),
            "café ✓".as_bytes()
        );
    }

    #[test]
    fn non_utf8_documents_are_refused_with_the_offset() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("latin1.txt");
        std::fs::write(&p, b"caf\xe9").unwrap();
        let err = read_document(&p).unwrap_err();
        assert_eq!(err.kind().as_str(), "not_utf8");
        let err = err.to_string();
        assert!(
            err.contains("not UTF-8") && err.contains("offset 3"),
            "{err}"
        );
    }
}
