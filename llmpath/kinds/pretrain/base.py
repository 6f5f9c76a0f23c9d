"""The scratch base of a pretrain recipe: a byte-level BPE tokenizer trained on the training documents (never
the held-out ones) and a Llama-architecture decoder from the recipe's shape, randomly initialised with
train.seed. Built once per inputs into the cache folder, so training starts from exactly the weights the
`base` evaluation scores, on any machine that builds it."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from llmpath import settings
from llmpath.protocol import package_digest
from llmpath.sources import ResolvedModel

EOS, IM_START, IM_END = "<|endoftext|>", "<|im_start|>", "<|im_end|>"
SPECIAL = [EOS, IM_START, IM_END]
# ChatML, as the chat Bento renders conversations; no default system prompt.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def train_tokenizer(texts: list[str], vocab_size: int, min_frequency: int):
    """A byte-level BPE tokenizer (GPT-2 style: every byte is a token, so any text round-trips) as a
    transformers fast tokenizer with ChatML special tokens and template; eos = pad = <|endoftext|>."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=SPECIAL,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=EOS,
        bos_token=EOS,
        pad_token=EOS,
        additional_special_tokens=[IM_START, IM_END],
        clean_up_tokenization_spaces=False,
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def model_config(recipe, tokenizer):
    from transformers import LlamaConfig

    m = recipe.model
    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=m.hidden_size,
        intermediate_size=m.intermediate_size or 4 * m.hidden_size,
        num_hidden_layers=m.layers,
        num_attention_heads=m.heads,
        num_key_value_heads=m.kv_heads or m.heads,
        max_position_embeddings=m.max_length,
        initializer_range=m.init_std,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )


def build_base(recipe, key: str, train_texts: Callable[[], list[str]]) -> ResolvedModel:
    """The scratch base folder (safetensors, tokenizer, chat template) for inputs `key`, built from
    `train_texts()` unless already cached."""
    key = f"{key}-{package_digest(__name__)[:8]}"
    out = settings.cache_dir() / "models" / f"scratch-{key}"
    if not (out / "config.json").is_file():
        _write_base(recipe, train_texts(), out)
    return ResolvedModel(out, f"scratch:{key}", "scratch")


def _write_base(recipe, texts: list[str], out: Path) -> None:
    import torch
    from transformers import GenerationConfig, LlamaForCausalLM

    tokenizer = train_tokenizer(texts, recipe.tokenizer.vocab_size, recipe.tokenizer.min_frequency)
    config = model_config(recipe, tokenizer)
    torch.manual_seed(recipe.train.seed)
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(
        bos_token_id=config.bos_token_id, eos_token_id=config.eos_token_id, pad_token_id=config.pad_token_id
    )
    tmp = out.with_name(f"{out.name}.partial-{id(texts)}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    try:
        tmp.rename(out)  # atomic: a half-written base is never taken for a built one
    except OSError:  # another process built it meanwhile (same inputs, same weights)
        shutil.rmtree(tmp, ignore_errors=True)
