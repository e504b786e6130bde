//! Splitting a Markdown document into pieces that fit a token budget, at section, then
//! paragraph, then sentence, then word boundaries. The pieces are consecutive byte ranges:
//! concatenated they give back the whole input, nothing dropped, order kept.

use std::ops::Range;

/// Byte ranges covering `text`, each within `budget` tokens as `count` measures them
/// (a single word longer than the budget is cut by characters).
pub fn chunk_ranges(text: &str, budget: usize, count: &dyn Fn(&str) -> usize) -> Vec<Range<usize>> {
    let budget = budget.max(1);
    let mut out = Vec::new();
    split(text, 0, budget, count, 0, &mut out);
    // merge neighbours while they fit, so chunks are as large as the budget allows
    let mut merged: Vec<Range<usize>> = Vec::new();
    for r in out {
        if let Some(last) = merged.last_mut()
            && count(&text[last.start..r.end]) <= budget
        {
            last.end = r.end;
            continue;
        }
        merged.push(r);
    }
    merged
}

/// Boundaries for each level: before a heading line, after a blank line, after a sentence
/// end, after whitespace.
fn cut_points(text: &str, level: usize) -> Vec<usize> {
    let mut cuts = Vec::new();
    match level {
        0 => {
            for (i, _) in text.match_indices('\n') {
                if text[i + 1..].starts_with('#') {
                    cuts.push(i + 1);
                }
            }
        }
        1 => {
            for (i, _) in text.match_indices("\n\n") {
                cuts.push(i + 2);
            }
        }
        2 => {
            for (i, c) in text.char_indices() {
                if matches!(c, '.' | '!' | '?' | '\n') && text[i + c.len_utf8()..].starts_with(' ')
                {
                    cuts.push(i + c.len_utf8() + 1);
                }
            }
        }
        3 => {
            for (i, c) in text.char_indices() {
                if c.is_whitespace() {
                    cuts.push(i + c.len_utf8());
                }
            }
        }
        _ => {
            // characters, a few at a time
            for (n, (i, _)) in text.char_indices().enumerate() {
                if n > 0 && n.is_multiple_of(16) {
                    cuts.push(i);
                }
            }
        }
    }
    cuts.retain(|&c| c > 0 && c < text.len());
    cuts.dedup();
    cuts
}

fn split(
    text: &str,
    offset: usize,
    budget: usize,
    count: &dyn Fn(&str) -> usize,
    level: usize,
    out: &mut Vec<Range<usize>>,
) {
    if text.is_empty() {
        return;
    }
    if count(text) <= budget || level > 4 {
        out.push(offset..offset + text.len());
        return;
    }
    let cuts = cut_points(text, level);
    if cuts.is_empty() {
        split(text, offset, budget, count, level + 1, out);
        return;
    }
    let mut start = 0;
    for c in cuts.into_iter().chain(std::iter::once(text.len())) {
        split(
            &text[start..c],
            offset + start,
            budget,
            count,
            level + 1,
            out,
        );
        start = c;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> usize {
        s.split_whitespace().count()
    }

    #[test]
    fn chunks_cover_the_input_in_order() {
        let doc = "# One\n\nAlpha beta gamma. Delta epsilon.\n\n## Two\n\nZeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma tau.\n\nLast words here.";
        for budget in [1, 2, 3, 5, 8, 13, 100] {
            let ranges = chunk_ranges(doc, budget, &words);
            let joined: String = ranges.iter().map(|r| &doc[r.clone()]).collect();
            assert_eq!(joined, doc, "budget {budget}");
            for w in ranges.windows(2) {
                assert_eq!(w[0].end, w[1].start);
            }
            for r in &ranges {
                assert!(
                    words(&doc[r.clone()]) <= budget.max(1),
                    "budget {budget}: {:?}",
                    &doc[r.clone()]
                );
            }
        }
    }

    #[test]
    fn prefers_section_boundaries() {
        let doc = "# A\n\none two three\n\n# B\n\nfour five six";
        let ranges = chunk_ranges(doc, 6, &words);
        assert_eq!(&doc[ranges[0].clone()], "# A\n\none two three\n\n");
        assert_eq!(&doc[ranges[1].clone()], "# B\n\nfour five six");
    }
}
