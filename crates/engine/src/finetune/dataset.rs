//! A training set from the writer's own documents: files and folders are imported (.txt, .md,
//! .html, .pdf, .docx: see [`super::extract`]; what
//! cannot be read is skipped and reported, never fatal), whitespace is normalized, exact
//! duplicates dropped, documents split into train / held-out by a hash of their text (stable
//! when files are added), tokenized and packed into fixed-length sequences with EOS between
//! documents.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::Result;
use crate::tokenizer::Tokenizer;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Skipped {
    pub path: PathBuf,
    pub reason: String,
}

#[derive(Debug, Clone)]
pub struct Document {
    pub path: PathBuf,
    pub text: String,
}

/// The import's outcome, for the fine-tune pane's report.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DatasetReport {
    pub documents: usize,
    pub tokens: usize,
    pub train_documents: usize,
    pub heldout_documents: usize,
    pub train_tokens: usize,
    pub heldout_tokens: usize,
    /// Held-out tokens the perplexity is measured on (a share of a large held-out set).
    #[serde(default)]
    pub evaluated_tokens: usize,
    pub duplicates: usize,
    pub skipped: Vec<Skipped>,
    /// How the documents were divided when that was not one file a part (a single
    /// document is split into parts by paragraph, so some of it can be held out).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The first training sequences exactly as the model sees them (decoded, end-of-text
    /// markers between documents included), each cut to [`SAMPLE_CHARS`].
    #[serde(default)]
    pub samples: Vec<String>,
    /// The held-out documents, by file name (a part of a single document by its number).
    #[serde(default)]
    pub heldout_names: Vec<String>,
}

/// How many training sequences the preview shows.
pub const SAMPLES: usize = 3;
/// The most characters of a training sequence the preview shows.
pub const SAMPLE_CHARS: usize = 1200;

/// A sequence's text for the preview, cut at a character boundary with an ellipsis.
fn sample_text(text: String) -> String {
    match text.char_indices().nth(SAMPLE_CHARS) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text,
    }
}

/// A document's name for the report: its file name, and its part number where a single
/// document was divided.
fn document_name(doc: &Document, part: Option<usize>) -> String {
    let name = doc.path.file_name().map_or_else(
        || doc.path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    match part {
        Some(i) => format!("{name} (part {})", i + 1),
        None => name,
    }
}

pub struct Dataset {
    pub train: Vec<Vec<u32>>,
    pub heldout: Vec<Vec<u32>>,
    pub report: DatasetReport,
}

/// Collapses runs of spaces/tabs, trims lines, keeps paragraph breaks (at most one blank line).
pub fn normalize(text: &str) -> String {
    let text = text.replace("\r\n", "\n").replace('\r', "\n");
    let mut out = String::with_capacity(text.len());
    let mut blank = 0;
    for line in text.lines() {
        let line = line.split_whitespace().collect::<Vec<_>>().join(" ");
        if line.is_empty() {
            blank += 1;
            continue;
        }
        if !out.is_empty() {
            out.push_str(if blank > 0 { "\n\n" } else { "\n" });
        }
        blank = 0;
        out.push_str(&line);
    }
    out
}

/// The most text one import takes in, all documents together.
pub const MAX_IMPORT_TEXT_BYTES: usize = 512 << 20;

fn collect_files(path: &Path, out: &mut Vec<PathBuf>, skipped: &mut Vec<Skipped>) {
    // a link is followed to a file, never to a folder (a link to a folder above it would
    // loop without end)
    let linked = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
    if linked && path.is_dir() {
        skipped.push(Skipped {
            path: path.to_path_buf(),
            reason: "a link to a folder is not followed; add the folder itself".into(),
        });
        return;
    }
    if path.is_dir() {
        match std::fs::read_dir(path) {
            Ok(entries) => {
                let mut children: Vec<PathBuf> =
                    entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
                children.sort();
                for child in children {
                    let hidden = child
                        .file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with('.'));
                    if !hidden {
                        collect_files(&child, out, skipped);
                    }
                }
            }
            Err(e) => skipped.push(Skipped {
                path: path.to_path_buf(),
                reason: format!("cannot read folder: {e}"),
            }),
        }
    } else {
        out.push(path.to_path_buf());
    }
}

/// Documents read together (in one child process where they need one).
const READ_BATCH: usize = 16;

/// Reads every document under `paths`.
pub fn import(paths: &[PathBuf]) -> (Vec<Document>, Vec<Skipped>, usize) {
    let mut files = Vec::new();
    let mut skipped = Vec::new();
    for p in paths {
        if !p.exists() {
            skipped.push(Skipped {
                path: p.clone(),
                reason: "no such file or folder".into(),
            });
            continue;
        }
        collect_files(p, &mut files, &mut skipped);
    }
    let mut seen = HashSet::new();
    let mut duplicates = 0;
    let mut docs = Vec::new();
    let mut total = 0usize;
    // a few at a time (documents that need a parser are read in a child process, see
    // `isolated`), so that the import's limit stops the reading early
    let mut files = files.into_iter();
    loop {
        let batch: Vec<PathBuf> = files.by_ref().take(READ_BATCH).collect();
        if batch.is_empty() {
            break;
        }
        let full = || {
            format!(
                "the import already holds {} MB of text, its limit",
                MAX_IMPORT_TEXT_BYTES >> 20
            )
        };
        if total > MAX_IMPORT_TEXT_BYTES {
            // the limit is reached: the rest is not even read
            skipped.extend(batch.into_iter().map(|path| Skipped {
                path,
                reason: full(),
            }));
            continue;
        }
        let texts = crate::isolated::extract_texts(&batch);
        for (path, text) in batch.into_iter().zip(texts) {
            if total > MAX_IMPORT_TEXT_BYTES {
                skipped.push(Skipped {
                    path,
                    reason: full(),
                });
                continue;
            }
            let text = match text {
                Ok(t) => t,
                Err(reason) => {
                    skipped.push(Skipped { path, reason });
                    continue;
                }
            };
            let text = normalize(&text);
            if text.is_empty() {
                skipped.push(Skipped {
                    path,
                    reason: "empty".into(),
                });
                continue;
            }
            if !seen.insert(text.clone()) {
                duplicates += 1;
                continue;
            }
            total += text.len();
            docs.push(Document { path, text });
        }
    }
    (docs, skipped, duplicates)
}

/// FNV-1a of the text: a stable, seedable hash (std's hasher is randomized per process).
fn stable_hash(text: &str, seed: u64) -> u64 {
    let mut h = 0xcbf29ce484222325u64 ^ seed;
    for b in text.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

/// True when the document goes to the held-out split (`heldout_percent` of documents, by
/// content, so adding files never moves existing ones).
pub fn is_heldout(text: &str, heldout_percent: u64, seed: u64) -> bool {
    stable_hash(text, seed) % 100 < heldout_percent
}

/// How many parts a single document is divided into, at most.
const SINGLE_DOCUMENT_PARTS: usize = 10;

/// Documents to split: as imported, or, for one document alone, its paragraphs gathered
/// into up to [`SINGLE_DOCUMENT_PARTS`] parts in order (one document could never be both
/// trained on and held out). The note says when that happened.
pub fn parts_for_split(docs: Vec<Document>) -> (Vec<Document>, Option<String>) {
    if docs.len() != 1 {
        return (docs, None);
    }
    let doc = &docs[0];
    let paragraphs: Vec<&str> = doc
        .text
        .split("\n\n")
        .filter(|p| !p.trim().is_empty())
        .collect();
    if paragraphs.len() < 2 {
        return (docs, None);
    }
    let parts = paragraphs.len().min(SINGLE_DOCUMENT_PARTS);
    let per_part = paragraphs.len().div_ceil(parts);
    let split: Vec<Document> = paragraphs
        .chunks(per_part)
        .map(|chunk| Document {
            path: doc.path.clone(),
            text: chunk.join("\n\n"),
        })
        .collect();
    let note = format!(
        "one document: divided by paragraph into {} parts, so that part of it is held out",
        split.len()
    );
    (split, Some(note))
}

/// The by-document split: indices of the training and the held-out documents, in import
/// order. With two or more documents, both splits get at least one.
pub fn split(docs: &[Document], heldout_percent: u64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let (mut heldout, mut train): (Vec<usize>, Vec<usize>) =
        (0..docs.len()).partition(|&i| is_heldout(&docs[i].text, heldout_percent, seed));
    if heldout.is_empty() && train.len() >= 2 && heldout_percent > 0 {
        heldout.push(train.pop().expect("two docs"));
    }
    if train.is_empty() && heldout.len() >= 2 {
        train.push(heldout.pop().expect("two docs"));
    }
    (train, heldout)
}

/// Packs documents into sequences of `seq_len` tokens, EOS between documents; the tail that
/// does not fill a sequence is kept as a shorter last sequence when it has ≥ 16 tokens.
pub fn pack(docs: &[Vec<u32>], seq_len: usize, eos: Option<u32>) -> Vec<Vec<u32>> {
    let mut stream = Vec::new();
    for d in docs {
        stream.extend_from_slice(d);
        if let Some(e) = eos {
            stream.push(e);
        }
    }
    let mut out: Vec<Vec<u32>> = stream.chunks(seq_len).map(<[u32]>::to_vec).collect();
    if out.last().is_some_and(|l| l.len() < seq_len.min(16)) {
        out.pop();
    }
    out
}

/// Imports, splits, tokenizes and packs.
pub fn build(
    paths: &[PathBuf],
    tokenizer: &Tokenizer,
    seq_len: usize,
    heldout_percent: u64,
    seed: u64,
) -> Result<Dataset> {
    let (docs, skipped, duplicates) = import(paths);
    let (docs, note) = parts_for_split(docs);
    let (train, heldout) = split(&docs, heldout_percent, seed);
    let encode = |indices: &[usize]| -> Result<Vec<Vec<u32>>> {
        indices
            .iter()
            .map(|&i| tokenizer.encode(&docs[i].text, false))
            .collect()
    };
    let (train_docs, heldout_docs) = (encode(&train)?, encode(&heldout)?);
    let count = |v: &Vec<Vec<u32>>| v.iter().map(Vec::len).sum::<usize>();
    let eos = tokenizer.eos_id();
    let train_seqs = pack(&train_docs, seq_len, eos);
    let samples = train_seqs
        .iter()
        .take(SAMPLES)
        .map(|ids| tokenizer.decode(ids, false).map(sample_text))
        .collect::<Result<Vec<_>>>()?;
    let divided = note.is_some();
    let heldout_names = heldout
        .iter()
        .map(|&i| document_name(&docs[i], divided.then_some(i)))
        .collect();
    let report = DatasetReport {
        documents: docs.len(),
        tokens: count(&train_docs) + count(&heldout_docs),
        train_documents: train_docs.len(),
        heldout_documents: heldout_docs.len(),
        train_tokens: count(&train_docs),
        heldout_tokens: count(&heldout_docs),
        evaluated_tokens: count(&heldout_docs),
        duplicates,
        skipped,
        note,
        samples,
        heldout_names,
    };
    Ok(Dataset {
        train: train_seqs,
        heldout: pack(&heldout_docs, seq_len, eos),
        report,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_collapses_whitespace_and_keeps_paragraphs() {
        assert_eq!(
            normalize("  a   b \r\n\r\n\r\n c\td  \n e"),
            "a b\n\nc d\ne"
        );
    }

    #[test]
    fn import_skips_and_reports_what_it_cannot_read() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.txt"), "Hello   world").unwrap();
        std::fs::write(dir.path().join("b.md"), "Hello world").unwrap(); // duplicate after normalizing
        std::fs::write(dir.path().join("c.pdf"), "%PDF").unwrap(); // damaged
        std::fs::write(dir.path().join("d.txt"), b"caf\xe9").unwrap();
        std::fs::write(dir.path().join("e.txt"), "Another document.").unwrap();
        let (docs, skipped, dups) = import(&[dir.path().to_path_buf(), dir.path().join("missing")]);
        assert_eq!(docs.len(), 2);
        assert_eq!(dups, 1);
        let reasons: Vec<&str> = skipped.iter().map(|s| s.reason.as_str()).collect();
        assert_eq!(skipped.len(), 3, "{reasons:?}");
        assert!(reasons.iter().any(|r| r.contains("PDF")), "{reasons:?}");
        assert!(reasons.iter().any(|r| r.contains("UTF-8")));
        assert!(reasons.iter().any(|r| r.contains("no such")));
    }

    #[test]
    #[cfg(unix)]
    fn a_folder_linking_to_itself_is_read_once() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.txt"), "A document.").unwrap();
        std::os::unix::fs::symlink(dir.path(), dir.path().join("loop")).unwrap();
        std::os::unix::fs::symlink(dir.path().join("a.txt"), dir.path().join("b.txt")).unwrap();
        let (docs, skipped, duplicates) = import(&[dir.path().to_path_buf()]);
        assert_eq!(docs.len(), 1);
        // the linked file is read (and found to be the same text)
        assert_eq!(duplicates, 1);
        assert_eq!(skipped.len(), 1, "{skipped:?}");
        assert!(
            skipped[0].reason.contains("link to a folder"),
            "{skipped:?}"
        );
    }

    #[test]
    fn a_single_document_is_divided_by_paragraph() {
        let text = (0..25)
            .map(|i| format!("Paragraph {i} of the only essay."))
            .collect::<Vec<_>>()
            .join("\n\n");
        let doc = Document {
            path: PathBuf::from("essay.md"),
            text,
        };
        let (parts, note) = parts_for_split(vec![doc]);
        assert_eq!(parts.len(), 9, "25 paragraphs, 3 a part");
        assert!(note.unwrap().contains("divided by paragraph into 9 parts"));
        let (train, heldout) = split(&parts, 10, 42);
        assert!(!train.is_empty() && !heldout.is_empty());
        // two documents stay as they are
        let two = vec![
            Document {
                path: "a".into(),
                text: "A\n\nB".into(),
            },
            Document {
                path: "b".into(),
                text: "C".into(),
            },
        ];
        let (same, note) = parts_for_split(two);
        assert_eq!(same.len(), 2);
        assert!(note.is_none());
    }

    #[test]
    fn split_is_stable_when_documents_are_added() {
        let texts: Vec<String> = (0..200).map(|i| format!("document number {i}")).collect();
        let before: Vec<bool> = texts.iter().map(|t| is_heldout(t, 10, 7)).collect();
        let n = before.iter().filter(|&&h| h).count();
        assert!((5..=40).contains(&n), "{n} held out of 200");
        // the same documents land in the same split whatever else is imported
        let after: Vec<bool> = texts.iter().map(|t| is_heldout(t, 10, 7)).collect();
        assert_eq!(before, after);
    }

    #[test]
    fn pack_puts_eos_between_documents() {
        let packed = pack(&[vec![1; 20], vec![2; 20]], 16, Some(0));
        assert_eq!(packed[0].len(), 16);
        assert_eq!(packed[1][4], 0);
        // 42 tokens: two full sequences; the 10-token tail is too short to keep
        assert_eq!(packed.len(), 2);
    }
}
