"""Stages retry transient failures with backoff and fail bad input at once, under the real Prefect engine."""

from __future__ import annotations

import pytest
from prefect import flow

from llmpath.data import DataError
from tasks.stages import stage

pytestmark = pytest.mark.integration
calls: list[str] = []


def flaky_io(name: str) -> str:
    calls.append(name)
    if len(calls) == 1:
        raise ConnectionError("tracking server restarting")  # transient: retried
    return f"done {name}"


def bad_rows(name: str) -> str:
    calls.append(name)
    raise DataError("train.tsv: row 3: label: 'maybe' is not one of ['neg', 'pos']")  # permanent


flaky_stage = stage(flaky_io, name="test-flaky")
bad_stage = stage(bad_rows, name="test-bad")


@flow
def one(stage_task, name: str):
    state = stage_task(name, return_state=True)
    try:
        return state.name, state.result()
    except Exception as err:  # the stage's own error, after its retries
        return state.name, err


def test_transient_failure_is_retried_with_backoff_and_bad_data_is_not(prefect_harness):
    calls.clear()
    assert one(flaky_stage, "a") == ("Completed", "done a")
    assert calls == ["a", "a"]
    assert flaky_stage.retries == 2 and flaky_stage.retry_delay_seconds == [2, 4]  # exponential backoff

    calls.clear()
    name, err = one(bad_stage, "b")
    assert name == "Failed" and calls == ["b"]  # one attempt: a retry cannot fix bad data
    assert isinstance(err, DataError) and "row 3" in str(err)
