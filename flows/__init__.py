"""Prefect flows, one per recipe kind."""

from flows.classify import classify

FLOWS = {"classify": classify}
