//! Plain text from the formats writers keep their work in: .txt/.md (UTF-8), .html
//! (html2text), .pdf (pdf-extract) and .docx (docx-rs). Each failure is a reason in words,
//! for the dataset report's "skipped" list; a malformed file never takes the import down
//! (a parser panic is caught and reported as such).

use std::path::Path;

use docx_rs::{
    DocumentChild, InsertChild, Paragraph, ParagraphChild, Run, RunChild, Table, TableCellContent,
    TableChild, TableRowChild,
};

/// A document file larger than this is not read.
pub const MAX_FILE_BYTES: u64 = 64 << 20;
/// What the compressed parts of one .docx (its zip entries) or .pdf (its deflate streams)
/// may unpack to, together: measured from the data, not from what the file claims.
pub const MAX_UNPACKED_BYTES: u64 = 256 << 20;
/// The text one document may give.
pub const MAX_TEXT_BYTES: usize = 16 << 20;
/// How deeply an .html document's elements may nest.
pub const MAX_HTML_DEPTH: usize = 512;

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
    let size = std::fs::metadata(path).map_err(|e| e.to_string())?.len();
    if size > MAX_FILE_BYTES {
        return Err(format!(
            "the file is {} MB; documents over {} MB are not read",
            size >> 20,
            MAX_FILE_BYTES >> 20
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    // parsers of untrusted files: a panic is a bad file, not a crashed import; what could
    // exhaust memory or time (a zip or deflate bomb, elements nested without end) is
    // measured first
    let kind = ext.clone();
    let text = std::panic::catch_unwind(move || match kind.as_str() {
        "html" | "htm" => html(&bytes),
        "pdf" => pdf(&bytes),
        "docx" => docx(&bytes),
        _ => utf8(bytes),
    })
    .unwrap_or_else(|_| {
        Err(format!(
            "the .{ext} reader failed on this file (malformed?)"
        ))
    })?;
    if text.len() > MAX_TEXT_BYTES {
        return Err(format!(
            "it holds {} MB of text; a document may hold {} MB",
            text.len() >> 20,
            MAX_TEXT_BYTES >> 20
        ));
    }
    Ok(text)
}

fn too_much_unpacked(what: &str) -> String {
    format!(
        "its {what} unpack to more than {} MB (a compression bomb?)",
        MAX_UNPACKED_BYTES >> 20
    )
}

/// Unpacks every zip entry into nothing, counting: refuses an archive whose entries claim
/// or hold more than [`MAX_UNPACKED_BYTES`].
fn check_zip(bytes: &[u8]) -> Result<(), String> {
    use std::io::Read;
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .map_err(|e| format!("not a readable .docx: {e}"))?;
    let mut total = 0u64;
    for i in 0..archive.len() {
        let entry = archive
            .by_index(i)
            .map_err(|e| format!("not a readable .docx: {e}"))?;
        if entry.size() > MAX_UNPACKED_BYTES {
            return Err(format!(
                "part `{}` claims {} MB unpacked; {}",
                entry.name().unwrap_or_default(),
                entry.size() >> 20,
                too_much_unpacked("parts")
            ));
        }
        let room = MAX_UNPACKED_BYTES - total;
        let read = std::io::copy(&mut entry.take(room + 1), &mut std::io::sink())
            .map_err(|e| format!("not a readable .docx: {e}"))?;
        total += read;
        if total > MAX_UNPACKED_BYTES {
            return Err(too_much_unpacked("parts"));
        }
    }
    Ok(())
}

/// Inflates each `stream ... endstream` of a PDF into nothing, counting: refuses a file
/// whose deflate streams hold more than [`MAX_UNPACKED_BYTES`] together.
fn check_pdf_streams(bytes: &[u8]) -> Result<(), String> {
    use std::io::Read;
    let find = |hay: &[u8], needle: &[u8], from: usize| {
        hay.get(from..)?
            .windows(needle.len())
            .position(|w| w == needle)
            .map(|i| i + from)
    };
    let mut total = 0u64;
    let mut at = 0;
    while let Some(start) = find(bytes, b"stream", at) {
        let mut body = start + b"stream".len();
        if bytes.get(body) == Some(&b'\r') {
            body += 1;
        }
        if bytes.get(body) != Some(&b'\n') {
            at = body;
            continue;
        }
        body += 1;
        let end = find(bytes, b"endstream", body).unwrap_or(bytes.len());
        let room = MAX_UNPACKED_BYTES - total;
        let mut inflated = flate2::read::ZlibDecoder::new(&bytes[body..end]).take(room + 1);
        // a stream that is not deflate (or is damaged) counts what inflated before the error
        let mut sink = CountingSink(0);
        let _ = std::io::copy(&mut inflated, &mut sink);
        total += sink.0;
        if total > MAX_UNPACKED_BYTES {
            return Err(too_much_unpacked("streams"));
        }
        at = end;
    }
    Ok(())
}

struct CountingSink(u64);

impl std::io::Write for CountingSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// How deeply the elements of an HTML text nest, measured on the tags alone: void and
/// self-closed elements, comments and declarations do not count, nor `p` and `li`, which
/// HTML lets authors leave open.
fn html_depth(bytes: &[u8]) -> usize {
    const VOID: &[&[u8]] = &[
        b"area", b"base", b"br", b"col", b"embed", b"hr", b"img", b"input", b"link", b"meta",
        b"source", b"track", b"wbr", b"p", b"li",
    ];
    let (mut depth, mut max) = (0usize, 0usize);
    let mut i = 0;
    while let Some(open) = bytes[i..].iter().position(|&b| b == b'<') {
        let tag = i + open + 1;
        let close = bytes[tag..]
            .iter()
            .position(|&b| b == b'>')
            .map_or(bytes.len(), |p| tag + p);
        let inside = &bytes[tag..close];
        match inside.first() {
            Some(b'/') => depth = depth.saturating_sub(1),
            Some(c) if c.is_ascii_alphabetic() => {
                let name_end = inside
                    .iter()
                    .position(|b| !b.is_ascii_alphanumeric())
                    .unwrap_or(inside.len());
                let name = inside[..name_end].to_ascii_lowercase();
                if !inside.ends_with(b"/") && !VOID.contains(&name.as_slice()) {
                    depth += 1;
                    max = max.max(depth);
                }
            }
            _ => {}
        }
        i = close.min(bytes.len());
        if i >= bytes.len() {
            break;
        }
    }
    max
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
    let depth = html_depth(bytes);
    if depth > MAX_HTML_DEPTH {
        return Err(format!(
            "its elements nest {depth} deep; Penwright reads HTML nested at most {MAX_HTML_DEPTH} deep"
        ));
    }
    // wide lines: the importer re-flows whitespace itself
    html2text::config::plain()
        .string_from_read(bytes, 10_000)
        .map_err(|e| format!("not readable HTML: {e}"))
}

fn pdf(bytes: &[u8]) -> Result<String, String> {
    check_pdf_streams(bytes)?;
    let text = pdf_extract::extract_text_from_mem(bytes)
        .map_err(|e| format!("not a readable PDF: {e}"))?;
    if text.trim().is_empty() {
        return Err("the PDF has no text layer (a scan? run OCR on it first)".into());
    }
    Ok(text)
}

fn docx(bytes: &[u8]) -> Result<String, String> {
    check_zip(bytes)?;
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
    use std::io::Write;

    fn zip_of(name: &str, parts: usize, part: &[u8]) -> Vec<u8> {
        let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        zip.start_file(name, options).unwrap();
        for _ in 0..parts {
            zip.write_all(part).unwrap();
        }
        zip.finish().unwrap().into_inner()
    }

    #[test]
    fn a_docx_that_claims_a_huge_part_is_refused_before_reading() {
        let mut bytes = zip_of("word/document.xml", 1, b"<w:document/>");
        // the central directory's uncompressed size, 24 bytes into its entry
        let cd = bytes.windows(4).rposition(|w| w == b"PK\x01\x02").unwrap();
        bytes[cd + 24..cd + 28].copy_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
        let err = docx(&bytes).unwrap_err();
        assert!(err.contains("claims 4095 MB"), "{err}");
    }

    #[test]
    fn compression_bombs_are_measured_and_refused() {
        let mb = vec![0u8; 1 << 20];
        let started = std::time::Instant::now();
        let bomb = zip_of("word/document.xml", 300, &mb);
        assert!(bomb.len() < 2 << 20, "{} bytes", bomb.len());
        let err = docx(&bomb).unwrap_err();
        assert!(err.contains("unpack to more than 256 MB"), "{err}");
        let mut deflated = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
        for _ in 0..300 {
            deflated.write_all(&mb).unwrap();
        }
        let stream = deflated.finish().unwrap();
        let mut pdf = format!(
            "%PDF-1.4\n1 0 obj\n<< /Length {} /Filter /FlateDecode >>\nstream\n",
            stream.len()
        )
        .into_bytes();
        pdf.extend_from_slice(&stream);
        pdf.extend_from_slice(b"\nendstream\nendobj\n%%EOF\n");
        let err = super::pdf(&pdf).unwrap_err();
        assert!(err.contains("streams unpack to more than"), "{err}");
        eprintln!("two bombs refused in {:?}", started.elapsed());
    }

    #[test]
    fn html_nested_without_end_is_refused_at_once() {
        let started = std::time::Instant::now();
        let err = html("<div>".repeat(100_000).as_bytes()).unwrap_err();
        assert!(err.contains("nest 100000 deep"), "{err}");
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
        // ordinary pages pass: void elements, comments, unclosed paragraphs
        let page = "<!DOCTYPE html><html><body><!-- x --><p>One<br>two<p>three<img src=a.png>\
                    <ul><li>a<li>b</ul></body></html>";
        assert_eq!(html_depth(page.as_bytes()), 3);
        assert!(html(page.as_bytes()).unwrap().contains("three"));
    }

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
