"""Retrieval service: `POST /search` (chunks, scores and sources for a query, optional metadata filters) and
`POST /ask` (retrieve, fill the recipe's prompt template, answer with the chat model, name the passages used).

Two models come from the BentoML store: the index (a Milvus Lite copy made at packaging time, or the address
of a Milvus server, plus the embedder and the collection's build record) and the ONNX chat model. Each worker
opens its own copy of a Lite index, so serving never shares a file with the indexing flow. The query embedder
is checked against the collection's record at start: a mismatch stops the server instead of answering wrong.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Annotated

import bentoml
from pydantic import BaseModel, Field

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from runtime import (  # noqa: E402  (beside this file, in the repo and in the Bento)
    FILTER_FIELDS,
    Embedder,
    check_compatible,
    fill_prompt,
    filter_expression,
    read_record,
    search,
)

try:
    from causal_runtime import OnnxCausalLM  # in the Bento: the chat runtime copied in at packaging
except ImportError:  # in the repo
    from bentos.chat.runtime import OnnxCausalLM

_CONFIG_FILE = HERE / "bento_config.json"
CONFIG = json.loads(_CONFIG_FILE.read_text()) if _CONFIG_FILE.exists() else {}
INDEX_TAG = os.environ.get("LLMPATH_RAG_INDEX", CONFIG.get("index_model_tag", "llmpath-rag-index:latest"))
CHAT_TAG = os.environ.get("LLMPATH_RAG_CHAT", CONFIG.get("chat_model_tag", "llmpath-rag-chat:latest"))
ASK = CONFIG.get("ask", {})
MAX_CHARS = int(CONFIG.get("max_chars", 2000))
MAX_K = 50
MAX_INPUT_TOKENS = int(CONFIG.get("max_input_tokens", 1536))
MAX_NEW_TOKENS = int(CONFIG.get("max_new_tokens", 256))

Query = Annotated[str, Field(min_length=1, max_length=MAX_CHARS)]
FilterValue = Annotated[str, Field(max_length=512)] | int


class Passage(BaseModel):
    id: str
    score: float
    text: str
    source: str
    doc_id: str
    title: str
    position: int


@bentoml.service(
    name=CONFIG.get("name", "llmpath-rag"),
    traffic={"timeout": 300, "max_concurrency": 8},
    http={"host": CONFIG.get("host", "127.0.0.1"), "port": CONFIG.get("port", 3000)},
)
class Rag:
    index_model = bentoml.models.BentoModel(INDEX_TAG)
    chat_model = bentoml.models.BentoModel(CHAT_TAG)

    def __init__(self) -> None:
        from pymilvus import MilvusClient
        from transformers import AutoTokenizer

        folder = Path(self.index_model.path)
        self.manifest = json.loads((folder / "manifest.json").read_text())
        self.collection, self.metric = self.manifest["collection"], self.manifest["metric"]
        uri = os.environ.get("LLMPATH_RAG_MILVUS_URI", self.manifest["uri"])
        self._tmp = None
        if uri == "milvus.db":  # a Lite copy: this worker's own, so no two processes share a file
            self._tmp = Path(tempfile.mkdtemp(prefix="llmpath-rag-"))
            atexit.register(shutil.rmtree, self._tmp, True)  # a plain interpreter exit
            shutil.copytree(folder / "milvus.db", self._tmp / "milvus.db")
            uri = str(self._tmp / "milvus.db")
        self.client = MilvusClient(uri, token=os.environ.get("MILVUS_TOKEN", ""))
        self.record = read_record(self.client, self.collection)
        self.client.load_collection(self.collection)  # a reopened collection starts released
        self.embedder = Embedder(
            folder / "embedder", self.record["embedder_backend"], int(CONFIG.get("embed_max_length", 256))
        )
        # The query side must embed as the corpus was embedded: same model, revision and size.
        check_compatible(
            self.record,
            self.manifest["embedder"],
            self.manifest["embedder_revision"],
            self.embedder.dim,
            self.collection,
        )
        self.search_params = CONFIG.get("search_params", {})
        self.tokenizer = AutoTokenizer.from_pretrained(self.chat_model.path)
        self.llm = OnnxCausalLM(self.chat_model.path)
        self.labels = dict(self.index_model.info.labels)

    @bentoml.on_shutdown
    def _remove_copy(self) -> None:
        """A worker stopped by its server (SIGTERM) never reaches atexit: remove its index copy here."""
        self.client.close()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)

    def _search(self, query: str, k: int, filters: dict | None) -> list[dict]:
        try:
            filter_expression(filters)  # unknown fields are the client's mistake: a 400, before any work
        except ValueError as err:
            raise bentoml.exceptions.InvalidArgument(str(err)) from None
        vectors = self.embedder.encode([query])
        params = self.search_params | (
            {"ef": max(k, self.search_params["ef"])} if "ef" in self.search_params else {}
        )
        return search(
            self.client,
            self.collection,
            vectors,
            k,
            self.metric,
            params,
            filters,
            dim=int(self.record["dim"]),
        )[0]

    @bentoml.api(route="/search")
    def search_chunks(
        self,
        query: Query,
        k: Annotated[int, Field(ge=1, le=MAX_K)] = 5,
        filters: Annotated[dict[str, FilterValue], Field(max_length=len(FILTER_FIELDS))] | None = None,
    ) -> dict:
        """The k chunks nearest to the query, best first, with scores and sources. `filters` keeps only chunks
        whose metadata equal the given values (fields: source, doc_id, title)."""
        hits = self._search(query, k, filters)
        return {"query": query, "collection": self.collection, "results": hits}

    @bentoml.api(route="/ask")
    def ask(
        self,
        question: Query,
        k: Annotated[int, Field(ge=1, le=20)] | None = None,
        max_new_tokens: Annotated[int, Field(ge=1, le=MAX_NEW_TOKENS)] | None = None,
        filters: Annotated[dict[str, FilterValue], Field(max_length=len(FILTER_FIELDS))] | None = None,
    ) -> dict:
        """Retrieve k passages, fill the recipe's prompt template, answer with the chat model (greedy)."""
        hits = self._search(question, k or int(ASK.get("k", 3)), filters)
        template = ASK.get("prompt_template", "Context:\n{context}\n\nQuestion: {question}")
        while True:  # drop the weakest passage until the prompt fits the model's input limit
            message = fill_prompt(template, question, [h["text"] for h in hits])
            ids = self.tokenizer.apply_chat_template(
                [{"role": "user", "content": message}], add_generation_prompt=True
            )
            ids = list(ids["input_ids"] if isinstance(ids, dict) else ids)
            if len(ids) <= MAX_INPUT_TOKENS or not hits:
                break
            hits = hits[:-1]
        if len(ids) > MAX_INPUT_TOKENS:
            raise bentoml.exceptions.InvalidArgument(
                f"the question alone is {len(ids)} tokens; the limit is {MAX_INPUT_TOKENS}"
            )
        limit = max_new_tokens or int(ASK.get("max_new_tokens", 32))
        tokens = list(self.llm.stream(ids, limit, [self.tokenizer.eos_token_id]))
        answer = self.tokenizer.decode(tokens, skip_special_tokens=True).strip()
        return {
            "question": question,
            "answer": answer,
            "passages": [h["id"] for h in hits],
            "sources": [
                {"id": h["id"], "doc_id": h["doc_id"], "source": h["source"], "score": h["score"]}
                for h in hits
            ],
            "finish_reason": "length" if len(tokens) >= limit else "stop",
        }

    @bentoml.api(route="/model")
    def model_info(self) -> dict:
        """Which index, embedder and chat model this server answers with."""
        return {
            "index_model": str(self.index_model.tag),
            "chat_model": str(self.chat_model.tag),
            "collection": self.collection,
            "record": self.record,
            **self.labels,
        }
