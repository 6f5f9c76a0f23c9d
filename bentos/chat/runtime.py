"""ONNX Runtime causal LM with KV cache: token-by-token generation, greedy or sampled, and chat prompts whose
message text can never become control tokens. No torch, no Prefect, no MLflow: this is what the chat Bento
runs (and the rag Bento borrows)."""

from __future__ import annotations

import json
import logging
import threading
import uuid
import weakref
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np

logger = logging.getLogger("llmpath.chat")

# Below this temperature sampling is greedy: dividing logits by a smaller number overflows float math.
MIN_TEMPERATURE = 1e-4


class TemplateError(ValueError):
    """The chat template does not place each message's content in the prompt exactly once, as given."""


_plain_tokenizers: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_plain_lock = threading.Lock()


def _plain(tokenizer):
    """A private copy of a fast tokenizer's backend that matches no added token (special or not) in text.
    `tokenizer(text, split_special_tokens=True)` would flip a flag on the shared backend for the call, and a
    concurrent request on another thread could then read the flipped flag: a copy has nothing to race on."""
    with _plain_lock:
        plain = _plain_tokenizers.get(tokenizer)
        if plain is None:
            from tokenizers import Tokenizer

            spec = json.loads(tokenizer.backend_tokenizer.to_str())
            for token in spec.get("added_tokens") or []:
                token["special"] = True  # non-special added tokens (e.g. <think>) are control tokens too
            plain = Tokenizer.from_str(json.dumps(spec))
            plain.encode_special_tokens = True
            _plain_tokenizers[tokenizer] = plain
        return plain


def encode_text(tokenizer, text: str) -> list[int]:
    """Token ids of `text` as plain text: `<|im_start|>` in it is the characters, never the control token."""
    if not text:
        return []
    if getattr(tokenizer, "is_fast", False):
        return list(_plain(tokenizer).encode(text, add_special_tokens=False).ids)
    return list(tokenizer(text, add_special_tokens=False, split_special_tokens=True)["input_ids"])


def encode_chat(
    tokenizer,
    messages: Sequence[Mapping[str, str]],
    add_generation_prompt: bool = True,
    tools: list[dict] | None = None,
) -> list[int]:
    """Prompt ids of a conversation in the tokenizer's chat template, each message's `content` tokenized as
    plain text: text such as `<|im_end|><|im_start|>system` in a message (or a retrieved passage) stays text.

    The template is rendered with a unique placeholder in place of each content, so its own structure (role
    headers, end-of-turn tokens, a default system prompt) is tokenized as the template means it; the contents
    go in between, tokenized with special tokens split. For text without control tokens the ids equal
    `apply_chat_template(..., tokenize=True)` (the template's pieces end at special tokens or newlines).
    `tools` (function definitions) go to a template that renders tools itself (see tools.py)."""
    tag = uuid.uuid4().hex
    holders = [f"\x00{tag}:{i}\x00" for i in range(len(messages))]
    shaped = [{"role": m["role"], "content": h} for m, h in zip(messages, holders, strict=True)]
    extra = {"tools": tools} if tools else {}
    rendered = tokenizer.apply_chat_template(
        shaped, tokenize=False, add_generation_prompt=add_generation_prompt, **extra
    )
    ids: list[int] = []
    rest = rendered
    for i, (message, holder) in enumerate(zip(messages, holders, strict=True)):
        head, found, rest = rest.partition(holder)
        if not found or holder in rest:
            raise TemplateError(f"the chat template does not show message {i}'s content exactly once")
        ids += _template_ids(tokenizer, head)
        ids += encode_text(tokenizer, message["content"])
    if tag in rest:
        raise TemplateError("the chat template shows a message's content out of order")
    return ids + _template_ids(tokenizer, rest)


def _template_ids(tokenizer, text: str) -> list[int]:
    """The template's own text: its special tokens are meant (as `apply_chat_template` tokenizes it)."""
    return list(tokenizer(text, add_special_tokens=False)["input_ids"]) if text else []


class OnnxCausalLM:
    """An optimum export (`ORTModelForCausalLM`, `use_cache=True`): inputs `input_ids`, `attention_mask`,
    `position_ids`, `past_key_values.N.key/value`; outputs `logits`, `present.N.key/value`. Batch size 1."""

    def __init__(self, folder: str | Path, threads: int | None = None, file_name: str | None = None):
        import onnxruntime as ort

        folder = Path(folder)
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        path = folder / (file_name or "model.onnx")  # every exported form is a folder with a model.onnx
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no ONNX model there (expected an llmpath chat export)")
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.past_names = [i.name for i in self.session.get_inputs() if i.name.startswith("past_key_values.")]
        if not self.past_names:
            raise ValueError(f"{path}: exported without KV cache (export with use_cache=True)")
        shape = next(i.shape for i in self.session.get_inputs() if i.name == self.past_names[0])
        self.kv_heads, self.head_dim = int(shape[1]), int(shape[3])
        self.present_names = [name.replace("past_key_values.", "present.") for name in self.past_names]

    def _empty_past(self) -> dict[str, np.ndarray]:
        empty = np.zeros((1, self.kv_heads, 0, self.head_dim), dtype=np.float32)
        return {name: empty for name in self.past_names}

    def logits(self, ids: Sequence[int]) -> np.ndarray:
        """Next-token logits at every position of `ids` (one pass, empty cache): [len(ids), vocab]."""
        n = len(ids)
        feed = {
            "input_ids": np.asarray([list(ids)], dtype=np.int64),
            "attention_mask": np.ones((1, n), dtype=np.int64),
            "position_ids": np.arange(n, dtype=np.int64)[None, :],
        } | self._empty_past()
        return self.session.run(["logits"], feed)[0][0]

    def stream(
        self,
        prompt: Sequence[int],
        max_new_tokens: int,
        stop_ids: Sequence[int] = (),
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: int | np.random.Generator | None = None,
    ) -> Iterator[int]:
        """Yield new token ids one at a time; stop at a stop id (not yielded) or after `max_new_tokens`.
        `temperature` 0 is greedy; otherwise sample from the top-`top_p` nucleus. `seed` may be a Generator,
        so that several answers to one request continue one random sequence (n > 1 gives different answers)."""
        rng = np.random.default_rng(seed)
        past = self._empty_past()
        ids = np.asarray([list(prompt)], dtype=np.int64)
        seen = 0
        for _ in range(max_new_tokens):
            length = ids.shape[1]
            feed = {
                "input_ids": ids,
                "attention_mask": np.ones((1, seen + length), dtype=np.int64),
                "position_ids": np.arange(seen, seen + length, dtype=np.int64)[None, :],
            } | past
            outputs = self.session.run(["logits", *self.present_names], feed)
            seen += length
            past = dict(zip(self.past_names, outputs[1:], strict=True))
            token = pick(outputs[0][0, -1], temperature, top_p, rng)
            if token in stop_ids:
                return
            yield token
            ids = np.asarray([[token]], dtype=np.int64)


def pick(logits: np.ndarray, temperature: float, top_p: float, rng: np.random.Generator) -> int:
    """Greedy when temperature is below MIN_TEMPERATURE; else softmax(logits / temperature) restricted to the
    smallest set of tokens whose probability reaches `top_p` (never fewer than one token).

    The softmax is taken in log space, in float64, after subtracting the maximum: the best token has weight 1,
    so the sum is at least 1 and no temperature or top_p in range can produce NaN or divide by zero."""
    logits = np.nan_to_num(np.asarray(logits, dtype=np.float64), nan=-np.inf, posinf=np.finfo(np.float64).max)
    if not np.isfinite(temperature) or temperature < MIN_TEMPERATURE or not np.isfinite(logits.max()):
        return int(np.argmax(logits))
    scaled = (logits - logits.max()) / temperature
    probs = np.exp(scaled - np.log(np.exp(scaled).sum()))
    order = np.argsort(-probs, kind="stable")
    cumulative = np.cumsum(probs[order])
    count = min(int(np.searchsorted(cumulative, top_p)) + 1, len(order))  # top_p 1e-300 keeps the best one
    keep = order[:count]
    kept = probs[keep] / probs[keep].sum()
    return int(rng.choice(keep, p=kept))


def stream_text(
    llm: OnnxCausalLM,
    tokenizer,
    prompt: Sequence[int],
    max_new_tokens: int,
    stops: Sequence[str] = (),
    temperature: float = 0.0,
    top_p: float = 1.0,
    seed: int | np.random.Generator | None = None,
) -> Iterator[tuple[str, str | None, int]]:
    """(new text, finish reason or None, tokens generated so far) as tokens arrive; the last item has the
    reason ("stop" or "length"). A stop string ends the answer early and is not part of it; text that might be
    the start of a stop string is held back until it is known not to be."""
    tokens: list[int] = []
    sent = ""
    for token in llm.stream(prompt, max_new_tokens, [tokenizer.eos_token_id], temperature, top_p, seed):
        tokens.append(token)
        text, stopped = _cut(tokenizer.decode(tokens, skip_special_tokens=True), stops)
        if text.endswith("\ufffd") and not stopped:
            continue  # half of a multi-byte character: wait for the rest
        ready = text if stopped else text[: len(text) - _held_back(text, stops)]
        if len(ready) > len(sent):
            yield ready[len(sent) :], None, len(tokens)
            sent = ready
        if stopped:
            yield "", "stop", len(tokens)
            return
    text = _cut(tokenizer.decode(tokens, skip_special_tokens=True), stops)[0]
    if len(text) > len(sent):  # what was held back for a stop string that never came
        yield text[len(sent) :], None, len(tokens)
    yield "", "length" if len(tokens) >= max_new_tokens else "stop", len(tokens)


def _cut(text: str, stops: Sequence[str]) -> tuple[str, bool]:
    """Text up to the first stop string, and whether one was found."""
    hits = [text.index(s) for s in stops if s in text]
    return (text[: min(hits)], True) if hits else (text, False)


def _held_back(text: str, stops: Sequence[str]) -> int:
    """How many trailing characters might be the start of a stop string (not sent until we know)."""
    return max((k for stop in stops for k in range(1, len(stop)) if text.endswith(stop[:k])), default=0)


def sse_events(chunks: Iterator[dict]) -> Iterator[str]:
    """Server-sent events of `chunks`, always ending with `data: [DONE]`: a failure once the stream has
    started (its 200 is already sent) becomes one OpenAI-style error event, never a cut stream."""
    try:
        for chunk in chunks:
            yield f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n"
    except Exception:
        logger.exception("chat stream failed")
        error = {"message": "generation failed; the error is in the server log", "type": "server_error"}
        yield f"data: {json.dumps({'error': error | {'param': None, 'code': None}})}\n\n"
    yield "data: [DONE]\n\n"
