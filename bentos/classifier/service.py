"""Text classifier service: the champion's deployable ONNX model behind POST /classify.

Requests are batched (BentoML's adaptive batching) and queued by the guard, never shed; `LLMPATH_BATCHING=0`
serves each request on its own (what bench/serving_load.py compares against)."""

from __future__ import annotations

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
    import serve_config
    from classifier_config import ClassifierServe
except ImportError:  # in the repo
    from bentos import guard, serve_config
    from bentos.classifier.classifier_config import ClassifierServe

# Written by the `package` stage into the Bento (defaults from source); LLMPATH_CLASSIFIER_MODEL overrides the model.
CONFIG = serve_config.read(HERE, ClassifierServe)
MAX_TEXTS, MAX_CHARS, MAX_BATCH_SIZE = CONFIG.max_texts, CONFIG.max_chars, CONFIG.max_batch_size
BATCHING = os.environ.get("LLMPATH_BATCHING", "1") != "0"

Text = Annotated[str, Field(min_length=1, max_length=MAX_CHARS)]
Texts = Annotated[
    list[Text], Field(min_length=1, max_length=MAX_TEXTS, examples=[["a gripping, beautifully made film"]])
]


@bentoml.service(
    name=CONFIG.name,
    # Requests in flight (the guard queues the rest): two batches' worth, so one forms while another runs and
    # the batcher's queue never grows long enough for it to drop requests as late (503).
    traffic={"timeout": 60, "max_concurrency": 2 * MAX_BATCH_SIZE},
    http={"host": CONFIG.host, "port": CONFIG.port},
)
class Classifier:
    model = bentoml.models.BentoModel(CONFIG.model_tag)

    def __init__(self) -> None:
        info = self.model.info
        self.classifier = OnnxTextClassifier(
            self.model.path, max_length=int(info.metadata.get("max_length", 128))
        )
        self.source = dict(info.labels)

    @bentoml.api(
        batchable=BATCHING,
        max_batch_size=MAX_BATCH_SIZE,
        max_latency_ms=CONFIG.max_latency_ms,
    )
    def classify(self, texts: Texts) -> list[dict]:
        """Label and score for each text."""
        return self.classifier.classify(texts)

    @bentoml.api(route="/model")
    def model_info(self) -> dict:
        """Which registered model version this server answers with."""
        return {"model_tag": str(self.model.tag), **self.source}


guard.install(Classifier, max_body_bytes=CONFIG.max_body_bytes, body_timeout_s=CONFIG.body_timeout_s)
