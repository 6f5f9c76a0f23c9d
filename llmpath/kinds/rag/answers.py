"""Answer evaluation: the chat model answers sampled questions with the top passages (the `/ask` prompt) and
closed-book; with `ask.reader: registry:NAME` a qa champion also answers them extractively from the same
passages. Exact match and token F1 of each, and every answer beside its references in MLflow."""

from __future__ import annotations

import json

import numpy as np

from bentos.rag.runtime import fill_prompt, search
from llmpath import progress, tracking
from llmpath.families.index import vectors
from llmpath.families.index.artifacts import load_vectors, read_table
from llmpath.families.index.package import chat_model_folder
from llmpath.families.span.reader import read_passages, registry_reader
from llmpath.metrics.answers import exact_match, token_f1
from llmpath.results import Embeddings, IndexBuild, PreparedCorpus

COLUMNS = ("question", "passages", "answer", "closed_book", "reference", "em", "f1", "closed_em", "closed_f1")
READER_COLUMNS = ("extractive", "extractive_score", "extractive_em", "extractive_f1", "reader_trained_on")


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
    reader = registry_reader(cfg.reader) if cfg.reader else None
    rows: dict[str, list] = {k: [] for k in COLUMNS + (READER_COLUMNS if reader else ())}
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
        if reader is not None:
            span = read_passages(reader.reader, q["question"], [h["text"] for h in hits])
            rows["reader_trained_on"].append(q["question"].strip() in reader.trained_questions)
            rows["extractive"].append(span["answer"])
            rows["extractive_score"].append(round(span["score"], 4))
            rows["extractive_em"].append(exact_match(span["answer"], refs))
            rows["extractive_f1"].append(token_f1(span["answer"], refs))
    metrics = {
        "qa.rag.exact_match": float(np.mean(rows["em"])),
        "qa.rag.f1": float(np.mean(rows["f1"])),
        "qa.closed_book.exact_match": float(np.mean(rows["closed_em"])),
        "qa.closed_book.f1": float(np.mean(rows["closed_f1"])),
        "qa.questions": float(len(questions)),
    }
    if reader is not None:
        metrics |= reader_metrics(rows)
    with tracking.use_run(run_id):
        mlflow.log_metrics(metrics)
        mlflow.log_table(rows, "eval/answers.json")
        mlflow.set_tag("ask.chat_model", chat_revision)
        if reader is not None:
            mlflow.set_tag("ask.reader", reader.revision)
            mlflow.log_table(readers_table(metrics, chat_revision, reader.revision), "eval/readers.json")
    print(
        f"answers on {len(questions)} questions with {chat_revision}: with retrieval EM "
        f"{metrics['qa.rag.exact_match']:.3f} F1 {metrics['qa.rag.f1']:.3f}; closed-book EM "
        f"{metrics['qa.closed_book.exact_match']:.3f} F1 {metrics['qa.closed_book.f1']:.3f}"
    )
    if reader is not None:
        print(
            f"extractive reader {reader.revision} on the same passages: EM "
            f"{metrics['qa.extractive.exact_match']:.3f} F1 {metrics['qa.extractive.f1']:.3f}; on the "
            f"{metrics['qa.heldout.questions']:.0f} questions it was not trained on: EM "
            f"{metrics.get('qa.extractive.heldout_exact_match', 0):.3f} vs generative "
            f"{metrics.get('qa.rag.heldout_exact_match', 0):.3f}"
        )
    return metrics


def reader_metrics(rows: dict[str, list]) -> dict[str, float]:
    """EM/F1 of the extractive reader on every sampled question, and of both readers on the questions the
    extractive one was not trained on (the fair comparison when its training data is the same corpus)."""
    out = {
        "qa.extractive.exact_match": float(np.mean(rows["extractive_em"])),
        "qa.extractive.f1": float(np.mean(rows["extractive_f1"])),
    }
    held = [i for i, trained in enumerate(rows["reader_trained_on"]) if not trained]
    out["qa.heldout.questions"] = float(len(held))
    if held:
        for prefix, em, f1 in (("extractive", "extractive_em", "extractive_f1"), ("rag", "em", "f1")):
            out[f"qa.{prefix}.heldout_exact_match"] = float(np.mean([rows[em][i] for i in held]))
            out[f"qa.{prefix}.heldout_f1"] = float(np.mean([rows[f1][i] for i in held]))
    return out


def readers_table(metrics: dict[str, float], chat: str, reader: str) -> dict[str, list]:
    """The generative and the extractive reader on the same questions and passages: all sampled questions,
    then those the extractive reader was not trained on."""
    names = {
        "rag": f"generative: {chat}",
        "extractive": f"extractive: {reader}",
        "closed_book": "closed-book",
    }
    table: dict[str, list] = {"reader": [], "questions": [], "exact_match": [], "f1": []}
    for subset, n, suffix in (
        ("all sampled", metrics["qa.questions"], ""),
        ("not in the reader's training", metrics["qa.heldout.questions"], "heldout_"),
    ):
        for key, name in names.items():
            if f"qa.{key}.{suffix}f1" in metrics:
                table["reader"].append(f"{name} ({subset})")
                table["questions"].append(n)
                table["exact_match"].append(metrics[f"qa.{key}.{suffix}exact_match"])
                table["f1"].append(metrics[f"qa.{key}.{suffix}f1"])
    return table
