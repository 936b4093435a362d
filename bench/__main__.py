"""Run the benchmarks, write bench/results.json and print a markdown table.

python -m bench            # full run
python -m bench --quick    # a short smoke run (CI): checks it runs and writes results
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

from . import codec, fleet, logverify, pipeline, reaction, roundtrip, soak, startup

SUITES = {
    "codec": codec.run,
    "logverify": logverify.run,
    "fleet": fleet.run,
    "roundtrip": roundtrip.run,
    "startup": startup.run,
    "pipeline": pipeline.run,
    "reaction": reaction.run,
    "soak": soak.run,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--quick", action="store_true", help="short smoke run")
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("results.json"))
    parser.add_argument("--only", choices=sorted(SUITES), action="append")
    args = parser.parse_args(argv)
    results = []
    for name in args.only or list(SUITES):
        results.extend(SUITES[name](quick=args.quick))
    report = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "quick": args.quick,
        "results": results,
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print("| benchmark | value | baseline | ratio | target |")
    print("|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['name']} | {r['value']:.4g} {r['unit']} | {r['baseline']:.4g} {r['unit']} "
            f"({r['baseline_name']}) | {r['ratio']:.2f} | {r.get('target', '')} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
