"""The benchmarks run and write their results (a smoke run; tests never assert times)."""

from __future__ import annotations

import json
from pathlib import Path

from bench.__main__ import main


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
