"""Importing this module declares every stage (each module registers its tasks in `tasks.stages.STAGES`)."""

from tasks import data, evaluate, export, package, rag, registry, train  # noqa: F401
