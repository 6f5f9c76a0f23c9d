"""Cutting documents into chunks: by paragraph (a paragraph longer than `chunk_tokens` is cut into windows) or
into windows over each whole document. Windows end at sentence, clause or word boundaries (semchunk), never
inside a word; each holds at most `chunk_tokens` of the embedder's tokens with its two special tokens, and
consecutive windows share up to `chunk_overlap` tokens of text. Every chunk is named by a hash of its content.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from functools import lru_cache

from llmpath.kinds.rag.corpus import Document, paragraphs, too_short
from llmpath.kinds.rag.recipe import CorpusConfig

SPECIAL_TOKENS = 2  # [CLS] and [SEP] take two of the embedder's positions


@dataclass(frozen=True)
class Chunk:
    id: str  # content hash of (doc_id, text)
    doc_id: str
    text: str
    source: str
    title: str
    position: int  # 0-based chunk number within its document


def chunk_id(doc_id: str, text: str) -> str:
    """The id of a chunk is the hash of what it holds: the same chunk always gets the same id, so writing it
    again (a re-run, a resumed crash) replaces it instead of adding a copy."""
    return hashlib.sha256(doc_id.encode() + b"\0" + text.encode()).hexdigest()[:32]


def token_counter(tokenizer) -> Callable[[str], int]:
    """Tokens of a text as the embedder counts them (special tokens not counted), memoized for one corpus:
    semchunk counts the same pieces many times."""

    @lru_cache(maxsize=1 << 16)
    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    return count


class Windows:
    """Character spans of at most `size` tokens (by `count`) that end at sentence, clause or word boundaries,
    consecutive ones sharing up to `overlap` tokens. semchunk finds the boundaries: it cuts a text into
    pieces of at most min(overlap, size - overlap) tokens, splitting at paragraph, then sentence, clause and
    word breaks. Windows are packed from whole pieces, as many as fit in `size`; the next window starts with
    the last pieces of this one that fit in `overlap` (semchunk's own overlap would keep windows to whole
    multiples of the piece size, 160 of 198 tokens at the 200/40 setting)."""

    def __init__(
        self, count: Callable[[str], int], size: int, overlap: int, max_token_chars: int | None = None
    ):
        import semchunk

        self.count, self.size, self.overlap = count, size, min(overlap, size - 1)
        piece = min(self.overlap, size - self.overlap) if self.overlap else size
        self._pieces = semchunk.chunkerify(count, piece, memoize=False, max_token_chars=max_token_chars)

    def spans(self, text: str) -> list[tuple[int, int]]:
        if not text.strip():
            return []
        if self.count(text) <= self.size:
            return [(0, len(text))]
        _, pieces = self._pieces(text, offsets=True)
        spans, i = [], 0
        while i < len(pieces):
            j = i + 1  # the window holds pieces i..j-1
            while j < len(pieces) and self.count(text[pieces[i][0] : pieces[j][1]]) <= self.size:
                j += 1
            spans.append((pieces[i][0], pieces[j - 1][1]))
            if j == len(pieces):
                break
            k = j  # the next window starts at piece k: after i, sharing what fits in the overlap
            while k - 1 > i and self.count(text[pieces[k - 1][0] : pieces[j - 1][1]]) <= self.overlap:
                k -= 1
            i = k
        return spans


def windows_for(cfg: CorpusConfig, tokenizer) -> Windows:
    """The windows the recipe asks for, counted with the embedder's tokenizer."""
    longest = max((len(t.removeprefix("##")) for t in tokenizer.get_vocab()), default=None)
    return Windows(token_counter(tokenizer), cfg.chunk_tokens - SPECIAL_TOKENS, cfg.chunk_overlap, longest)


def chunk_document(
    doc: Document, cfg: CorpusConfig, tokenizer, windows: Windows | None = None
) -> list[Chunk]:
    """paragraph: each paragraph is a chunk, and one longer than `chunk_tokens` is cut into windows;
    tokens: the whole document in windows of `chunk_tokens` overlapping by up to `chunk_overlap`."""
    windows = windows or windows_for(cfg, tokenizer)
    pieces = paragraphs(doc.text) if cfg.chunking == "paragraph" else [doc.text]
    texts: list[str] = []
    for piece in pieces:
        if cfg.chunking == "paragraph" and windows.count(piece) <= windows.size:
            texts.append(piece)
        else:
            texts.extend(piece[a:b].strip() for a, b in windows.spans(piece))
    texts = [t for t in texts if len(t) >= cfg.min_chars]
    return [
        Chunk(chunk_id(doc.doc_id, t), doc.doc_id, t, doc.source, doc.title, i) for i, t in enumerate(texts)
    ]


def chunk_corpus(documents: Iterable[Document], cfg: CorpusConfig, tokenizer) -> list[Chunk]:
    """Every document's chunks, in corpus order; a chunk met twice (same document, same text) is kept once.
    Documents that give no chunk at all (every piece under `min_chars`) are an error that says so."""
    windows = windows_for(cfg, tokenizer)
    seen: set[str] = set()
    out = []
    count = 0
    for doc in documents:
        count += 1
        for chunk in chunk_document(doc, cfg, tokenizer, windows):
            if chunk.id not in seen:
                seen.add(chunk.id)
                out.append(chunk)
    if count and not out:
        raise too_short(cfg, count)
    return out


def chunking_settings(cfg: CorpusConfig) -> dict:
    """What decides the chunks (recorded with the collection)."""
    return {
        "chunking": cfg.chunking,
        "chunk_tokens": cfg.chunk_tokens,
        "chunk_overlap": cfg.chunk_overlap,
        "min_chars": cfg.min_chars,
    }


def as_rows(items: Iterable) -> list[dict]:
    return [asdict(x) for x in items]
