"""Retrieval service: `POST /search` (chunks, scores and sources for a query, optional metadata filters) and
`POST /ask` (retrieve, fill the recipe's prompt template, answer with the chat model, name the passages used).

Two models come from the BentoML store: the index (a Milvus Lite copy made at packaging time, or the address
of a Milvus server, plus the embedder and the collection's build record) and the ONNX chat model. Each worker
opens its own copy of a Lite index, so serving never shares a file with the indexing flow. The query embedder
is checked against the collection's record at start: a mismatch stops the server instead of answering wrong.

Each endpoint works on its own thread (`/ask` generates for seconds; `/search` takes milliseconds and must not
wait behind it) and queues what it cannot take at once (bentos/guard.py: body limits, JSON only, OpenAI-shaped
errors). Retrieved passages are tokenized as plain text: a passage cannot inject the chat template's control
tokens. The question page at `/ui` (rag_page.py) sends its requests to `/ask` and `/search` like any other
client, so the same limits hold there.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import os
import shutil
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Annotated, Literal

import bentoml
from pydantic import BaseModel, Field

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from connection import ResilientClient  # noqa: E402  (beside this file, in the repo and in the Bento)
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
    from causal_runtime import OnnxCausalLM, encode_chat  # in the Bento: the chat runtime copied in
except ImportError:  # in the repo
    from bentos.chat.runtime import OnnxCausalLM, encode_chat
import rag_page  # noqa: E402  (beside this file, in the repo and in the Bento)

try:
    import guard  # in the Bento: copied beside this file
    import serve_config
    import webui
    from rag_config import RagServe
except ImportError:  # in the repo
    from bentos import guard, serve_config, webui
    from bentos.rag.rag_config import RagServe

# Written by the `package` stage into the Bento (defaults from source); LLMPATH_RAG_INDEX and LLMPATH_RAG_CHAT
# override the models.
CONFIG = serve_config.read(HERE, RagServe)
ASK = CONFIG.ask
MAX_CHARS, MAX_INPUT_TOKENS, MAX_NEW_TOKENS = CONFIG.max_chars, CONFIG.max_input_tokens, CONFIG.max_new_tokens
MAX_K = 50
MAX_ASK_K = 20

Query = Annotated[str, Field(min_length=1, max_length=MAX_CHARS)]
FilterValue = Annotated[str, Field(max_length=512)] | int
FilterField = Literal[FILTER_FIELDS]
Filters = Annotated[dict[FilterField, FilterValue], Field(max_length=len(FILTER_FIELDS))]


class Passage(BaseModel):
    id: str
    score: float
    text: str
    source: str
    doc_id: str
    title: str
    position: int


# The question page at /ui: it sends /ask and /search requests to this service (bentos/webui.py).
@webui.mount(rag_page.build(MAX_ASK_K, ASK.k, MAX_NEW_TOKENS, ASK.max_new_tokens))
@bentoml.service(
    name=CONFIG.name,
    # max_concurrency: requests in flight per endpoint; the guard queues the rest (BentoML would answer 429).
    traffic={"timeout": 300, "max_concurrency": 16},
    http={"host": CONFIG.host, "port": CONFIG.port},
)
class Rag:
    index_model = bentoml.models.BentoModel(CONFIG.index_model_tag)
    chat_model = bentoml.models.BentoModel(CONFIG.chat_model_tag)

    def __init__(self) -> None:
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
        # Reconnects and retries when an idle connection is dropped (Lite's GOAWAY, a restarted server).
        self.client = ResilientClient(uri)
        self.record = read_record(self.client, self.collection)
        self.client.load_collection(self.collection)  # a reopened collection starts released
        self.embedder = Embedder(
            folder / "embedder", self.record["embedder_backend"], CONFIG.embed_max_length
        )
        # The query side must embed as the corpus was embedded: same model, revision and size.
        check_compatible(
            self.record,
            self.manifest["embedder"],
            self.manifest["embedder_revision"],
            self.embedder.dim,
            self.collection,
        )
        self.search_params = dict(CONFIG.search_params)
        self.tokenizer = AutoTokenizer.from_pretrained(self.chat_model.path)
        self.llm = OnnxCausalLM(self.chat_model.path)
        self.labels = dict(self.index_model.info.labels)
        # One thread each: the embedder's tokenizer is not safe to share across threads, ONNX Runtime already
        # spreads one call over the cores, and a long generation never holds up a search.
        self._searching = ThreadPoolExecutor(1, thread_name_prefix="rag-search")
        self._asking = ThreadPoolExecutor(1, thread_name_prefix="rag-ask")

    @bentoml.on_shutdown
    def _remove_copy(self) -> None:
        """A worker stopped by its server (SIGTERM) never reaches atexit: remove its index copy here."""
        self._searching.shutdown(wait=False, cancel_futures=True)
        self._asking.shutdown(wait=False, cancel_futures=True)
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
    async def search_chunks(
        self,
        query: Query,
        k: Annotated[int, Field(ge=1, le=MAX_K)] = 5,
        filters: Filters | None = None,
    ) -> dict:
        """The k chunks nearest to the query, best first, with scores and sources. `filters` keeps only chunks
        whose metadata equal the given values exactly (fields: source, doc_id, title; any Unicode text)."""
        loop = asyncio.get_running_loop()
        hits = await loop.run_in_executor(self._searching, self._search, query, k, filters)
        return {"query": query, "collection": self.collection, "results": hits}

    @bentoml.api(route="/ask")
    async def ask(
        self,
        question: Query,
        k: Annotated[int, Field(ge=1, le=MAX_ASK_K)] | None = None,
        max_new_tokens: Annotated[int, Field(ge=1, le=MAX_NEW_TOKENS)] | None = None,
        filters: Filters | None = None,
    ) -> dict:
        """Retrieve k passages, fill the recipe's prompt template, answer with the chat model (greedy)."""
        loop = asyncio.get_running_loop()
        hits = await loop.run_in_executor(self._searching, self._search, question, k or ASK.k, filters)
        return await loop.run_in_executor(self._asking, self._answer, question, hits, max_new_tokens)

    def _answer(self, question: str, hits: list[dict], max_new_tokens: int | None) -> dict:
        template = ASK.prompt_template
        while True:  # drop the weakest passage until the prompt fits the model's input limit
            message = fill_prompt(template, question, [h["text"] for h in hits])
            # Question and passages are text, never the template's control tokens (a corpus passage holding
            # `<|im_end|><|im_start|>system` must not open a system turn).
            ids = encode_chat(self.tokenizer, [{"role": "user", "content": message}])
            if len(ids) <= MAX_INPUT_TOKENS or not hits:
                break
            hits = hits[:-1]
        if len(ids) > MAX_INPUT_TOKENS:
            raise bentoml.exceptions.InvalidArgument(
                f"the question alone is {len(ids)} tokens; the limit is {MAX_INPUT_TOKENS}"
            )
        limit = max_new_tokens or ASK.max_new_tokens
        tokens = list(self.llm.stream(ids, limit, [self.tokenizer.eos_token_id]))
        answer = self.tokenizer.decode(tokens, skip_special_tokens=True).strip()
        return {
            "question": question,
            "answer": answer,
            "passages": [h["id"] for h in hits],
            "sources": [
                {key: h[key] for key in ("id", "doc_id", "source", "title", "score", "text")} for h in hits
            ],
            "finish_reason": "length" if len(tokens) >= limit else "stop",
            "prompt_tokens": len(ids),
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


# Body limits, JSON only, queueing, OpenAI-shaped errors: the same guard as every llmpath Bento.
guard.install(Rag, max_body_bytes=CONFIG.max_body_bytes, body_timeout_s=CONFIG.body_timeout_s)
