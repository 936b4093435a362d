"""The session report: one self-contained HTML file (inline CSS and SVG, no script, nothing
fetched), for the patient file and for an audit years later.

Sections: session and handpiece; parameters used; set against measured dose per shot (SVG,
with the +-10 % warning and +-20 % fault bands of SR-06); dose per area in this session and in
the course; faults, warnings, refusals and overrides; the state of the log's hash chains and
the anchor to keep.
"""

from __future__ import annotations

import html
import time
from collections.abc import Sequence
from typing import Any

from .export import SessionData, iso, session_data
from .store import RecordStore
from .verify import VerifyReport

NOTABLE = ("fault", "warning", "refusal", "override", "resume", "service", "estop")


def render_report(store: RecordStore, session_id: str, *, verify: bool = True) -> str:
    data = session_data(store, session_id)
    history = store.history(data.info.patient)
    check = store.verify() if verify else None
    return render(data, history_rows(data, history), check, generated_at=time.time())


def history_rows(data: SessionData, history: Sequence[Any]) -> list[dict[str, Any]]:
    return [
        {
            "session": s.session_id,
            "course": s.course,
            "area": s.area,
            "date": iso(s.started)[:10],
            "shots": s.shots,
            "fluence": s.fluence_j_cm2,
            "this": s.session_id == data.info.session_id,
        }
        for s in history
        if s.area == data.info.area and s.course == data.info.course
    ]


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value))


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _param_runs(shots: Sequence[dict[str, Any]]) -> list[tuple[int, int, int, str]]:
    """Consecutive shots with the same parameters: (first, last, count, parameters)."""
    runs: list[tuple[int, int, int, str]] = []
    for shot in shots:
        text = ", ".join(f"{k} {v:g}" for k, v in sorted(shot["params"].items()))
        if runs and runs[-1][3] == text:
            first, _, count, _ = runs[-1]
            runs[-1] = (first, shot["shot_no"], count + 1, text)
        else:
            runs.append((shot["shot_no"], shot["shot_no"], 1, text))
    return runs


def energy_plot(shots: Sequence[dict[str, Any]], width: int = 860, height: int = 300) -> str:
    """Set (line) and measured (points) dose per shot, with the +-10 % and +-20 % bands."""
    if not shots:
        return "<p>No shots were logged in this session.</p>"
    unit = shots[0]["dose_param"]
    left, right, top, bottom = 60, 16, 14, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    values = [v for s in shots for v in (s["set"] * 1.25, s["set"] * 0.75, s["measured"])]
    lo, hi = 0.0, max(values) or 1.0
    n = len(shots)

    def x(i: float) -> float:
        return left + (plot_w * (i + 0.5) / n)

    def y(v: float) -> float:
        return float(top + plot_h * (1 - (v - lo) / (hi - lo)))

    def band(scale_lo: float, scale_hi: float, css: str) -> str:
        upper = [f"{x(i):.1f},{y(s['set'] * scale_hi):.1f}" for i, s in enumerate(shots)]
        lower = [f"{x(i):.1f},{y(s['set'] * scale_lo):.1f}" for i, s in enumerate(shots)]
        points = " ".join(upper + lower[::-1])
        return f'<polygon class="{css}" points="{points}"/>'

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="set and measured {_e(unit)} '
        'per shot">',
        band(0.8, 1.2, "fault-band"),
        band(0.9, 1.1, "warn-band"),
    ]
    for k in range(6):
        v = lo + (hi - lo) * k / 5
        parts.append(
            f'<line class="grid" x1="{left}" x2="{width - right}" y1="{y(v):.1f}" '
            f'y2="{y(v):.1f}"/><text x="{left - 6}" y="{y(v) + 4:.1f}" '
            f'text-anchor="end">{v:.3g}</text>'
        )
    step = max(1, n // 8)
    for i in range(0, n, step):
        parts.append(
            f'<text x="{x(i):.1f}" y="{height - bottom + 16}" text-anchor="middle">'
            f"{shots[i]['shot_no']}</text>"
        )
    set_line = " ".join(f"{x(i):.1f},{y(s['set']):.1f}" for i, s in enumerate(shots))
    parts.append(f'<polyline class="set" points="{set_line}"/>')
    radius = 2.5 if n <= 500 else 1.2
    for i, s in enumerate(shots):
        dev = abs(s["deviation_pct"] or 0.0)
        css = "fault" if dev > 20 else "warn" if dev > 10 else "ok"
        parts.append(
            f'<circle class="{css}" cx="{x(i):.1f}" cy="{y(s["measured"]):.1f}" r="{radius}">'
            f"<title>shot {s['shot_no']}: set {s['set']:g}, measured {s['measured']:g} "
            f"({s['deviation_pct']:+.1f} %)</title></circle>"
            if s["deviation_pct"] is not None
            else ""
        )
    parts.append(
        f'<text x="{left + plot_w / 2:.0f}" y="{height - 6}" text-anchor="middle">'
        f"device shot number</text>"
        f'<text x="14" y="{top + plot_h / 2:.0f}" text-anchor="middle" '
        f'transform="rotate(-90 14 {top + plot_h / 2:.0f})">{_e(unit)}</text></svg>'
    )
    return "".join(parts)


CSS = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:960px}
h1{font-size:1.4em}h2{font-size:1.1em;margin-top:1.6em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 8px;
text-align:left;font-size:.9em}th{background:#f3f3f3}
.ok-mark{color:#176c2c;font-weight:bold}.bad-mark{color:#b00020;font-weight:bold}
svg text{font-size:11px;fill:#444}.grid{stroke:#e4e4e4}.set{fill:none;stroke:#1f4e9c;
stroke-width:1.5}.warn-band{fill:#fff3c4}.fault-band{fill:#fde0e0}circle.ok{fill:#2b8a3e}
circle.warn{fill:#e8a400}circle.fault{fill:#b00020}.mono{font-family:monospace}
"""


def render(
    data: SessionData,
    course_rows: Sequence[dict[str, Any]],
    check: VerifyReport | None,
    *,
    generated_at: float,
) -> str:
    h = data.header()
    title = f"Treatment session {h['session']}"
    status = "ended" if data.ended is not None else "interrupted (no end recorded)"
    facts = [
        ("Patient (pseudonym)", h["patient"]),
        ("Course", h["course"]),
        ("Area", h["area"]),
        ("Started (UTC)", h["started"]),
        ("Status", status),
        ("Operator", h["operator"] or ""),
        ("Handpiece", f"{h['handpiece'] or '?'} serial {h['serial'] or '?'}"),
        ("Firmware", h["firmware"] or ""),
        ("Profile", f"{h['profile_id'] or '?'}"),
        ("Profile SHA-256", h["profile_hash"] or ""),
    ]
    shots = data.shots
    calibrations = sorted({s["calibration"] for s in shots if s.get("calibration") is not None})
    if shots:
        facts.append(
            (
                "Calibration",
                ", ".join(f"record {c}" for c in calibrations)
                + " (set = treatment target, drive = value sent)"
                if calibrations
                else "none: the dose was sent as set",
            )
        )
    if data.ended:
        facts.append(("Final state", data.ended.get("final_state", "")))
    warn = sum(1 for s in shots if s["deviation_pct"] is not None and abs(s["deviation_pct"]) > 10)
    replayed = sum(1 for s in shots if s["replayed"])
    out = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{_e(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        _table(["", ""], facts),
        "<h2>Shots and dose</h2>",
        _table(
            ["shots logged", "fluence summed (J/cm2)", "beyond +-10 %", "re-read after a gap"],
            [[len(shots), f"{h['fluence_j_cm2']:.3f}", warn, replayed]],
        ),
        "<h2>Parameters used</h2>",
        _table(
            ["shots", "count", "parameters"],
            [[f"{a}..{b}", c, t] for a, b, c, t in _param_runs(shots)],
        ),
        f"<h2>Set and measured {_e(shots[0]['dose_param'] if shots else 'dose')} per shot</h2>",
        energy_plot(shots),
        "<p>Line: set value. Points: measured. Yellow band: +-10 % (warning); red band: "
        "+-20 % (emission stops, SR-06).</p>",
        f"<h2>Dose per area: {_e(h['area'])}, course {_e(h['course'])}</h2>",
        _table(
            ["session", "date", "shots", "fluence (J/cm2)"],
            [
                [
                    r["session"] + (" (this one)" if r["this"] else ""),
                    r["date"],
                    r["shots"],
                    f"{r['fluence']:.3f}",
                ]
                for r in course_rows
            ]
            + [
                [
                    "course total",
                    "",
                    sum(r["shots"] for r in course_rows),
                    f"{sum(r['fluence'] for r in course_rows):.3f}",
                ]
            ],
        ),
        "<h2>Faults, warnings, refusals and overrides</h2>",
    ]
    notable = [e for e in data.events if e["kind"] in NOTABLE]
    if notable:
        out.append(
            _table(
                ["time (UTC)", "kind", "who", "what"],
                [[e["at"], e["kind"], e["who"] or "", e["message"]] for e in notable],
            )
        )
    else:
        out.append("<p>None.</p>")
    out.append("<h2>Shot log integrity</h2>")
    if check is None:
        out.append("<p>Not verified for this report.</p>")
    elif check.ok:
        out.append(
            f"<p><span class='ok-mark'>Intact</span>: every hash chain verified at "
            f"{_e(iso(generated_at))} UTC ({sum(check.records.values())} records).</p>"
        )
    else:
        out.append(
            f"<p><span class='bad-mark'>NOT intact</span>: {len(check.problems)} problem(s).</p>"
        )
        out.append(
            _table(
                ["table", "row", "what"],
                [
                    [p.table, p.row_id if p.row_id is not None else "", p.what]
                    for p in check.problems[:50]
                ],
            )
        )
    if check is not None:
        anchors = [a for a in check.anchors if a.split(":")[0] in ("shots", "events")]
        out.append(
            "<p>Log anchors: keep them with this report. Years later, "
            "<span class='mono'>laserctl log verify --anchor ANCHOR</span> shows that nothing "
            "up to these records has been changed since.</p><ul>"
            + "".join(f"<li class='mono'>{_e(a)}</li>" for a in anchors)
            + "</ul>"
        )
    out.append("</body></html>\n")
    return "".join(out)
