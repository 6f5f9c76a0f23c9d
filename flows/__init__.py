"""Prefect flows. `FLOWS` maps a recipe kind to its flow: a new kind joins the pipeline by adding it here."""

from flows.chat import chat
from flows.classify import classify
from flows.rag import rag

FLOWS = {"classify": classify, "chat": chat, "rag": rag}
