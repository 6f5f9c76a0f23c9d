"""Moved to `llmpath.kinds.rag.corpus` (reading) and `llmpath.kinds.rag.chunking` (chunks); this path stays
until its last importers (llmpath/checks.py) switch. A core module re-exporting a kind: temporary."""

from llmpath.kinds.rag.chunking import *  # noqa: F403
from llmpath.kinds.rag.chunking import (  # noqa: F401
    Chunk,
    as_rows,
    chunk_corpus,
    chunk_document,
    chunk_id,
    chunking_settings,
)
from llmpath.kinds.rag.corpus import *  # noqa: F403
from llmpath.kinds.rag.corpus import (  # noqa: F401
    Corpus,
    Document,
    Question,
    folder_files,
    paragraphs,
    read_corpus,
    require_questions,
    source_path,
)
