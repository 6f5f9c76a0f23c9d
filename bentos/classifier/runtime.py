"""ONNX Runtime text classifier: tokenizer + one InferenceSession. No Prefect, no MLflow, no torch."""

from __future__ import annotations

import json
import logging
import platform
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

SUB_BATCH = 8  # texts per ONNX Runtime call, sorted by length (see predict_proba)
# Beside an int8 model: which CPU family its int8 configuration was chosen for, and why.
QUANTIZATION_FILE = "quantization.json"
# x86 instructions that multiply u8 activations by s8 weights in 32-bit sums. Without one of them ONNX Runtime's
# u8/s8 kernels sum pairs in 16 bits (vpmaddubsw), which can saturate and change results.
VNNI_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})
logger = logging.getLogger("llmpath.classifier")


def _cpuinfo_field(names: tuple[str, ...], cpuinfo: str | None) -> str | None:
    """The first value of one of `names` in /proc/cpuinfo (Linux) or the given text; None if absent."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
        except OSError:
            return None
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in names:
            return value.strip()
    return None


def cpu_flags(cpuinfo: str | None = None) -> frozenset[str]:
    """The host CPU's feature flags (x86 `flags`, arm64 `Features`); empty where they cannot be read."""
    return frozenset((_cpuinfo_field(("flags", "Features"), cpuinfo) or "").split())


def cpu_name(cpuinfo: str | None = None) -> str:
    """The CPU's model name, for the records (BENCHMARKS.md and the int8 choice say which CPU they come from)."""
    return _cpuinfo_field(("model name",), cpuinfo) or platform.processor() or "unknown"


def int8_profile(machine: str | None = None, flags: Iterable[str] | None = None) -> tuple[str, str]:
    """The int8 configuration for a CPU: (optimum's AutoQuantizationConfig name, why).

    - arm64: s8 weights (its dot-product instructions take them).
    - x86 with VNNI or AMX: u8 activations x s8 weights, which these instructions sum in 32 bits: measured on a
      2-core AVX-512 VNNI + AMX Xeon, 1.5x faster per text than u8/u8 (BENCHMARKS.md).
    - any other x86 (AVX2, AVX-512 without VNNI): u8/u8, because u8/s8 there can saturate.
    """
    machine = (machine or platform.machine()).lower()
    if machine in ("arm64", "aarch64"):
        return "arm64", f"{machine} CPU: s8 weights for its int8 dot-product instructions"
    flags = cpu_flags() if flags is None else frozenset(flags)
    vnni = sorted(VNNI_FLAGS & flags)
    if vnni:
        return "avx512_vnni", f"x86 CPU with {', '.join(vnni)}: u8 activations x s8 weights, 32-bit sums"
    return "avx2", "x86 CPU without VNNI: u8/u8 weights (u8/s8 can saturate in 16-bit sums there)"


def check_int8_host(folder: Path) -> dict | None:
    """What an int8 folder was quantized for; a warning when this CPU is not one its config is safe on: s8
    weights (chosen for VNNI or for arm64) on an x86 CPU without VNNI."""
    path = folder / QUANTIZATION_FILE
    if not path.is_file():
        return None
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError):
        info = None
    if not isinstance(info, dict):
        logger.warning("%s: unreadable; the int8 configuration is unknown", path)
        return None
    here, _ = int8_profile()
    if info.get("weights") == "QInt8" and here == "avx2":
        logger.warning(
            "This int8 model has s8 weights (quantized for %s) and this x86 CPU has no VNNI: its results may "
            "differ from the parity check's. Re-export it on this host (export.int8_for: auto) or with "
            "export.int8_for: avx2.",
            info.get("profile", "another CPU"),
        )
    return info


def find_onnx(folder: Path) -> Path:
    """The one ONNX file in an exported folder (optimum names the quantized one model_quantized.onnx)."""
    files = sorted(folder.glob("*.onnx"))
    if len(files) != 1:
        raise FileNotFoundError(f"{folder}: expected one .onnx file, found {[f.name for f in files]}")
    return files[0]


class OnnxTextClassifier:
    def __init__(self, folder: str | Path, max_length: int = 128, threads: int | None = None):
        import onnxruntime as ort
        from transformers import AutoTokenizer

        folder = Path(folder)
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(
            str(find_onnx(folder)), options, providers=["CPUExecutionProvider"]
        )
        self.inputs = {i.name for i in self.session.get_inputs()}
        self.quantization = check_int8_host(folder)
        self.tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=False)
        config = json.loads((folder / "config.json").read_text())
        id2label = config.get("id2label") or {}
        self.labels = [id2label.get(str(i), str(i)) for i in range(len(id2label))]
        self.max_length = max_length

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Class probabilities, [len(texts), labels]. Texts run in groups of similar token length: padding a
        whole batch to its longest text made a batch of 32 SST-2 sentences cost twice as much per text as one
        at a time (measured on 2 cores); sorted groups of SUB_BATCH cost less per text than single texts."""
        enc = self.tokenizer(list(texts), truncation=True, max_length=self.max_length)
        names = [k for k in enc if k in self.inputs]
        order = sorted(range(len(texts)), key=lambda i: len(enc["input_ids"][i]))
        out = np.zeros((len(texts), len(self.labels)), dtype=np.float64)
        for start in range(0, len(order), SUB_BATCH):
            idx = order[start : start + SUB_BATCH]
            width = max(len(enc["input_ids"][i]) for i in idx)
            feed = {}
            for name in names:
                pad = self.tokenizer.pad_token_id if name == "input_ids" else 0
                rows = [list(enc[name][i]) + [pad] * (width - len(enc[name][i])) for i in idx]
                feed[name] = np.asarray(rows, dtype=np.int64)
            out[idx] = self.session.run(None, feed)[0].astype(np.float64)
        out -= out.max(axis=-1, keepdims=True)
        exp = np.exp(out)
        return exp / exp.sum(axis=-1, keepdims=True)

    def predict_proba_batched(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        parts = [self.predict_proba(texts[i : i + batch_size]) for i in range(0, len(texts), batch_size)]
        return np.concatenate(parts) if parts else np.zeros((0, len(self.labels)))

    def classify(self, texts: Sequence[str]) -> list[dict]:
        probs = self.predict_proba(texts)
        best = probs.argmax(axis=-1)
        return [{"label": self.labels[i], "score": float(p[i])} for i, p in zip(best, probs, strict=True)]
