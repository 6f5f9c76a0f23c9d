"""Serving under load: each Bento (classifier, rag /search, chat) at concurrency 1, 16 and 64 for a bounded
number of requests, and the classifier with BentoML's adaptive batching against the same Bento with it off.

Usage: python bench/serving_load.py [--requests 400] [--chat-requests 48] [--levels 1,16,64] [--home DIR]
                                    [--reuse] [--out bench/results]
Needs LLMPATH_DATA_DIR (sst2/, squad-v1.1-subset/, alpaca/). Writes bench/results/serving_load.{json,md};
BENCHMARKS.md quotes the table this prints.

The Bentos are the real packaged ones: the smoke recipes (classify-sst2-smoke, rag-squad-smoke,
chat-alpaca-smoke) are run with `llmpath run` into a project home and BentoML store of their own (a temporary
folder, or --home; with --reuse an existing Bento of the recipe's name in that store is served as it is).
Each Bento is served by `bentoml serve` on a free loopback port. Per level: a few warm-up requests, then
`--requests` requests (`--chat-requests` for chat) with at most `concurrency` in flight, each a fresh real
input (SST-2 dev sentences one per request, SQuAD questions with k=5, Alpaca instructions answered in 8 tokens).
Throughput is answered requests over wall time; latency is per request, client side; an error is any answer
that is not 2xx, or none.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BIN = Path(sys.executable).parent
CHAT_TOKENS = 8
WARMUP = 8
# service -> (recipe, Bento name, route)
SERVICES = {
    "classifier": ("classify-sst2-smoke.yaml", "llmpath-classifier", "/classify"),
    "rag": ("rag-squad-smoke.yaml", "llmpath-rag", "/search"),
    "chat": ("chat-alpaca-smoke.yaml", "llmpath-chat", "/v1/chat/completions"),
}


def inputs(data: Path) -> dict[str, list[dict]]:
    """Real request bodies per service, from the datasets the recipes train and index on."""
    with (data / "sst2" / "dev.tsv").open(newline="") as f:
        sentences = [row["sentence"] for row in csv.DictReader(f, delimiter="\t")]
    squad = json.loads((data / "squad-v1.1-subset" / "dev-v1.1.json").read_text())
    questions = [qa["question"] for a in squad["data"] for p in a["paragraphs"] for qa in p["qas"]]
    alpaca = json.loads((data / "alpaca" / "alpaca_200.json").read_text())
    return {
        "classifier": [{"texts": [s]} for s in sentences],
        "rag": [{"query": q, "k": 5} for q in questions],
        "chat": [
            {
                "model": "llmpath-chat",
                "messages": [{"role": "user", "content": r["instruction"]}],
                "max_tokens": CHAT_TOKENS,
            }
            for r in alpaca
        ],
    }


def newest_bento(name: str) -> str | None:
    out = subprocess.run(
        [str(BIN / "bentoml"), "list", name, "-o", "json"], capture_output=True, text=True, env=os.environ
    )
    if out.returncode != 0 or not out.stdout.strip():
        return None
    bentos = [b for b in json.loads(out.stdout) if b["tag"].startswith(f"{name}:")]
    return max(bentos, key=lambda b: b["creation_time"])["tag"] if bentos else None


def ensure_bento(service: str, reuse: bool, logs: Path) -> str:
    recipe, name, _ = SERVICES[service]
    if reuse and (tag := newest_bento(name)):
        print(f"{service}: reusing {tag}")
        return tag
    print(f"{service}: llmpath run recipes/{recipe} ...", flush=True)
    started = time.perf_counter()
    with (logs / f"run-{service}.log").open("w") as log:
        done = subprocess.run(
            [str(BIN / "llmpath"), "run", f"recipes/{recipe}"], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
        )
    tag = newest_bento(name)
    if done.returncode != 0 or tag is None:
        raise SystemExit(
            f"{service}: `llmpath run recipes/{recipe}` failed; see {logs / f'run-{service}.log'}"
        )
    print(f"{service}: built {tag} in {time.perf_counter() - started:.0f} s")
    return tag


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Served:
    """`bentoml serve TAG` on a free loopback port until the `with` block ends (the whole process group)."""

    def __init__(self, tag: str, log: Path, env: dict[str, str] | None = None):
        self.tag, self.log, self.env = tag, log, env or {}

    def __enter__(self) -> str:
        import httpx

        port = free_port()
        self.base = f"http://127.0.0.1:{port}"
        with self.log.open("w") as out:
            self.proc = subprocess.Popen(
                [str(BIN / "bentoml"), "serve", self.tag, "--host", "127.0.0.1", "--port", str(port)],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=os.environ | self.env,
                start_new_session=True,
            )
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"bentoml serve {self.tag} exited; see {self.log}")
            try:
                if httpx.get(f"{self.base}/readyz", timeout=2).status_code == 200:
                    return self.base
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        self.__exit__()
        raise SystemExit(f"bentoml serve {self.tag} not ready in 300 s; see {self.log}")

    def __exit__(self, *_) -> None:
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)


async def load(base: str, route: str, bodies: list[dict], concurrency: int) -> dict:
    """Send `bodies` with at most `concurrency` in flight; throughput, latency percentiles, errors."""
    import httpx

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, timeout=600, limits=limits) as client:
        gate = asyncio.Semaphore(concurrency)
        statuses: dict[str, int] = {}
        latencies: list[float] = []

        async def one(body: dict) -> None:
            async with gate:
                started = time.perf_counter()
                try:
                    status = str((await client.post(route, json=body)).status_code)
                except httpx.HTTPError as err:
                    status = type(err).__name__
                latencies.append(time.perf_counter() - started)
                statuses[status] = statuses.get(status, 0) + 1

        started = time.perf_counter()
        await asyncio.gather(*(one(b) for b in bodies))
        wall = time.perf_counter() - started
    ok = sum(n for s, n in statuses.items() if s.startswith("2"))
    ms = np.asarray(latencies) * 1000
    return {
        "concurrency": concurrency,
        "requests": len(bodies),
        "wall_s": round(wall, 2),
        "throughput_rps": round(ok / wall, 1),
        "p50_ms": round(float(np.percentile(ms, 50)), 1),
        "p99_ms": round(float(np.percentile(ms, 99)), 1),
        "errors": len(bodies) - ok,
        "statuses": statuses,
    }


def bench_service(label, tag, route, bodies, n, levels, logs, env=None) -> list[dict]:
    rows = []
    with Served(tag, logs / f"serve-{label.split()[0]}-{len(env or {})}.log", env) as base:
        asyncio.run(load(base, route, bodies[:WARMUP], 1))  # warm-up: first calls, batcher's estimates
        offset = WARMUP
        for level in levels:
            picked = [bodies[(offset + i) % len(bodies)] for i in range(n)]
            offset += n
            row = {"service": label, "route": route} | asyncio.run(load(base, route, picked, level))
            print(
                f"{label:22} c={level:<3} {row['throughput_rps']:8.1f} req/s  p50 {row['p50_ms']:8.1f} ms  "
                f"p99 {row['p99_ms']:8.1f} ms  errors {row['errors']}",
                flush=True,
            )
            rows.append(row)
    return rows


def markdown(rows: list[dict], ratio: float | None, meta: dict) -> str:
    lines = [
        f"Serving load ({meta['date']}, {meta['cpus']} CPUs, shared host): client-side, {WARMUP} warm-up "
        "requests per server first.",
        "",
        "| service | route | concurrency | requests | req/s | p50 ms | p99 ms | errors |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['service']} | {r['route']} | {r['concurrency']} | {r['requests']} | {r['throughput_rps']} "
            f"| {r['p50_ms']} | {r['p99_ms']} | {r['errors']} |"
        )
    if ratio is not None:
        lines += ["", f"Batched / unbatched classifier throughput at concurrency 16: {ratio:.2f}x"]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=400, help="requests per level (classifier, search)")
    parser.add_argument("--chat-requests", type=int, default=48, help="requests per level (chat)")
    parser.add_argument("--levels", default="1,16,64")
    parser.add_argument("--services", default="classifier,rag,chat")
    parser.add_argument("--home", type=Path, help="project home + BentoML store (default: a temp folder)")
    parser.add_argument("--reuse", action="store_true", help="serve an existing Bento of each recipe's name")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    data = os.environ.get("LLMPATH_DATA_DIR")
    if not data or not (Path(data) / "sst2" / "dev.tsv").is_file():
        raise SystemExit("set LLMPATH_DATA_DIR to the datasets folder (sst2/, squad-v1.1-subset/, alpaca/)")
    levels = [int(x) for x in args.levels.split(",")]
    services = args.services.split(",")
    home = args.home or Path(tempfile.mkdtemp(prefix="llmpath-bench-serving-"))
    home.mkdir(parents=True, exist_ok=True)
    os.environ["LLMPATH_HOME"] = str(home)
    os.environ["BENTOML_HOME"] = str(home / "bentoml")
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    logs = home / "logs"
    logs.mkdir(exist_ok=True)
    bodies = inputs(Path(data))
    rows: list[dict] = []
    try:
        tags = {s: ensure_bento(s, args.reuse, logs) for s in services}
        for service in services:
            _, _, route = SERVICES[service]
            n = args.chat_requests if service == "chat" else args.requests
            if service == "classifier":
                rows += bench_service(
                    "classifier (batched)", tags[service], route, bodies[service], n, levels, logs
                )
                rows += bench_service(
                    "classifier (unbatched)",
                    tags[service],
                    route,
                    bodies[service],
                    n,
                    levels,
                    logs,
                    {"LLMPATH_BATCHING": "0"},
                )
            else:
                label = "rag search" if service == "rag" else "chat"
                rows += bench_service(label, tags[service], route, bodies[service], n, levels, logs)
    finally:
        if args.home is None:
            shutil.rmtree(home, ignore_errors=True)
    by = {(r["service"], r["concurrency"]): r["throughput_rps"] for r in rows}
    unbatched = by.get(("classifier (unbatched)", 16))
    ratio = by[("classifier (batched)", 16)] / unbatched if unbatched else None
    meta = {
        "date": time.strftime("%Y-%m-%d"),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "command": "python bench/serving_load.py " + " ".join(sys.argv[1:]),
    }
    result = meta | {"rows": rows, "batched_vs_unbatched_at_16": ratio}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "serving_load.json").write_text(json.dumps(result, indent=2) + "\n")
    table = markdown(rows, ratio, meta)
    (args.out / "serving_load.md").write_text(table)
    print("\n" + table)
    return 0 if all(r["errors"] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
