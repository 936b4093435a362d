"""Session scripts: one step per line, `#` starts a comment.

    confirm eyewear
    arm | disarm | estop | reset
    wait SECONDS                 wait while the controller runs
    press [N | SECONDS s]        footswitch down (simulator); with N the step ends after N more
                                 pulses were reported or the device stops, with 2.0s after that
                                 long; without an argument at once. It stays down until release.
    release                      footswitch up (simulator)
    sim TEXT                     simulator fault injection: open|close <interlock>, pull cable,
                                 replug, reboot, overheat, cool, drift <percent>, stick footswitch
    set NAME VALUE [NAME VALUE]  treatment parameters (energy_mj 14 density_pct 8)

The footswitch is a physical input of the handpiece: press and release act on a simulated one,
so they are simulator steps like `sim`, and a script with any of them is refused against real
hardware before anything fires.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from drivers.protocol import Param


class ScriptError(ValueError):
    def __init__(self, line: int, message: str) -> None:
        self.line = line
        super().__init__(f"line {line}: {message}")


SIMULATOR_ACTIONS = frozenset({"press", "release", "sim"})


@dataclass(frozen=True, slots=True)
class Step:
    line: int
    text: str
    action: str  # confirm_eyewear, arm, disarm, estop, reset, wait, press, release, sim, set
    seconds: float | None = None
    pulses: int | None = None
    sim_text: str = ""
    values: tuple[tuple[Param, float], ...] = ()

    @property
    def needs_simulator(self) -> bool:
        return self.action in SIMULATOR_ACTIONS


def parse_script(text: str) -> list[Step]:
    steps = []
    for number, raw in enumerate(text.splitlines(), start=1):
        body = raw.split("#", 1)[0].strip()
        if body:
            steps.append(parse_step(number, body))
    return steps


def load_script(path: str | Path) -> list[Step]:
    return parse_script(Path(path).read_text(encoding="utf-8"))


def _seconds(line: int, word: str) -> float:
    try:
        value = float(word[:-1] if word.endswith("s") else word)
    except ValueError:
        raise ScriptError(line, f"{word!r} is not a number of seconds") from None
    if not math.isfinite(value) or value < 0 or value > 3600:
        raise ScriptError(line, f"{word!r}: seconds must be within 0..3600")
    return value


def parse_step(line: int, body: str) -> Step:
    words = body.split()
    verb, args = words[0].lower(), words[1:]
    joined = " ".join(w.lower() for w in words)
    if joined in ("confirm eyewear", "eyewear"):
        return Step(line, body, "confirm_eyewear")
    if verb in ("arm", "disarm", "estop", "reset", "release") and not args:
        return Step(line, body, verb)
    if verb == "wait" and len(args) == 1:
        return Step(line, body, "wait", seconds=_seconds(line, args[0]))
    if verb == "press" and not args:
        return Step(line, body, "press")
    if verb == "press" and len(args) == 1:
        arg = args[0].lower()
        if arg.endswith("s"):
            return Step(line, body, "press", seconds=_seconds(line, arg))
        try:
            pulses = int(arg)
        except ValueError:
            raise ScriptError(line, f"press {arg!r}: expected a pulse count or SECONDSs") from None
        if not 1 <= pulses <= 100_000:
            raise ScriptError(line, f"press {pulses}: the pulse count must be within 1..100000")
        return Step(line, body, "press", pulses=pulses)
    if verb == "sim" and args:
        return Step(line, body, "sim", sim_text=" ".join(args))
    if verb == "set" and args and len(args) % 2 == 0:
        values = []
        for name, value in zip(args[::2], args[1::2], strict=True):
            try:
                param = Param[name.upper()]
            except KeyError:
                known = ", ".join(p.field_name for p in Param)
                raise ScriptError(line, f"unknown parameter {name!r} (known: {known})") from None
            try:
                number = float(value)
            except ValueError:
                raise ScriptError(line, f"{name} {value!r}: not a number") from None
            values.append((param, number))
        return Step(line, body, "set", values=tuple(values))
    raise ScriptError(line, f"cannot read {body!r}")
