"""Moved to `llmpath.families.index.vectors`; this path stays until its last importers (llmpath/gc.py,
llmpath/cli.py, tests) switch. A core module re-exporting a family: temporary."""

from llmpath.families.index.vectors import *  # noqa: F403
from llmpath.families.index.vectors import (  # noqa: F401
    DEFAULT_BUILD,
    DEFAULT_SEARCH,
    MAX_META,
    MAX_TEXT,
    IndexMismatchError,
    build_params,
    collection_name,
    connect,
    copy_collection,
    count,
    create_collection,
    exact_search,
    gold_rank,
    is_server,
    milvus_uri,
    read_record,
    retrieval_metrics,
    rows_of,
    search_params,
    upsert_chunks,
)
