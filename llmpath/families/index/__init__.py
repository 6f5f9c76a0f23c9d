"""The index family: chunks embedded (PyTorch, or the ONNX export checked against PyTorch) into a Milvus
collection named by its build record, and the rag Bento (bentos/rag) that searches it and answers with an ONNX
chat model. `vectors` is Milvus itself (connect, collections, upserts, exact search, retrieval metrics)."""

from __future__ import annotations

from bentos.rag.rag_config import RagServe
from llmpath.protocol import BentoSpec, Family


class Index(Family):
    name = "index"
    module = __name__
    bento = BentoSpec(
        folder="rag",
        files=("service.py", "runtime.py", "connection.py", "rag_page.py"),
        service_class="Rag",
        config=RagServe,
        routes="POST /search /ask /model, question page /ui",
        # /ask generates with the chat runtime; webui.py: the page's Gradio mount and its client of the API
        borrowed={"causal_runtime.py": "chat/runtime.py", "webui.py": "webui.py"},
        packages=("pymilvus>=3.0,<3.1", "milvus-lite>=3.2,<3.3", "gradio==6.17.3"),
    )

    def import_models(self, recipe, labels: dict[str, str], tags: dict[str, str]) -> dict:
        """The index (its collection copied into a Milvus Lite file) and the chat model /ask answers with."""
        from llmpath.families.index.package import import_index

        return import_index(recipe, labels, tags)

    def bento_inputs(self, recipe) -> dict:
        """`ask.chat_model` and the index settings decide which models go in (the config holds only what /ask
        and /search read)."""
        return {"ask": recipe.ask.model_dump(), "index": recipe.index.model_dump()}


FAMILY = Index()
