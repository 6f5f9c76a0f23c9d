"""One process of a data-parallel finetune job (`accelerate launch -m tasks.train_worker SPEC`, started by
tasks/train.py's `launch`): runs the stage's training on its share of every batch. The lead (rank 0) writes the
result, or the error that stopped it, where the spec says; its progress goes to stdout for the launcher."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from llmpath import parallel, progress
from llmpath.recipes import parse_recipe
from llmpath.results import PreparedData
from tasks.train import train


def main(spec_path: str) -> int:
    parallel.die_with_parent()  # torch's launcher starts each in a session of its own
    spec = json.loads(Path(spec_path).read_text())
    lead = int(os.environ.get("RANK", "0")) == 0
    result = Path(spec["result"])
    try:
        recipe = parse_recipe(spec["recipe"], "train.processes job")
        data = PreparedData.model_validate(spec["data"])
        with progress.reporting(
            lambda fraction, _detail: print(f"llmpath.progress {fraction:.4f} 1", flush=True)
        ):
            trained = train(recipe, data, spec["run_id"])
    except Exception as err:
        if lead:
            result.write_text(json.dumps({"error": f"{type(err).__name__}: {err}"}))
        raise
    if lead:
        result.write_text(json.dumps({"trained": trained.model_dump(mode="json")}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
