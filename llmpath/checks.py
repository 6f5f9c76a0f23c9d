"""The checks every command makes before anything starts: no Prefect, no MLflow, no model loaded. A bad recipe
or bad data fails here in one line (file, row or key, and the fix), the same for `validate`, `run` and
`pipeline`, instead of minutes later inside a flow run."""

from __future__ import annotations

from llmpath.config import DataConfig, Recipe


def _chat_rows(rows: list, cfg: DataConfig, label: str):
    from llmpath.chat import ChatColumns, validate_conversations

    return validate_conversations(rows, ChatColumns(format=cfg.chat_format, **cfg.columns), label)


def check_inputs(recipe: Recipe) -> None:
    """Every data file or corpus source resolves (under the data root unless absolute), reads, and has few
    enough bad rows; a corpus has text long enough to chunk and questions to gate on; the base model resolves. Raises DataError,
    ModelSourceError or ValueError with one line."""
    from llmpath.data import check_split, check_split_sizes
    from llmpath.sources import resolve_model

    if recipe.kind == "rag":
        from llmpath.corpus import read_corpus, require_questions

        require_questions(read_corpus(recipe.corpus), recipe.corpus)
    else:
        validate = _chat_rows if recipe.kind == "chat" else None
        names = filter(None, (recipe.data.train, recipe.data.validation))
        check_split_sizes([check_split(recipe.data, name, validate) for name in names])
    resolve_model(recipe.model.base, recipe.model.revision)
