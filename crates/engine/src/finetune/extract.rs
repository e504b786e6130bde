//! Plain text from the formats writers keep their work in: .txt/.md (UTF-8), .html
//! (html2text), .pdf (pdf-extract) and .docx (docx-rs). Each failure is a reason in words,
//! for the dataset report's "skipped" list; a malformed file never takes the import down
//! (a parser panic is caught and reported as such).

use std::path::Path;

use docx_rs::{
    DocumentChild, InsertChild, Paragraph, ParagraphChild, Run, RunChild, Table, TableCellContent,
    TableChild, TableRowChild,
};

/// The kinds of documents the importer reads.
pub const SUPPORTED: &[&str] = &[
    "txt", "md", "markdown", "text", "html", "htm", "pdf", "docx",
];

/// The text of the document at `path`, chosen by its extension; `Err` is the reason it
/// was skipped.
pub fn extract_text(path: &Path) -> Result<String, String> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    if !SUPPORTED.contains(&ext.as_str()) {
        return Err(match ext.as_str() {
            "doc" | "odt" | "rtf" | "pages" => {
                format!(".{ext} is not read; save it as .docx, .txt or .md")
            }
            _ => "not a document (.txt, .md, .html, .pdf, .docx)".into(),
        });
    }
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    // parsers of untrusted files: a panic is a bad file, not a crashed import
    let kind = ext.clone();
    std::panic::catch_unwind(move || match kind.as_str() {
        "html" | "htm" => html(&bytes),
        "pdf" => pdf(&bytes),
        "docx" => docx(&bytes),
        _ => utf8(bytes),
    })
    .unwrap_or_else(|_| {
        Err(format!(
            "the .{ext} reader failed on this file (malformed?)"
        ))
    })
}

fn utf8(bytes: Vec<u8>) -> Result<String, String> {
    String::from_utf8(bytes).map_err(|e| {
        format!(
            "not UTF-8 (invalid byte at offset {})",
            e.utf8_error().valid_up_to()
        )
    })
}

fn html(bytes: &[u8]) -> Result<String, String> {
    // wide lines: the importer re-flows whitespace itself
    html2text::config::plain()
        .string_from_read(bytes, 10_000)
        .map_err(|e| format!("not readable HTML: {e}"))
}

fn pdf(bytes: &[u8]) -> Result<String, String> {
    let text = pdf_extract::extract_text_from_mem(bytes)
        .map_err(|e| format!("not a readable PDF: {e}"))?;
    if text.trim().is_empty() {
        return Err("the PDF has no text layer (a scan? run OCR on it first)".into());
    }
    Ok(text)
}

fn docx(bytes: &[u8]) -> Result<String, String> {
    let doc = docx_rs::read_docx(bytes).map_err(|e| format!("not a readable .docx: {e}"))?;
    let mut out = String::new();
    for child in &doc.document.children {
        match child {
            DocumentChild::Paragraph(p) => paragraph(p, &mut out),
            DocumentChild::Table(t) => table(t, &mut out),
            _ => {}
        }
    }
    Ok(out)
}

fn paragraph(p: &Paragraph, out: &mut String) {
    for child in &p.children {
        paragraph_child(child, out);
    }
    out.push_str("\n\n");
}

fn paragraph_child(child: &ParagraphChild, out: &mut String) {
    match child {
        ParagraphChild::Run(r) => run(r, out),
        ParagraphChild::Insert(ins) => {
            for c in &ins.children {
                if let InsertChild::Run(r) = c {
                    run(r, out);
                }
            }
        }
        ParagraphChild::Hyperlink(link) => {
            for c in &link.children {
                paragraph_child(c, out);
            }
        }
        _ => {}
    }
}

fn run(r: &Run, out: &mut String) {
    for c in &r.children {
        match c {
            RunChild::Text(t) => out.push_str(&t.text),
            RunChild::Tab(_) => out.push('\t'),
            RunChild::Break(_) | RunChild::CarriageReturn(_) => out.push('\n'),
            _ => {}
        }
    }
}

fn table(t: &Table, out: &mut String) {
    for TableChild::TableRow(row) in &t.rows {
        for TableRowChild::TableCell(cell) in &row.cells {
            for content in &cell.children {
                match content {
                    TableCellContent::Paragraph(p) => paragraph(p, out),
                    TableCellContent::Table(t) => table(t, out),
                    _ => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A one-page PDF with `text` in Helvetica, its cross-reference table computed.
    pub(crate) fn pdf_with_text(text: &str) -> Vec<u8> {
        let stream = format!("BT /F1 12 Tf 72 720 Td ({text}) Tj ET");
        let objects = [
            "<< /Type /Catalog /Pages 2 0 R >>".to_string(),
            "<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_string(),
            "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>".to_string(),
            format!("<< /Length {} >>\nstream\n{stream}\nendstream", stream.len()),
            "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>".to_string(),
        ];
        let mut pdf = b"%PDF-1.4\n".to_vec();
        let mut offsets = Vec::new();
        for (i, body) in objects.iter().enumerate() {
            offsets.push(pdf.len());
            pdf.extend_from_slice(format!("{} 0 obj\n{body}\nendobj\n", i + 1).as_bytes());
        }
        let xref = pdf.len();
        pdf.extend_from_slice(
            format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes(),
        );
        for o in offsets {
            pdf.extend_from_slice(format!("{o:010} 00000 n \n").as_bytes());
        }
        pdf.extend_from_slice(
            format!(
                "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
                objects.len() + 1
            )
            .as_bytes(),
        );
        pdf
    }

    pub(crate) fn docx_with_paragraphs(paragraphs: &[&str]) -> Vec<u8> {
        let mut doc = docx_rs::Docx::new();
        for p in paragraphs {
            doc = doc
                .add_paragraph(docx_rs::Paragraph::new().add_run(docx_rs::Run::new().add_text(*p)));
        }
        let mut buf = std::io::Cursor::new(Vec::new());
        doc.build().pack(&mut buf).unwrap();
        buf.into_inner()
    }

    #[test]
    fn reads_html_pdf_and_docx() {
        let dir = tempfile::tempdir().unwrap();
        let html = dir.path().join("a.html");
        std::fs::write(
            &html,
            "<html><head><title>T</title><style>p{}</style></head><body><h1>Call me Ishmael</h1><p>Some years ago &mdash; never mind how long.</p></body></html>",
        )
        .unwrap();
        let text = extract_text(&html).unwrap();
        assert!(text.contains("Call me Ishmael"), "{text}");
        assert!(text.contains("Some years ago — never mind"), "{text}");
        assert!(!text.contains("<p>") && !text.contains("p{}"), "{text}");

        let pdf = dir.path().join("b.pdf");
        std::fs::write(
            &pdf,
            pdf_with_text("It is a way I have of driving off the spleen."),
        )
        .unwrap();
        let text = extract_text(&pdf).unwrap();
        assert!(text.contains("driving off the spleen"), "{text:?}");

        let docx = dir.path().join("c.docx");
        std::fs::write(
            &docx,
            docx_with_paragraphs(&["First paragraph.", "Second one."]),
        )
        .unwrap();
        let text = extract_text(&docx).unwrap();
        assert_eq!(text.trim(), "First paragraph.\n\nSecond one.");
    }

    #[test]
    fn bad_files_are_reasons_not_failures() {
        let dir = tempfile::tempdir().unwrap();
        let cases: [(&str, &[u8], &str); 5] = [
            ("x.pdf", b"%PDF-1.4 this is not really a pdf", "PDF"),
            ("x.docx", b"PK\x03\x04 not a zip", ".docx"),
            ("x.txt", b"caf\xe9", "UTF-8"),
            ("x.odt", b"", "save it as"),
            ("x.png", b"\x89PNG", "not a document"),
        ];
        for (name, bytes, expected) in cases {
            let path = dir.path().join(name);
            std::fs::write(&path, bytes).unwrap();
            let err = extract_text(&path).unwrap_err();
            assert!(err.contains(expected), "{name}: {err}");
        }
    }
}
