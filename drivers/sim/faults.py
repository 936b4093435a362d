"""Fault injection for the simulated handpiece: the text commands that tests, scripts and the
SIM_CONTROL message use, and the shaping of its output bytes (corrupt, truncate, garbage, delay).

Commands (case-insensitive; docs/simulator.md has the same list):
  open|close|unknown <interlock>     key, door (remote), estop, cooling, temperature, skin,
                                     aiming, shutter
  press | release                    the footswitch
  stick footswitch | unstick footswitch
  estop | release estop              the e-stop button on the console
  pull cable | replug                the link: nothing but SIM_CONTROL passes while pulled
  corrupt N | truncate N | garbage N next N output frames corrupted / cut short; N random bytes
  delay MS                           hold every reply and event for MS milliseconds (0: off)
  drift PCT                          delivered energy off by PCT percent (e.g. drift 25, drift -8)
  gain X                             intrinsic gain of the source (what calibration corrects)
  overheat | cool                    handpiece temperature above the limit / back to ambient
  fail|pass <selftest item>          inputs, shutter, meter, sensors
  reboot                             power cycle that loses the shot counter (a fault)
  power cycle                        power cycle keeping the shot counter
"""

from __future__ import annotations

import random
from collections import deque
from typing import TYPE_CHECKING

from drivers.protocol import Interlock, SelfTestItem

from .models import AMBIENT_C, OVERTEMP_C

if TYPE_CHECKING:
    from .firmware import SimulatedHandpiece


class InjectionError(ValueError):
    """A fault-injection command the simulator does not understand."""


INTERLOCK_NAMES = {
    "key": Interlock.KEY,
    "door": Interlock.DOOR,
    "remote": Interlock.DOOR,
    "estop": Interlock.ESTOP,
    "e-stop": Interlock.ESTOP,
    "cooling": Interlock.COOLING,
    "temperature": Interlock.TEMPERATURE,
    "skin": Interlock.SKIN_CONTACT,
    "skin_contact": Interlock.SKIN_CONTACT,
    "aiming": Interlock.AIMING_BEAM,
    "aiming_beam": Interlock.AIMING_BEAM,
    "shutter": Interlock.SHUTTER,
}
SELFTEST_NAMES = {
    "inputs": SelfTestItem.INTERLOCK_INPUTS,
    "shutter": SelfTestItem.SHUTTER,
    "meter": SelfTestItem.ENERGY_MONITOR,
    "sensors": SelfTestItem.TEMPERATURE_SENSORS,
}


class FaultInjector:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.corrupt = 0
        self.truncate = 0
        self.garbage = 0
        self.delay_s = 0.0
        self._held: deque[tuple[float, bytes]] = deque()

    # ---- commands -------------------------------------------------------------------------------
    def apply(self, hp: SimulatedHandpiece, text: str, now: float) -> None:
        words = text.strip().lower().split()
        if not words:
            raise InjectionError("empty fault-injection command")
        verb, args = words[0], words[1:]
        joined = " ".join(words)
        if verb in ("open", "close", "unknown") and len(args) == 1:
            interlock = _interlock(hp, args[0])
            hp.inputs[interlock] = {"open": False, "close": True, "unknown": None}[verb]
            # The temperature input is derived from the thermal model, so move the temperature.
            if interlock is Interlock.TEMPERATURE and verb == "close":
                hp.thermal.temp_c = min(hp.thermal.temp_c, AMBIENT_C)
            elif interlock is Interlock.TEMPERATURE and verb == "open":
                hp.thermal.temp_c = max(hp.thermal.temp_c, OVERTEMP_C + 5.0)
        elif joined in ("press", "press footswitch"):
            hp.footswitch = True
        elif joined in ("release", "release footswitch"):
            hp.footswitch = False
        elif joined == "stick footswitch":
            hp.footswitch_stuck = True
        elif joined == "unstick footswitch":
            hp.footswitch_stuck = False
        elif joined == "estop":
            hp.inputs[Interlock.ESTOP] = False
        elif joined == "release estop":
            hp.inputs[Interlock.ESTOP] = True
        elif joined in ("pull cable", "drop link"):
            hp.link_up = False
            hp.link.discard_output()
        elif joined == "replug":
            hp.link_up = True
        elif verb in ("corrupt", "truncate", "garbage") and len(args) == 1:
            setattr(self, verb, _int(args[0], joined))
        elif verb == "delay" and len(args) == 1:
            self.delay_s = _int(args[0], joined) / 1000.0
        elif verb == "drift" and len(args) == 1:
            hp.energy.drift = _float(args[0], joined) / 100.0
        elif verb == "gain" and len(args) == 1:
            hp.energy.gain = _float(args[0], joined)
        elif joined == "overheat":
            hp.thermal.temp_c = OVERTEMP_C + 5.0
        elif joined == "cool":
            hp.thermal.temp_c = AMBIENT_C
        elif verb in ("fail", "pass") and len(args) == 1 and args[0] in SELFTEST_NAMES:
            item = SELFTEST_NAMES[args[0]]
            (hp.selftest_failures.add if verb == "fail" else hp.selftest_failures.discard)(item)
        elif joined == "reboot":
            hp.power_cycle(now, lose_counter=True)
        elif joined == "power cycle":
            hp.power_cycle(now)
        else:
            raise InjectionError(f"unknown fault-injection command {text!r}")

    # ---- output shaping -------------------------------------------------------------------------
    def shape_output(self, data: bytes, now: float) -> bytes:
        if data and (self.corrupt or self.truncate):
            data = self._mangle(data)
        if self.garbage:
            data = bytes(self.rng.randrange(256) for _ in range(self.garbage)) + data
            self.garbage = 0
        if self.delay_s > 0 or self._held:
            if data:
                self._held.append((now + self.delay_s, data))
            out = bytearray()
            while self._held and self._held[0][0] <= now:
                out += self._held.popleft()[1]
            return bytes(out)
        return data

    def _mangle(self, data: bytes) -> bytes:
        frames = data.split(b"\x00")[:-1]  # every output frame ends in the delimiter
        out = bytearray()
        for frame in frames:
            mangled = bytearray(frame)
            if self.corrupt and mangled:
                self.corrupt -= 1
                i = self.rng.randrange(len(mangled))
                mangled[i] ^= 0x01 if mangled[i] != 0x01 else 0x02  # never a delimiter
            elif self.truncate and len(mangled) > 1:
                self.truncate -= 1
                del mangled[len(mangled) // 2 :]
            out += mangled + b"\x00"
        return bytes(out)

    def next_release(self) -> float | None:
        return self._held[0][0] if self._held else None


def _interlock(hp: SimulatedHandpiece, name: str) -> Interlock:
    interlock = INTERLOCK_NAMES.get(name)
    if interlock is None:
        raise InjectionError(f"unknown interlock {name!r} (known: {', '.join(INTERLOCK_NAMES)})")
    if interlock not in hp.model.interlocks:
        raise InjectionError(f"a {hp.model.type.slug} handpiece has no {name} interlock")
    return interlock


def _int(text: str, command: str) -> int:
    try:
        return int(text)
    except ValueError as exc:
        raise InjectionError(f"{command!r}: {text!r} is not a whole number") from exc


def _float(text: str, command: str) -> float:
    try:
        return float(text)
    except ValueError as exc:
        raise InjectionError(f"{command!r}: {text!r} is not a number") from exc
