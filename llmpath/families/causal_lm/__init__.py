"""The causal-LM family: ONNX export with KV cache and quantized forms, parity against PyTorch's greedy tokens,
and the OpenAI-style chat Bento (bentos/chat). Every kind whose model is a causal LM reuses all three."""

from __future__ import annotations

from bentos.chat.chat_config import ChatServe
from llmpath.protocol import BentoSpec, Family


class CausalLM(Family):
    name = "causal-lm"
    module = __name__
    bento = BentoSpec(
        folder="chat",
        files=("service.py", "openai_api.py", "runtime.py", "tools.py", "chat_page.py"),
        service_class="Chat",
        config=ChatServe,
        routes="POST /v1/chat/completions /generate, OpenAI base URL /v1, chat page /ui",
        borrowed={"webui.py": "webui.py"},  # the page's Gradio mount and its client of the service's own API
        packages=("gradio==6.17.3", "jsonschema==4.26.0"),  # as pyproject.toml pins them
    )

    def export(self, recipe, trained, run_id):
        from llmpath.families.causal_lm.export import export_causal

        return export_causal(recipe, trained, run_id)

    def export_key(self, recipe) -> dict:
        return {"export": recipe.export.model_dump(exclude={"min_agreement", "prefer", "probe_prompts"})}

    def parity(self, recipe, data, exported, candidate, run_id):
        from llmpath.families.causal_lm.export import parity_causal

        return parity_causal(recipe, exported, candidate, run_id)

    def parity_key(self, recipe) -> dict:
        return {"export": recipe.export.model_dump(), "max_length": recipe.model.max_length}


FAMILY = CausalLM()
