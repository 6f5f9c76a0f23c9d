"""Prefect flows. `FLOWS` maps a recipe kind to its flow: a new kind joins the pipeline by adding it here."""

from flows.classify import classify

FLOWS = {"classify": classify}
