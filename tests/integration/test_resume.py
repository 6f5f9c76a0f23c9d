"""A training stage killed (SIGKILL) after a checkpoint resumes from it on the next run, and ends where an
uninterrupted run ends."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from llmpath import tracking
from llmpath.recipes import parse_recipe
from tests.conftest import ROOT, tiny_recipe

pytestmark = pytest.mark.integration

KILLED_TRAINING = """
import json, os, signal, sys
from llmpath.recipes import parse_recipe
from llmpath.results import PreparedData
from tasks.train import train

recipe, data, run_id = json.loads(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3]

def die_at_25(step):
    if step == 25:  # after the checkpoint at step 20, before the one at 30
        os.kill(os.getpid(), signal.SIGKILL)

train(parse_recipe(recipe), PreparedData.model_validate(data), run_id, on_step=die_at_25)
"""


def new_run(recipe) -> str:
    import mlflow

    experiment = tracking.ensure_experiment(recipe.experiment_name)
    return mlflow.MlflowClient().create_run(experiment).info.run_id


def test_killed_training_resumes_from_its_last_checkpoint(home, tmp_path, monkeypatch, tiny_bert):
    import mlflow

    from tasks.data import prepare
    from tasks.train import train

    monkeypatch.setenv("LLMPATH_DATA_DIR", str(tmp_path))
    raw = tiny_recipe(tmp_path, tiny_bert, name="resume", train={"checkpoint_every": 10, "threads": 1})
    recipe = parse_recipe(raw)
    killed_run = new_run(recipe)
    data = prepare(recipe, killed_run)

    proc = subprocess.run(
        [sys.executable, "-c", KILLED_TRAINING, json.dumps(raw), data.model_dump_json(), killed_run],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == -9, proc.stderr[-3000:]
    client = mlflow.MlflowClient()
    assert client.get_run(killed_run).data.tags["llmpath.checkpoint_step"] == "20"

    resumed_run = new_run(recipe)
    resumed = train(recipe, data, resumed_run)
    assert resumed.resumed_from_step == 20 and resumed.steps == 60  # ceil(160 / 16) * 6
    assert client.get_run(killed_run).info.status == "KILLED"  # its process never closed it
    run = client.get_run(resumed_run)
    assert run.data.metrics["train.resumed_from_step"] == 20
    history = client.get_metric_history(resumed_run, "train_loss")
    assert sorted(m.step for m in history) == list(range(1, 61))  # steps 1-20 copied, 21-60 trained here

    # The same data order, weights, optimizer and schedule: it ends exactly where an uninterrupted run ends.
    fresh_run = new_run(recipe)
    client.set_tag(fresh_run, "note", "uninterrupted reference")
    fresh = train(parse_recipe(raw | {"name": "resume-reference"}), data, fresh_run)
    assert fresh.resumed_from_step == 0
    assert resumed.final_loss == pytest.approx(fresh.final_loss, rel=1e-4)
