"""Text classifier service: the champion's deployable ONNX model behind POST /classify.

Requests are batched (BentoML's adaptive batching) and queued by the guard, never shed; `LLMPATH_BATCHING=0`
serves each request on its own (what bench/serving_load.py compares against)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated

import bentoml
from pydantic import Field

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from runtime import OnnxTextClassifier  # noqa: E402  (beside this file, in the repo and in the Bento)

try:
    import guard  # in the Bento: copied beside this file
except ImportError:  # in the repo
    from bentos import guard

# Written by the `package` stage into the Bento; the environment can override it when serving from source.
_CONFIG_FILE = HERE / "bento_config.json"
CONFIG = json.loads(_CONFIG_FILE.read_text()) if _CONFIG_FILE.exists() else {}
MODEL_TAG = os.environ.get(
    "LLMPATH_CLASSIFIER_MODEL", CONFIG.get("model_tag", "llmpath-classifier-onnx:latest")
)
MAX_TEXTS, MAX_CHARS = CONFIG.get("max_texts", 64), CONFIG.get("max_chars", 2000)
MAX_BATCH_SIZE = int(CONFIG.get("max_batch_size", 32))
BATCHING = os.environ.get("LLMPATH_BATCHING", "1") != "0"

Text = Annotated[str, Field(min_length=1, max_length=MAX_CHARS)]
Texts = Annotated[
    list[Text], Field(min_length=1, max_length=MAX_TEXTS, examples=[["a gripping, beautifully made film"]])
]


@bentoml.service(
    name=CONFIG.get("name", "llmpath-classifier"),
    # Requests in flight (the guard queues the rest): two batches' worth, so one forms while another runs and
    # the batcher's queue never grows long enough for it to drop requests as late (503).
    traffic={"timeout": 60, "max_concurrency": 2 * MAX_BATCH_SIZE},
    http={"host": CONFIG.get("host", "127.0.0.1"), "port": CONFIG.get("port", 3000)},
)
class Classifier:
    model = bentoml.models.BentoModel(MODEL_TAG)

    def __init__(self) -> None:
        info = self.model.info
        self.classifier = OnnxTextClassifier(
            self.model.path, max_length=int(info.metadata.get("max_length", 128))
        )
        self.source = dict(info.labels)

    @bentoml.api(
        batchable=BATCHING,
        max_batch_size=MAX_BATCH_SIZE,
        max_latency_ms=CONFIG.get("max_latency_ms", 10000),
    )
    def classify(self, texts: Texts) -> list[dict]:
        """Label and score for each text."""
        return self.classifier.classify(texts)

    @bentoml.api(route="/model")
    def model_info(self) -> dict:
        """Which registered model version this server answers with."""
        return {"model_tag": str(self.model.tag), **self.source}


guard.install(
    Classifier,
    max_body_bytes=int(CONFIG.get("max_body_bytes", 1 << 20)),
    body_timeout_s=float(CONFIG.get("body_timeout_s", 10.0)),
)
