"""Extractive QA service: the champion's deployable ONNX span reader behind POST /answer.

`{"question", "context"}` -> `{"answer", "score", "start", "end"}`, where `context[start:end] == answer`
(character offsets in the context as sent, so non-ASCII text indexes correctly). A context longer than the
configured limit is a 413; empty, missing or mistyped fields a 400; the guard handles bodies and media types."""

from __future__ import annotations

import sys
from http import HTTPStatus
from pathlib import Path
from typing import Annotated

import bentoml
from pydantic import Field, StrictStr

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from runtime import OnnxReader  # noqa: E402  (beside this file, in the repo and in the Bento)

try:
    import guard  # in the Bento: copied beside this file
    import serve_config
    from qa_config import QaServe
except ImportError:  # in the repo
    from bentos import guard, serve_config
    from bentos.qa.qa_config import QaServe

# Written by the `package` stage into the Bento (defaults from source); LLMPATH_QA_MODEL overrides the model.
CONFIG = serve_config.read(HERE, QaServe)

Question = Annotated[StrictStr, Field(min_length=1, max_length=CONFIG.max_question_chars)]
Context = Annotated[StrictStr, Field(min_length=1, examples=["Super Bowl 50 was won by the Denver Broncos."])]


class TooLarge(bentoml.exceptions.BentoMLException):
    error_code = HTTPStatus.REQUEST_ENTITY_TOO_LARGE


@bentoml.service(
    name=CONFIG.name,
    traffic={"timeout": 60, "max_concurrency": 4},
    http={"host": CONFIG.host, "port": CONFIG.port},
)
class Reader:
    model = bentoml.models.BentoModel(CONFIG.model_tag)

    def __init__(self) -> None:
        info = self.model.info
        self.reader = OnnxReader(
            self.model.path,
            max_length=int(info.metadata.get("max_length", 384)),
            stride=CONFIG.stride,
            max_answer_tokens=CONFIG.max_answer_tokens,
        )
        self.source = dict(info.labels)

    @bentoml.api
    def answer(self, question: Question, context: Context) -> dict:
        """The best answer span of the context, its score and its character offsets."""
        if not question.strip() or not context.strip():
            raise bentoml.exceptions.InvalidArgument("question and context must hold more than whitespace")
        if len(context) > CONFIG.max_context_chars:
            raise TooLarge(
                f"the context has {len(context)} characters; the limit is {CONFIG.max_context_chars}"
            )
        return self.reader.answer(question, context)

    @bentoml.api(route="/model")
    def model_info(self) -> dict:
        """Which registered model version this server answers with."""
        return {"model_tag": str(self.model.tag), **self.source}


guard.install(Reader, max_body_bytes=CONFIG.max_body_bytes, body_timeout_s=CONFIG.body_timeout_s)
