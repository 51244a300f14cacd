"""Token-aware chunking with overlap, using the embedding model's own tokenizer.

Each section is tokenized once (``return_offsets_mapping``) and cut into windows of at most ``max_tokens``
word pieces that overlap by ``overlap_tokens``; a window starts and ends at whitespace (never inside a
word such as ``Company's``) unless a run without whitespace is longer than a window, and a chunk's
text is the exact slice of the section text its tokens cover (not decoded word pieces). Chunks never
cross sections; ``position`` numbers them through the whole document. With the model's special tokens
added, a chunk fits the model's ``max_seq_length``, so nothing is silently truncated at embedding time.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from headwater.documents.parse import Section

DEFAULT_OVERLAP_TOKENS = 32


@dataclass(frozen=True)
class Chunk:
    section: str
    position: int
    text: str
    n_tokens: int

    @property
    def content_hash(self) -> str:
        """SHA-256 of the chunk text (an unchanged chunk is never re-embedded)."""
        return hashlib.sha256(self.text.encode()).hexdigest()


def chunk_sections(
    sections: Sequence[Section], tokenizer: Any, *, max_tokens: int, overlap_tokens: int = DEFAULT_OVERLAP_TOKENS
) -> list[Chunk]:
    """Cut sections into overlapping token windows (see the module docstring)."""
    if max_tokens < 8:
        raise ValueError(f"max_tokens {max_tokens} is too small")
    if not 0 <= overlap_tokens < max_tokens // 2:
        raise ValueError(f"overlap_tokens must be in [0, max_tokens/2), got {overlap_tokens}")
    texts = [s.text for s in sections]
    if not texts:
        return []
    encoded = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True, truncation=False, verbose=False)
    chunks: list[Chunk] = []
    for i, section in enumerate(sections):
        offsets = encoded["offset_mapping"][i]
        starts = _word_starts(offsets)
        for start, end in _windows(starts, max_tokens, overlap_tokens):
            text = section.text[offsets[start][0] : offsets[end - 1][1]].strip()
            if text:
                chunks.append(Chunk(section.name, len(chunks), text, end - start))
    return chunks


def _word_starts(offsets: Sequence[tuple[int, int]]) -> list[bool]:
    """Per token: does whitespace (or the text's start) precede it? Only there may a chunk start or end."""
    return [i == 0 or start > offsets[i - 1][1] for i, (start, _) in enumerate(offsets)]


def _windows(starts: Sequence[bool], max_tokens: int, overlap: int) -> list[tuple[int, int]]:
    """Token index windows [start, end) that begin and end at whitespace when the text allows it."""
    n = len(starts)
    out: list[tuple[int, int]] = []
    start = 0
    while start < n:
        end = min(start + max_tokens, n)
        if end < n:
            cut = end
            while cut > start + 1 and not starts[cut]:
                cut -= 1  # end before the word that would be split
            end = cut if cut > start + 1 else end
        out.append((start, end))
        if end >= n:
            break
        nxt = max(end - overlap, start + 1)
        while nxt > start + 1 and not starts[nxt]:
            nxt -= 1  # begin the overlap at a word's start
        start = nxt
    return out
