"""A console process killed in the middle of `fleet push` (SIGKILL: no clean-up runs): the
next push completes, with nothing lost and nothing stored twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from laserctl.fleet.push import push

from .fleet import key_for, make_log
from .test_fleet_push import local_rows, stored_rows

PUSHER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from laserctl.auth import console_key
    from laserctl.fleet.push import Hooks, push

    db, url, key_path, phase = sys.argv[1:5]
    seen = []

    def hook(at):
        def called(table, rows):
            if table == "shots":
                seen.append(rows[-1].row_id)
                if len(seen) == 3:
                    print(f"{at} {rows[-1].row_id}", flush=True)
                    time.sleep(600)  # killed here
        return called

    hooks = Hooks(**{phase: hook(phase)})
    push(db, url, key=console_key.load_or_create(Path(key_path)), batch=25, hooks=hooks)
    print("done", flush=True)
    """
)


@pytest.mark.parametrize(
    ("phase", "stored_before_resume"),
    [
        ("before_commit", 50),  # killed inside the third batch's transaction: rolled back
        ("after_commit", 75),  # killed after the store committed, before the outbox advanced
    ],
)
def test_a_console_killed_mid_push_resumes_with_nothing_lost_or_duplicated(
    pg_url: str, tmp_path: Path, phase: str, stored_before_resume: int
) -> None:
    db = tmp_path / "a.db"
    make_log(db, shots=120)
    k = key_for(db)
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.Popen(
        [sys.executable, "-c", PUSHER, str(db), pg_url, str(db.with_suffix(".pem")), phase],
        stdout=subprocess.PIPE,
        text=True,
        cwd=root,
        env=dict(os.environ, PYTHONPATH=str(root)),
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line == f"{phase} 75", line
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        proc.kill()
        proc.wait()
    shots = [r for r, _ in stored_rows(pg_url, k.console_id)["shots"]]
    assert shots == list(range(1, stored_before_resume + 1))
    resumed = push(db, pg_url, key=k, batch=25)
    assert resumed.shipped["shots"] == 120 - stored_before_resume
    assert resumed.resent.get("shots", 0) == (25 if phase == "after_commit" else 0)
    assert stored_rows(pg_url, k.console_id) == local_rows(db)
