"""Shot log: `log verify` over N shots against a plain SELECT scan of the same rows, and
record_many (group commit, 100 shots a commit) against plain INSERTs with the same commits.

Full run: 1,000,000 shots (building them takes a minute); --quick: 20,000."""

from __future__ import annotations

import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

from drivers.protocol import Param
from laserctl.records import ShotContext, open_store
from laserctl.shotrecord import ShotRecord

CONTEXT = ShotContext(
    "FR-00001",
    "fractional-1550",
    "1.4.0",
    "builtin-fractional-1550-conservative",
    "ab" * 32,
    tuple((name, "closed") for name in ("key", "door", "estop", "cooling", "eyewear", "link")),
)
BATCH = 100


def _shot(sid: str, n: int) -> ShotRecord:
    return ShotRecord(
        sid,
        "plan",
        "abdomen",
        7,
        n,
        n * 66_000,
        Param.ENERGY_MJ,
        12.0,
        11.9 + (n % 40) / 100,
        1800,
        ((Param.ENERGY_MJ, 12.0), (Param.DENSITY_PCT, 8.0), (Param.DEPTH_UM, 600.0)),
        False,
        True,
        0.58,
        0.0,
    )


def run(*, quick: bool = False) -> list[dict[str, Any]]:
    total = 20_000 if quick else 1_000_000
    timed = 20_000
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(Path(tmp) / "bench.db")
        sid = store.begin_session("P-0001", "abdomen", context=lambda: CONTEXT)
        start = time.perf_counter()
        for first in range(1, timed + 1, BATCH):
            store.record_many(_shot(sid, n) for n in range(first, first + BATCH))
        record_s = time.perf_counter() - start
        for first in range(timed + 1, total + 1, 10_000):
            store.record_many(_shot(sid, n) for n in range(first, min(first + 10_000, total + 1)))
        bodies = [r[0] for r in store.query("SELECT body FROM shots ORDER BY id LIMIT ?", (timed,))]

        start = time.perf_counter()
        report = store.verify()
        verify_s = time.perf_counter() - start
        assert report.ok and report.records["shots"] == total
        store.close()

        db = sqlite3.connect(Path(tmp) / "bench.db")
        start = time.perf_counter()
        count = sum(1 for _ in db.execute("SELECT id, body, hash FROM shots ORDER BY id"))
        scan_s = time.perf_counter() - start
        assert count == total
        db.close()

        plain = sqlite3.connect(Path(tmp) / "plain.db", isolation_level=None)
        plain.execute("PRAGMA journal_mode = WAL")
        plain.execute("PRAGMA synchronous = FULL")
        plain.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT)")
        start = time.perf_counter()
        for first in range(0, timed, BATCH):
            plain.execute("BEGIN")
            plain.executemany(
                "INSERT INTO t (body) VALUES (?)", ((b,) for b in bodies[first : first + BATCH])
            )
            plain.execute("COMMIT")
        plain_s = time.perf_counter() - start
        plain.close()

    verify_rate, scan_rate = total / verify_s, total / scan_s
    record_rate, plain_rate = timed / record_s, timed / plain_s
    return [
        {
            "name": f"log verify rows/s ({total} shots)",
            "value": verify_rate,
            "unit": "rows/s",
            "baseline": scan_rate,
            "baseline_name": "SELECT id, body, hash scan",
            "ratio": verify_rate / scan_rate,
            "target": "1M shots in a few seconds",
        },
        {
            "name": f"record_many rows/s ({BATCH} shots a commit, WAL+FULL)",
            "value": record_rate,
            "unit": "rows/s",
            "baseline": plain_rate,
            "baseline_name": "plain INSERT, same commits",
            "ratio": record_rate / plain_rate,
        },
    ]
