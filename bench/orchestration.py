"""What Prefect orchestration costs and what the stage cache saves, on the smoke classify pipeline, in one run.

Usage: python bench/orchestration.py [--recipe recipes/classify-sst2-smoke.yaml] [--rounds 2]
Needs LLMPATH_DATA_DIR. Writes bench/results/orchestration.{json,md}; BENCHMARKS.md quotes the markdown.

Per round, in a fresh project home (its own MLflow store, so no cache entry carries over):
  plain    the same stage functions in the same order, called as plain Python (no Prefect)
  prefect  the `classify` flow under Prefect (first run: every stage computes)
  cached   the same flow again, unchanged: content-cached stages are reused
Rounds alternate the order of `plain` and `prefect` so warm-up effects hit both alike. All runs share one
Prefect API (a temporary local server, started once and timed separately).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="llmpath-bench-prefect-"))
os.environ.setdefault("PREFECT_LOCAL_STORAGE_PATH", str(Path(os.environ["PREFECT_HOME"]) / "storage"))
os.environ["BENTOML_HOME"] = tempfile.mkdtemp(prefix="llmpath-bench-bentoml-")

from llmpath import settings  # noqa: E402

settings.apply_defaults()
settings.set_hub_access(False)


def timed(fn) -> tuple[float, object]:
    started = time.perf_counter()
    out = fn()
    return time.perf_counter() - started, out


def one_round(recipe, index: int) -> dict[str, float]:
    from flows.classify import classify, stages

    def fresh_home() -> None:
        os.environ["LLMPATH_HOME"] = tempfile.mkdtemp(prefix="llmpath-bench-home-")
        os.environ.pop("MLFLOW_TRACKING_URI", None)

    out: dict[str, float] = {}
    order = ("plain", "prefect") if index % 2 == 0 else ("prefect", "plain")
    for mode in order:
        fresh_home()
        if mode == "plain":
            out["plain"], _ = timed(lambda: stages(recipe, plain=True))
        else:
            out["prefect"], summary = timed(lambda: classify(recipe))
            out["cached"], cached = timed(lambda: classify(recipe))
            reused = [k for k, v in cached.items() if k.startswith("stage ") and v.startswith("cached")]
            out["cached_stages"] = len(reused)
    print(f"round {index + 1}: " + ", ".join(f"{k} {v:.1f}s" for k, v in out.items() if k != "cached_stages"))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--recipe", default=str(HERE.parent / "recipes" / "classify-sst2-smoke.yaml"))
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", default=str(HERE / "results" / "orchestration"))
    args = parser.parse_args()

    from prefect import flow

    from llmpath.recipes import load_recipe

    recipe = load_recipe(args.recipe)

    @flow
    def hello() -> int:
        return 1

    server_seconds, _ = timed(hello)  # starts the temporary Prefect server once
    rounds = [one_round(recipe, i) for i in range(args.rounds)]
    med = {k: statistics.median(r[k] for r in rounds) for k in ("plain", "prefect", "cached")}
    result = {
        "recipe": recipe.name,
        "rounds": rounds,
        "median_seconds": med,
        "prefect_overhead_ratio": med["prefect"] / med["plain"],
        "cached_rerun_ratio": med["cached"] / med["prefect"],
        "prefect_server_start_seconds": server_seconds,
        "cached_stages": rounds[0]["cached_stages"],
        "machine": f"{os.cpu_count()} CPU cores",
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2))
    lines = [
        f"Recipe `{recipe.name}`, {args.rounds} rounds, medians; {result['machine']}.",
        "",
        "| run | wall s | ratio |",
        "|---|---|---|",
        f"| plain Python (stage functions, no Prefect) | {med['plain']:.1f} | 1.00 |",
        f"| Prefect flow, first run | {med['prefect']:.1f} | {result['prefect_overhead_ratio']:.2f} x plain |",
        f"| Prefect flow, unchanged re-run ({result['cached_stages']} stages cached) | {med['cached']:.1f} "
        f"| {result['cached_rerun_ratio']:.2f} x first run |",
        "",
        f"Temporary Prefect server start (once, not in the figures above): {server_seconds:.1f} s.",
    ]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
