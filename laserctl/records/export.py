"""A session out of the log: its shots with their context expanded, its events; as CSV or JSON.

`laserctl log export --session ID --format csv|json` prints these; the HTML report reads
the same SessionData.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from dataclasses import dataclass
from typing import Any

from .sessions import SessionInfo
from .store import RecordStore


def iso(at: float | None, tz: dt.tzinfo | None = None) -> str:
    if at is None:
        return ""
    return dt.datetime.fromtimestamp(at, tz or dt.UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True, slots=True)
class SessionData:
    info: SessionInfo
    shots: list[dict[str, Any]]
    events: list[dict[str, Any]]
    ended: dict[str, Any] | None  # the session_end event's data; None: never ended

    def header(self) -> dict[str, Any]:
        handpiece: dict[str, Any] = next(
            (e["data"] for e in self.events if e["kind"] == "handpiece"), {}
        )
        return {
            "session": self.info.session_id,
            "patient": self.info.patient,
            "course": self.info.course,
            "area": self.info.area,
            "started": iso(self.info.started),
            "operator": self.info.operator,
            "ended": self.ended is not None,
            "handpiece": handpiece.get("handpiece"),
            "serial": handpiece.get("serial"),
            "firmware": handpiece.get("firmware"),
            "profile_id": handpiece.get("profile_id"),
            "profile_hash": handpiece.get("profile_hash"),
            "shots_logged": len(self.shots),
            "fluence_j_cm2": round(sum(s["fluence_j_cm2"] for s in self.shots), 6),
        }


def _contexts(store: RecordStore) -> dict[int, dict[str, Any]]:
    rows = store.query("SELECT id, json_extract(body, '$.value') FROM contexts")
    return {int(ref): json.loads(value) for ref, value in rows}


def session_data(store: RecordStore, session_id: str) -> SessionData:
    info = store.session(session_id)
    contexts = _contexts(store)
    shots = []
    for ref, body in store.query(
        "SELECT id, body FROM shots WHERE session_ref = ? ORDER BY id", (info.ref,)
    ):
        b = json.loads(body)
        profile = contexts.get(b["profile"], {})
        handpiece = contexts.get(b["handpiece"], {})
        shots.append(
            {
                "row": int(ref),
                "session": info.session_id,
                "patient": info.patient,
                "course": info.course,
                "area": info.area,
                "serial": b["serial"],
                "handpiece": handpiece.get("type"),
                "firmware": handpiece.get("firmware"),
                "boot_id": b["boot"],
                "shot_no": b["shot"],
                "device_time_us": b["device_us"],
                "host_time": iso(b["host_time"]),
                "dose_param": b["dose"],
                "set": b["set"],
                "drive": b.get("drive", b["set"]),  # logs before calibration: the same
                "calibration": b.get("calibration"),
                "measured": b["measured"],
                "deviation_pct": b["deviation_pct"],
                "pulse_us": b["pulse_us"],
                "params": contexts.get(b["params"], {}),
                "profile_id": profile.get("id"),
                "profile_hash": profile.get("hash"),
                "interlocks": contexts.get(b["interlocks"], {}),
                "replayed": bool(b["replayed"]),
                "counted": bool(b["counted"]),
                "recovered": bool(b.get("recovered")),
                "fluence_j_cm2": b["fluence"],
            }
        )
    events = []
    ended = None
    for ref, body in store.query(
        "SELECT id, body FROM events WHERE session_ref = ? ORDER BY id", (info.ref,)
    ):
        b = json.loads(body)
        events.append(
            {
                "row": int(ref),
                "at": iso(b["at"]),
                "kind": b["kind"],
                "message": b["message"],
                "who": b.get("who"),
                "data": b.get("data") or {},
            }
        )
        if b["kind"] == "session_end":
            ended = b.get("data") or {}
    return SessionData(info, shots, events, ended)


def to_json(data: SessionData) -> str:
    return json.dumps(
        {"session": data.header(), "shots": data.shots, "events": data.events},
        indent=1,
        sort_keys=True,
    )


CSV_FIELDS = [
    "row",
    "session",
    "patient",
    "course",
    "area",
    "serial",
    "handpiece",
    "firmware",
    "boot_id",
    "shot_no",
    "device_time_us",
    "host_time",
    "dose_param",
    "set",
    "drive",
    "calibration",
    "measured",
    "deviation_pct",
    "pulse_us",
    "profile_id",
    "profile_hash",
    "replayed",
    "counted",
    "recovered",
    "fluence_j_cm2",
    "interlocks",
]


def to_csv(data: SessionData) -> str:
    """One row per shot; each parameter in a column of its own (param_energy_mj, ...), the
    interlock snapshot as `name=reading;...`."""
    params = sorted({name for shot in data.shots for name in shot["params"]})
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_FIELDS + [f"param_{p}" for p in params])
    for shot in data.shots:
        row: list[object] = []
        for name in CSV_FIELDS:
            value = shot[name]
            if name == "interlocks":
                value = ";".join(f"{k}={v}" for k, v in sorted(value.items()))
            elif isinstance(value, bool):
                value = int(value)
            row.append("" if value is None else value)
        row += [shot["params"].get(p, "") for p in params]
        writer.writerow(row)
    return out.getvalue()
