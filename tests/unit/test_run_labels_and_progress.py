"""What the Prefect UI shows of a run: its name and tags (tasks/flowrun.py), its artifact keys
(tasks/publish.py) and its progress (llmpath/progress.py, tasks/progress.py), as pure logic."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from llmpath import progress
from llmpath.links import artifact_key
from tasks.flowrun import merged_tags, run_label, run_name_for, run_tags, short_name
from tasks.progress import StageProgress, Throttle, progress_line

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]
RECIPE = {"name": "classify-sst2-smoke", "kind": "classify", "registered_model": "sst2-classifier-smoke"}


def test_run_names_say_what_the_run_does():
    chat = {"name": "chat-alpaca-zh", "kind": "chat", "registered_model": "smollm2-alpaca-zh"}
    assert short_name(RECIPE) == "sst2-smoke"
    assert short_name({"name": "my-sst2", "kind": "classify"}) == "my-sst2"
    assert short_name({"name": "classify", "kind": "classify"}) == "classify"
    assert run_label({"recipe": RECIPE}, "classify") == "sst2-smoke"
    assert run_label({"stage": "finetune", "recipe": RECIPE, "inputs": {}}, "llmpath-stage") == (
        "sst2-smoke-finetune"
    )
    assert run_label({"recipes": [RECIPE, chat]}, "pipeline") == "release-sst2-smoke-alpaca-zh"
    assert run_label({"model": "sst2-classifier", "version": "3", "reason": "r"}, "promote") == (
        "promote-sst2-classifier-v3"
    )
    assert run_label({"model": "sst2-classifier", "reason": "r"}, "rollback") == "rollback-sst2-classifier"
    assert run_label({}, "odd") == "odd"
    many = run_label({"recipes": [RECIPE] * 20}, "pipeline")
    assert len(many) <= 60 and not many.endswith("-")
    flow_run_id = "0b6e4c1d-5a9f-4f7e-8d1c-2a3b4c5d3f9a"
    assert run_name_for("sst2-smoke", flow_run_id) == "sst2-smoke-3f9a"


def test_run_names_accept_validated_recipes():
    from llmpath.recipes import load_recipe

    recipe = load_recipe(ROOT / "recipes" / "rag-squad-smoke.yaml")
    assert run_label({"recipe": recipe}, "rag") == "squad-smoke"
    assert run_tags(recipe) == ["kind:rag", "recipe:rag-squad-smoke", "model:squad-index-smoke"]


def test_run_tags_name_kind_recipe_and_model_once_each():
    other = {"name": "classify-sst2", "kind": "classify", "registered_model": "sst2-classifier"}
    assert run_tags(RECIPE) == ["kind:classify", "recipe:classify-sst2-smoke", "model:sst2-classifier-smoke"]
    assert run_tags(RECIPE, other) == [
        "kind:classify",
        "recipe:classify-sst2-smoke",
        "model:sst2-classifier-smoke",
        "recipe:classify-sst2",
        "model:sst2-classifier",
    ]
    # A deployment's tags stay first; nothing twice.
    assert merged_tags(["llmpath", "kind:classify"], run_tags(RECIPE)) == [
        "llmpath",
        "kind:classify",
        "recipe:classify-sst2-smoke",
        "model:sst2-classifier-smoke",
    ]


def test_artifact_keys_are_per_recipe_and_valid_for_prefect():
    import re

    assert (
        artifact_key("classify-sst2-smoke", "finetune", "progress") == "classify-sst2-smoke-finetune-progress"
    )
    assert artifact_key("My_Recipe", "evaluate_base", "progress") == "my-recipe-evaluate-base-progress"
    assert artifact_key("release", "a", "b") != artifact_key("release", "a")
    long_one, long_two = artifact_key("release", *["x" * 30] * 5), artifact_key("release", *["x" * 30] * 6)
    assert len(long_one) <= 100 and len(long_two) <= 100 and long_one != long_two
    for key in (long_one, artifact_key("ÄÖ--", "!!")):
        assert re.fullmatch(r"[a-z0-9-]+", key), key


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_throttle_sends_first_last_each_step_and_never_faster_than_allowed():
    clock = Clock()
    throttle = Throttle(step=0.01, min_seconds=3.0, clock=clock)
    sent = []
    for i in range(1, 1001):  # 1000 updates over 100 s
        clock.now = i * 0.1
        if throttle.due(i / 1000):
            sent.append((clock.now, i / 1000))
    assert sent[0] == (0.1, 0.001) and sent[-1] == (100.0, 1.0)
    gaps = [b[0] - a[0] for a, b in zip(sent, sent[1:-1], strict=False)]
    assert min(gaps) >= 3.0 - 1e-9 and len(sent) <= 100 / 3 + 2
    # Fast updates: one per percent at most.
    fast = Throttle(step=0.01, clock=Clock())
    assert sum(fast.due(i / 10_000) for i in range(1, 10_001)) == 101


def test_throttle_for_log_lines_every_tenth_or_every_minute_while_moving():
    clock = Clock()
    throttle = Throttle(step=0.1, max_seconds=60.0, clock=clock)
    assert throttle.due(0.01)
    clock.now = 30
    assert not throttle.due(0.05)
    clock.now = 61
    assert throttle.due(0.06)  # a minute without a line, and it moved
    clock.now = 200
    assert not throttle.due(0.06)  # it did not move
    assert throttle.due(0.1) and not throttle.due(0.15) and throttle.due(0.2)
    assert throttle.due(1.0) and not throttle.due(1.0)


def test_progress_is_a_no_op_without_a_reporter_and_scales_parts():
    progress.update(1, 2)  # no reporter: nothing happens, nothing fails
    heard = []
    with progress.reporting(lambda fraction, detail: heard.append((round(fraction, 3), detail))):
        progress.update(5, 10, "steps")
        for index, form in enumerate(("fp32", "int8")):
            with progress.part(index, 2, form):
                for _ in progress.track(range(4), desc="t", unit="batches"):
                    pass
        progress.update(3, 0)  # no total: ignored
    progress.update(1, 1)
    assert heard[0] == (0.5, "5/10 steps")
    assert heard[1:] == [
        (0.125, "fp32: 1/4 batches"),
        (0.25, "fp32: 2/4 batches"),
        (0.375, "fp32: 3/4 batches"),
        (0.5, "fp32: 4/4 batches"),
        (0.625, "int8: 1/4 batches"),
        (0.75, "int8: 2/4 batches"),
        (0.875, "int8: 3/4 batches"),
        (1.0, "int8: 4/4 batches"),
    ]


class Logger:
    def __init__(self):
        self.lines: list[str] = []

    def info(self, line):
        self.lines.append(line)

    def warning(self, line):
        self.lines.append(f"WARNING {line}")


class Artifacts:
    """Stands in for the Prefect API: records each call; `down` makes every call fail."""

    def __init__(self, down: bool = False):
        self.calls: list[tuple] = []
        self.down = down

    def create(self, percent, key, description):
        if self.down:
            raise ConnectionError("API gone")
        self.calls.append(("create", percent, key, description))
        return "id-1"

    def update(self, artifact_id, percent, description):
        self.calls.append(("update", percent, artifact_id))


def test_stage_progress_publishes_one_artifact_per_stage_run_rate_limited():
    clock, logger, api = Clock(), Logger(), Artifacts()
    reporter = StageProgress("finetune", "classify-sst2-smoke", logger, clock=clock, artifacts=api)
    with progress.reporting(reporter):
        for step in range(1, 51):  # 50 steps, 1 s each
            clock.now = step * 1.0
            progress.update(step, 50, "steps")
    reporter.finish()
    assert api.calls[0] == (
        "create",
        2.0,
        "classify-sst2-smoke-finetune-progress",
        "finetune of classify-sst2-smoke: 1/50 steps",
    )
    assert api.calls[-1] == ("update", 100.0, "id-1")
    assert len(api.calls) <= 50 / 10 + 2  # 50 s of training: one call per 10 s at most, plus first and last
    assert [line.split(":")[1].split("%")[0].strip() for line in logger.lines] == [
        "2",
        *[str(p) for p in range(10, 101, 10)],
    ]
    assert logger.lines[-1] == "finetune: 100% (50/50 steps), 50 s so far"
    assert logger.lines[1] == "finetune: 10% (5/50 steps), 5 s so far, about 45 s to go"


def test_stage_progress_ends_at_100_and_survives_a_failing_api():
    api = Artifacts()
    reporter = StageProgress("embed", "rag-squad-smoke", Logger(), clock=Clock(), artifacts=api)
    reporter(0.4, "400/1000 texts")
    reporter.finish()
    assert [call[:2] for call in api.calls] == [("create", 40.0), ("update", 100.0)]

    logger, down = Logger(), Artifacts(down=True)
    broken = StageProgress("embed", "rag-squad-smoke", logger, clock=Clock(), artifacts=down)
    broken(0.1, "1/10")
    broken(1.0, "10/10")  # no second attempt, no exception
    broken.finish()
    assert down.calls == [] and sum(line.startswith("WARNING") for line in logger.lines) == 1


def test_progress_line_says_how_long_is_left():
    assert progress_line("finetune", 0.4, "20/50 steps", 48, 72) == (
        "finetune: 40% (20/50 steps), 48 s so far, about 72 s to go"
    )
    assert progress_line("finetune", 0.02, "1/50 steps", 9, None) == "finetune: 2% (1/50 steps), 9 s so far"
    assert (
        progress_line("finetune", 1.0, "50/50 steps", 120, 0) == "finetune: 100% (50/50 steps), 120 s so far"
    )
    # The pace is the loop's, from its first update: the stage's set-up (loading a model) does not count.
    clock = Clock()
    reporter = StageProgress("finetune", "r", Logger(), clock=clock, artifacts=Artifacts())
    clock.now = 30.0
    reporter(0.1, "1/10")
    clock.now = 40.0
    assert reporter.left(40.0, 0.5) == pytest.approx(12.5)  # 0.4 in 10 s, 0.5 to go


def test_plain_stage_calls_report_nothing_and_keep_their_signature():
    import inspect
    import typing

    from tasks.train import finetune, train

    assert inspect.signature(finetune.fn) == inspect.signature(train)
    assert typing.get_type_hints(finetune.fn) == typing.get_type_hints(train)
    assert finetune.fn.__wrapped__ is train and finetune.fn.__module__ == "tasks.train"


def test_loading_the_flows_loads_no_hub_library():
    """A flow decides hub access when it starts (tasks/flowrun.py): for the decision to hold, nothing a
    worker imports to load a flow may have imported huggingface_hub, transformers or datasets before."""
    code = (
        "import sys, flows.classify, flows.chat, flows.rag, flows.pipeline, flows.stage, flows.promote\n"
        "print(sorted(m for m in ('huggingface_hub', 'transformers', 'datasets') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_hub_access_is_decided_once_per_process_by_the_cli_rule(monkeypatch):
    import tasks.flowrun as flowrun
    from llmpath import settings

    decided = []
    monkeypatch.setattr(settings, "set_hub_access", decided.append)
    monkeypatch.setattr(flowrun, "_hub_decided", False)
    hub = type("R", (), {"uses_hub": True})()
    local = type("R", (), {"uses_hub": False})()
    flowrun.decide_hub_access((local, hub))  # a release with one hub recipe: allowed, as `llmpath pipeline`
    flowrun.decide_hub_access((local,))  # its subflows keep the decision
    assert decided == [True]
    monkeypatch.setattr(flowrun, "_hub_decided", False)
    flowrun.decide_hub_access((local,))
    assert decided == [True, False]


def test_builtin_print_undoes_a_patched_print_inside_the_block_only(monkeypatch, capsys):
    import builtins

    seen = []
    monkeypatch.setattr(builtins, "print", lambda *a, **k: seen.append(a))  # as Prefect's log_prints does
    with progress.builtin_print():
        print("captured by stdout")
    print("forwarded")
    assert capsys.readouterr().out == "captured by stdout\n"
    assert seen == [("forwarded",)]
