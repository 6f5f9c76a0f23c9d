"""The index family's recipe section: the embedder's batches and the Milvus collection each build writes."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from llmpath.config import Section


class IndexConfig(Section):
    """rag: the embedder's batches and the Milvus collection each build writes."""

    uri: str | None = Field(
        None,
        description="Milvus server URI (http://host:19530). Default: a Milvus Lite file, "
        "`LLMPATH_MILVUS_URI` or <LLMPATH_HOME>/milvus/llmpath.db.",
    )
    type: Literal["FLAT", "IVF_FLAT", "HNSW", "AUTOINDEX"] = Field(
        "HNSW", description="Milvus index type (FLAT is exact search)."
    )
    metric: Literal["COSINE", "IP", "L2"] = Field(
        "COSINE", description="Vector similarity the index ranks by."
    )
    params: dict[str, int] = Field(
        default_factory=dict,
        description="Build parameters, e.g. {M: 16, efConstruction: 200} or {nlist: 64}.",
    )
    search_params: dict[str, int] = Field(
        default_factory=dict, description="Search parameters, e.g. {ef: 64} or {nprobe: 16}."
    )
    embed_batch_size: int = Field(64, gt=0, description="Texts per embedder forward pass.")
    write_batch_size: int = Field(256, gt=0, description="Rows per upsert.")
    onnx: bool = Field(False, description="Embed through the ONNX export (checked against PyTorch first).")
    min_cosine: float = Field(0.99, gt=0, le=1, description="ONNX vs PyTorch cosine every text must reach.")
