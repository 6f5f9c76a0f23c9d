"""The checks every command makes before anything starts: no Prefect, no MLflow, no model loaded. A bad recipe
or bad data fails here in one line (file, row or key, and the fix), the same for `validate`, `run` and
`pipeline`, instead of minutes later inside a flow run."""

from __future__ import annotations

from llmpath.recipes import Recipe


def check_inputs(recipe: Recipe) -> None:
    """Every data file or corpus source resolves (under the data root unless absolute), reads, and has few
    enough bad rows; a corpus has text long enough to chunk and questions to gate on; the base model resolves. Raises DataError,
    ModelSourceError or ValueError with one line."""
    from llmpath.recipes import kind_of

    kind = kind_of(recipe)
    kind.check_inputs(recipe)
    kind.base_model(recipe)
