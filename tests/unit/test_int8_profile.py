"""Which int8 configuration a CPU gets, and the warning when an int8 model meets a CPU it is not safe on."""

from __future__ import annotations

import json
import logging

import pytest

from bentos.classifier import runtime
from bentos.classifier.runtime import check_int8_host, cpu_flags, cpu_name, int8_profile

CPUINFO = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu sse2 avx avx2 fma avx512f avx512bw avx512_vnni amx_int8
"""


def test_cpuinfo_is_parsed():
    assert {"avx2", "avx512_vnni", "amx_int8"} <= cpu_flags(CPUINFO)
    assert cpu_name(CPUINFO) == "Intel(R) Xeon(R) Platinum 8480+"
    assert cpu_flags("processor : 0\n") == frozenset()
    # arm64 Linux calls them Features
    assert "asimddp" in cpu_flags("processor : 0\nFeatures : fp asimd asimddp\n")


@pytest.mark.parametrize(
    ("machine", "flags", "profile"),
    [
        ("x86_64", {"avx2", "avx512f", "avx512_vnni"}, "avx512_vnni"),
        ("x86_64", {"avx2", "amx_int8"}, "avx512_vnni"),
        ("x86_64", {"avx2", "avx_vnni"}, "avx512_vnni"),  # client CPUs: VNNI on 256-bit registers
        ("x86_64", {"avx2", "avx512f", "avx512bw"}, "avx2"),  # AVX-512 without VNNI: u8/s8 can saturate
        ("x86_64", {"avx2"}, "avx2"),
        ("x86_64", set(), "avx2"),  # flags unreadable: the configuration that is safe everywhere
        ("aarch64", set(), "arm64"),
        ("arm64", set(), "arm64"),
    ],
)
def test_profile_by_cpu(machine, flags, profile):
    chosen, why = int8_profile(machine, flags)
    assert chosen == profile and why


def test_a_vnni_model_on_a_cpu_without_vnni_is_warned_about(tmp_path, monkeypatch, caplog):
    (tmp_path / "quantization.json").write_text(json.dumps({"profile": "avx512_vnni", "weights": "QInt8"}))
    monkeypatch.setattr(runtime, "cpu_flags", lambda *_: frozenset({"avx2"}))
    monkeypatch.setattr(runtime.platform, "machine", lambda: "x86_64")
    with caplog.at_level(logging.WARNING, "llmpath.classifier"):
        assert check_int8_host(tmp_path)["weights"] == "QInt8"
    assert "export.int8_for: avx2" in caplog.text
    caplog.clear()
    # s8 weights chosen on an arm64 host are as unsafe on this CPU
    (tmp_path / "quantization.json").write_text(json.dumps({"profile": "arm64", "weights": "QInt8"}))
    with caplog.at_level(logging.WARNING, "llmpath.classifier"):
        check_int8_host(tmp_path)
    assert "quantized for arm64" in caplog.text
    caplog.clear()
    # u8/u8 weights are safe on every x86 CPU
    (tmp_path / "quantization.json").write_text(json.dumps({"profile": "avx2", "weights": "QUInt8"}))
    with caplog.at_level(logging.WARNING, "llmpath.classifier"):
        check_int8_host(tmp_path)
    assert caplog.text == ""
    (tmp_path / "quantization.json").write_text(json.dumps({"profile": "avx512_vnni", "weights": "QInt8"}))
    monkeypatch.setattr(runtime, "cpu_flags", lambda *_: frozenset({"avx2", "avx512_vnni"}))
    with caplog.at_level(logging.WARNING, "llmpath.classifier"):
        check_int8_host(tmp_path)
    assert caplog.text == ""


def test_no_or_unreadable_record_is_not_an_error(tmp_path, caplog):
    assert check_int8_host(tmp_path) is None  # fp32 forms and int8 models from before the record existed
    (tmp_path / "quantization.json").write_text("{not json")
    with caplog.at_level(logging.WARNING, "llmpath.classifier"):
        assert check_int8_host(tmp_path) is None
    assert "unreadable" in caplog.text and "not json" not in caplog.text
    (tmp_path / "quantization.json").write_text("[1, 2]")  # JSON, but not the record's shape
    with caplog.at_level(logging.WARNING, "llmpath.classifier"):
        assert check_int8_host(tmp_path) is None
