"""`laserctl log export` and `laserctl report`: a session's shots as CSV and JSON, and a
self-contained HTML report with the set/measured plot, dose per area and faults."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from drivers.protocol import Param
from laserctl.cli import main
from laserctl.records import ShotContext, open_store
from laserctl.shotrecord import ShotRecord

CONTEXT = ShotContext(
    "FR-00001",
    "fractional-1550",
    "1.4.0",
    "builtin-fractional-1550-conservative",
    "22" * 32,
    (("key", "closed"), ("door", "closed")),
)


@pytest.fixture
def session(tmp_path: Path) -> tuple[Path, str]:
    db = tmp_path / "log.db"
    store = open_store(db, tz=dt.UTC)
    sid = store.begin_session("P-0042", "abdomen", operator="op-kim", context=lambda: CONTEXT)
    measured = [12.1, 11.8, 13.5, 12.0, 14.6]  # shot 3 +12.5 % (warning), shot 5 +21.7 %
    store.record_many(
        ShotRecord(
            sid,
            "plan",
            "abdomen",
            5,
            n,
            n * 66_000,
            Param.ENERGY_MJ,
            12.0,
            m,
            1800,
            ((Param.ENERGY_MJ, 12.0), (Param.DENSITY_PCT, 8.0 if n < 4 else 10.0)),
            False,
            True,
            0.75,
            0.0,
        )
        for n, m in enumerate(measured, start=1)
    )
    store.log_event("warning", "shot 3: measured 13.5 mJ against 12 set, +12.5 %", session_id=sid)
    store.log_event("fault", "shot 5: measured 14.6 mJ, beyond +-20 % (SR-06)", session_id=sid)
    store.end_session(sid, {"final_state": "FAULT"})
    store.close()
    return db, sid


def test_export_csv_has_one_row_per_shot_with_parameters_and_interlocks(
    session: tuple[Path, str],
) -> None:
    db, sid = session
    result = CliRunner().invoke(
        main, ["log", "export", "--session", sid, "--format", "csv", "--db", str(db)]
    )
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.output)))
    assert [r["shot_no"] for r in rows] == ["1", "2", "3", "4", "5"]
    assert rows[0]["serial"] == "FR-00001" and rows[0]["profile_hash"] == "22" * 32
    assert rows[0]["param_density_pct"] == "8.0" and rows[4]["param_density_pct"] == "10.0"
    assert rows[2]["interlocks"] == "door=closed;key=closed"
    assert rows[2]["deviation_pct"] == "12.5" and rows[0]["patient"] == "P-0042"


def test_export_json_has_the_session_its_shots_and_events(
    session: tuple[Path, str], tmp_path: Path
) -> None:
    db, sid = session
    out = tmp_path / "s.json"
    result = CliRunner().invoke(
        main,
        ["log", "export", "--session", sid, "--format", "json", "--db", str(db), "--out", str(out)],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["session"]["shots_logged"] == 5 and data["session"]["ended"] is True
    assert data["session"]["fluence_j_cm2"] == pytest.approx(3.75)
    assert [e["kind"] for e in data["events"]][-3:] == ["warning", "fault", "session_end"]
    unknown = CliRunner().invoke(main, ["log", "export", "--session", "S-x", "--db", str(db)])
    assert unknown.exit_code == 1 and "no session S-x" in unknown.output


def test_report_is_self_contained_html_with_plot_dose_and_faults(
    session: tuple[Path, str], tmp_path: Path
) -> None:
    db, sid = session
    out = tmp_path / "r.html"
    result = CliRunner().invoke(main, ["report", sid, "--db", str(db), "--out", str(out)])
    assert result.exit_code == 0, result.output
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>")
    assert "<script" not in page and not re.search(r"(src|href)=[\"']https?:", page)
    svg = page[page.index("<svg") : page.index("</svg>")]
    assert svg.count("<circle") == 5
    assert 'class="warn"' in svg and 'class="fault"' in svg  # shot 3 and shot 5
    assert "fault-band" in svg and "warn-band" in svg
    for text in (
        sid,
        "P-0042",
        "abdomen",
        "FR-00001",
        "22" * 32,
        "op-kim",
        "3.750",
        "beyond +-20 % (SR-06)",
        "Intact",
        "shots:5:",
        "1..3",
        "4..5",
    ):
        assert text in page, text
    stdout = CliRunner().invoke(main, ["report", sid, "--db", str(db), "--out", "-"])
    assert stdout.output.startswith("<!DOCTYPE html>")
