"""The benchmarks run and write their results (a smoke run; tests never assert times)."""

from __future__ import annotations

import json
from pathlib import Path

from bench.__main__ import SUITES, main


def test_bench_quick_writes_results(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    assert main(["--quick", "--only", "codec", "--only", "roundtrip", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    names = {r["name"] for r in report["results"]}
    assert "codec frames/s (encode+decode SHOT)" in names
    assert any(name.startswith("command round trip") for name in names)
    for r in report["results"]:
        assert r["value"] > 0 and r["baseline"] > 0
        assert abs(r["ratio"] - r["value"] / r["baseline"]) < 1e-9


def test_every_suite_runs_quick_and_writes_each_figure_with_its_baseline(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    others = sorted(set(SUITES) - {"codec", "roundtrip"})
    args = ["--quick", "--out", str(out)]
    for name in others:
        args += ["--only", name]
    assert main(args) == 0
    report = json.loads(out.read_text())
    assert report["quick"] is True
    names = [r["name"] for r in report["results"]]
    for prefix in (
        "end-to-end durable shots/s",
        "interlock event received -> DISARM written, p50",
        "interlock event received -> DISARM written, p99",
        "host ESTOP written -> simulator emission stopped, p99",
        "runner.estop() called, owner thread busy -> ESTOP written, p99",
        "controller RSS after",
        "Python allocated blocks after",
        "log verify rows/s",
        "fleet push rows/s",
        "laserctl --help start-up",
    ):
        assert any(n.startswith(prefix) for n in names), (prefix, names)
    for r in report["results"]:
        assert r["value"] > 0 and r["baseline"] > 0 and r["baseline_name"] and r["unit"]
        assert abs(r["ratio"] - r["value"] / r["baseline"]) < 1e-9
