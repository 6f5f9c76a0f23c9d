"""Answer evaluation: the chat model answers sampled questions with the top passages (the `/ask` prompt) and
closed-book; exact match and token F1 of both, and every answer beside its references in MLflow."""

from __future__ import annotations

import json

import numpy as np

from bentos.rag.runtime import fill_prompt, search
from llmpath import progress, tracking
from llmpath.families.index import vectors
from llmpath.families.index.artifacts import load_vectors, read_table
from llmpath.families.index.package import chat_model_folder
from llmpath.metrics.answers import exact_match, token_f1
from llmpath.results import Embeddings, IndexBuild, PreparedCorpus

COLUMNS = ("question", "passages", "answer", "closed_book", "reference", "em", "f1", "closed_em", "closed_f1")


def answerer(folder, max_new_tokens: int):
    """Greedy answers from the ONNX chat model in `folder`, as the Bento's /ask makes them: passages and
    question are plain text in one user message, never control tokens."""
    from transformers import AutoTokenizer

    from bentos.chat.runtime import OnnxCausalLM, encode_chat

    tokenizer = AutoTokenizer.from_pretrained(folder)
    llm = OnnxCausalLM(folder)

    def answer(message: str) -> str:
        ids = encode_chat(tokenizer, [{"role": "user", "content": message}])
        tokens = llm.stream(ids, max_new_tokens, [tokenizer.eos_token_id])
        return tokenizer.decode(list(tokens), skip_special_tokens=True).strip()

    return answer


def retrieved_passages(recipe, built: IndexBuild, q_vectors: np.ndarray) -> list[list[dict]]:
    """The top `ask.k` hits of each question, searched as `/ask` searches."""
    with vectors.connect(built.uri) as client:
        client.load_collection(built.collection)
        return search(
            client,
            built.collection,
            q_vectors,
            recipe.ask.k,
            recipe.index.metric,
            vectors.search_params(recipe.index, recipe.ask.k),
        )


def evaluate_answers(
    recipe, prepared: PreparedCorpus, built: IndexBuild, embedded: Embeddings, run_id: str
) -> dict[str, float]:
    """Answer `ask.sample` questions with the chat model twice: with the top `ask.k` passages (the `/ask`
    prompt) and closed-book. Exact match and token F1 for both; a table of question, passages, answers and
    references in MLflow."""
    import mlflow

    cfg = recipe.ask
    questions = read_table(prepared, "questions")[: cfg.sample]
    if not questions:
        print("answer evaluation skipped (ask.sample is 0 or there are no questions)")
        return {}
    folder, chat_revision = chat_model_folder(recipe)
    answer = answerer(folder, cfg.max_new_tokens)
    passages = retrieved_passages(recipe, built, load_vectors(embedded, "questions")[: len(questions)])
    rows: dict[str, list] = {k: [] for k in COLUMNS}
    pairs = list(zip(questions, passages, strict=True))
    for q, hits in progress.track(pairs, desc="answering", unit="questions"):
        refs = list(q["answers"])
        with_context = answer(fill_prompt(cfg.prompt_template, q["question"], [h["text"] for h in hits]))
        closed = answer(cfg.closed_book_template.replace("{question}", q["question"]))
        shown = [{"id": h["id"], "score": round(h["score"], 4), "text": h["text"][:300]} for h in hits]
        rows["question"].append(q["question"])
        rows["passages"].append(json.dumps(shown))
        rows["answer"].append(with_context)
        rows["closed_book"].append(closed)
        rows["reference"].append(" | ".join(refs))
        rows["em"].append(exact_match(with_context, refs))
        rows["f1"].append(token_f1(with_context, refs))
        rows["closed_em"].append(exact_match(closed, refs))
        rows["closed_f1"].append(token_f1(closed, refs))
    metrics = {
        "qa.rag.exact_match": float(np.mean(rows["em"])),
        "qa.rag.f1": float(np.mean(rows["f1"])),
        "qa.closed_book.exact_match": float(np.mean(rows["closed_em"])),
        "qa.closed_book.f1": float(np.mean(rows["closed_f1"])),
        "qa.questions": float(len(questions)),
    }
    with tracking.use_run(run_id):
        mlflow.log_metrics(metrics)
        mlflow.log_table(rows, "eval/answers.json")
        mlflow.set_tag("ask.chat_model", chat_revision)
    print(
        f"answers on {len(questions)} questions with {chat_revision}: with retrieval EM "
        f"{metrics['qa.rag.exact_match']:.3f} F1 {metrics['qa.rag.f1']:.3f}; closed-book EM "
        f"{metrics['qa.closed_book.exact_match']:.3f} F1 {metrics['qa.closed_book.f1']:.3f}"
    )
    return metrics
