#!/usr/bin/env python3
"""Splits a Project Gutenberg book into one .txt file a chapter, for fine-tuning runs.

    scripts/book-chapters.py BOOK.txt OUT_DIR [CHAPTERS]

The header and licence footer are stripped; "CHAPTER N" lines divide the rest; the first
CHAPTERS chapters (default: all) of more than 200 words are written to OUT_DIR as
chapter-001.txt, … The count goes to stderr.
"""
import os
import re
import sys

book, out = sys.argv[1], sys.argv[2]
limit = int(sys.argv[3]) if len(sys.argv) > 3 else None
text = open(book, encoding="utf-8", errors="replace").read()
start = re.search(r"^\*\*\* ?START OF.*$", text, re.M)
end = re.search(r"^\*\*\* ?END OF.*$", text, re.M)
text = text[start.end() if start else 0 : end.start() if end else len(text)]
parts = re.split(r"^CHAPTER \d+\.?.*$", text, flags=re.M)[1:]
os.makedirs(out)
n = 0
for i, part in enumerate(parts[:limit]):
    if len(part.split()) > 200:
        with open(os.path.join(out, f"chapter-{i + 1:03}.txt"), "w") as f:
            f.write(part.strip() + "\n")
        n += 1
print(f"{n} chapters", file=sys.stderr)
