"""Pipeline stages: plain functions holding the logic, each wrapped as a Prefect task in its module."""
