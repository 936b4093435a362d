"""Fault injection for the simulated handpiece: the text commands that tests, scripts and the
SIM_CONTROL message use, read into typed operations, and the shaping of its output bytes
(corrupt, truncate, garbage, delay).

Commands (case-insensitive; docs/protocol.md section 14 is the specification, with arguments and
ranges, and tests/test_sim_control_spec.py holds this parser to it):
  open|close|unknown <interlock>     key, door (remote), estop, cooling, temperature, skin,
                                     aiming, shutter
  press | release                    the footswitch
  stick footswitch | unstick footswitch
  estop | release estop              the e-stop button on the console
  pull cable | replug                the link: nothing but SIM_CONTROL passes while pulled
  corrupt N | truncate N | garbage N next N output frames corrupted / cut short; N random bytes
                                     (N 0 to 65535)
  delay MS                           hold every reply and event for MS milliseconds (0: off; at
                                     most 60000)
  drift PCT                          delivered energy off by PCT percent (e.g. drift 25, drift -8;
                                     -100 to 1000)
  gain X                             intrinsic gain of the source (what calibration corrects; 0 to
                                     10)
  overheat | cool                    handpiece temperature above the limit / back to ambient
  fail|pass <selftest item>          inputs, shutter, meter, sensors
  reboot                             power cycle that loses the shot counter (a fault)
  power cycle                        power cycle keeping the shot counter

parse_injection() reads one command into an Injection, or raises InjectionError saying what it
did not understand; it knows the words and the handpiece type's interlocks, nothing of the
firmware. The firmware carries an Injection out (SimulatedHandpiece.apply, firmware.py) and
hands the output faults to its OutputShaper, below.
"""

from __future__ import annotations

import random
import re
from collections import deque
from dataclasses import dataclass

from drivers.protocol import HandpieceSpec, Interlock, SelfTestItem

from .models import AMBIENT_C, OVERTEMP_C


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
# Argument ranges. Beyond them the model breaks rather than misbehaves: a negative count never
# runs out, garbage of millions of bytes stalls the simulator, and an energy beyond what a SHOT
# can carry (u32 thousandths) or an infinite one raised in the firmware on the next pulse.
MAX_COUNT = 65535  # corrupt, truncate: frames; garbage: bytes
MAX_DELAY_MS = 60_000
DRIFT_PCT = (-100.0, 1000.0)
GAIN = (0.0, 10.0)
OVERHEATED_C = OVERTEMP_C + 5.0  # what `overheat` and `open temperature` heat the handpiece to


# ---- the operations -----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class SetInterlock:
    """An interlock input reads closed (True), open (False) or unknown (None)."""

    interlock: Interlock
    closed: bool | None


@dataclass(frozen=True, slots=True)
class SetFootswitch:
    pressed: bool


@dataclass(frozen=True, slots=True)
class StickFootswitch:
    """Stuck down, the footswitch reads pressed whatever SetFootswitch says."""

    stuck: bool


@dataclass(frozen=True, slots=True)
class SetCable:
    """Pulled (plugged False), no byte reaches the host and nothing but SIM_CONTROL the
    firmware."""

    plugged: bool


@dataclass(frozen=True, slots=True)
class SetDrift:
    fraction: float  # delivered energy off by this much (0.25: 25 % over)


@dataclass(frozen=True, slots=True)
class SetGain:
    gain: float  # the source's intrinsic gain, 1.0 nominal


@dataclass(frozen=True, slots=True)
class SetTemperature:
    temp_c: float


@dataclass(frozen=True, slots=True)
class SetSelfTestItem:
    item: SelfTestItem
    fails: bool


@dataclass(frozen=True, slots=True)
class PowerCycle:
    """Reboot; with lose_counter the shot counter and its records are lost (a fault)."""

    lose_counter: bool


@dataclass(frozen=True, slots=True)
class CorruptFrames:
    count: int  # the next `count` output frames get one byte changed


@dataclass(frozen=True, slots=True)
class TruncateFrames:
    count: int  # the next `count` output frames are cut to half their length


@dataclass(frozen=True, slots=True)
class SendGarbage:
    count: int  # random bytes sent ahead of the next output


@dataclass(frozen=True, slots=True)
class DelayOutput:
    seconds: float  # every reply and event is held this long (0: no more delay)


OutputFault = CorruptFrames | TruncateFrames | SendGarbage | DelayOutput
Injection = (
    SetInterlock
    | SetFootswitch
    | StickFootswitch
    | SetCable
    | SetDrift
    | SetGain
    | SetTemperature
    | SetSelfTestItem
    | PowerCycle
    | OutputFault
)


# ---- the words ----------------------------------------------------------------------------------
_FIXED: dict[str, Injection] = {
    "press": SetFootswitch(pressed=True),
    "press footswitch": SetFootswitch(pressed=True),
    "release": SetFootswitch(pressed=False),
    "release footswitch": SetFootswitch(pressed=False),
    "stick footswitch": StickFootswitch(stuck=True),
    "unstick footswitch": StickFootswitch(stuck=False),
    "estop": SetInterlock(Interlock.ESTOP, closed=False),
    "release estop": SetInterlock(Interlock.ESTOP, closed=True),
    "pull cable": SetCable(plugged=False),
    "drop link": SetCable(plugged=False),
    "replug": SetCable(plugged=True),
    "overheat": SetTemperature(OVERHEATED_C),
    "cool": SetTemperature(AMBIENT_C),
    "reboot": PowerCycle(lose_counter=True),
    "power cycle": PowerCycle(lose_counter=False),
}
_READINGS = {"open": False, "close": True, "unknown": None}


def parse_injection(text: str, handpiece: HandpieceSpec) -> Injection:
    """The operation a fault-injection command names, for a handpiece of this type."""
    words = text.strip().lower().split()
    if not words:
        raise InjectionError("empty fault-injection command")
    verb, args = words[0], words[1:]
    joined = " ".join(words)
    if verb in _READINGS and len(args) == 1:
        return SetInterlock(_interlock(handpiece, args[0]), _READINGS[verb])
    if joined in _FIXED:
        return _FIXED[joined]
    if verb == "corrupt" and len(args) == 1:
        return CorruptFrames(_int(args[0], joined, 0, MAX_COUNT))
    if verb == "truncate" and len(args) == 1:
        return TruncateFrames(_int(args[0], joined, 0, MAX_COUNT))
    if verb == "garbage" and len(args) == 1:
        return SendGarbage(_int(args[0], joined, 0, MAX_COUNT))
    if verb == "delay" and len(args) == 1:
        return DelayOutput(_int(args[0], joined, 0, MAX_DELAY_MS) / 1000.0)
    if verb == "drift" and len(args) == 1:
        return SetDrift(_float(args[0], joined, *DRIFT_PCT) / 100.0)
    if verb == "gain" and len(args) == 1:
        return SetGain(_float(args[0], joined, *GAIN))
    if verb in ("fail", "pass") and len(args) == 1 and args[0] in SELFTEST_NAMES:
        return SetSelfTestItem(SELFTEST_NAMES[args[0]], fails=verb == "fail")
    raise InjectionError(f"unknown fault-injection command {text!r}")


def _interlock(handpiece: HandpieceSpec, name: str) -> Interlock:
    interlock = INTERLOCK_NAMES.get(name)
    if interlock is None:
        raise InjectionError(f"unknown interlock {name!r} (known: {', '.join(INTERLOCK_NAMES)})")
    if interlock not in handpiece.interlocks:
        raise InjectionError(f"a {handpiece.slug} handpiece has no {name} interlock")
    return interlock


# What the spec allows, no more: Python's int() and float() would also take "1_000", "٣",
# "inf" and "nan".
_WHOLE = re.compile(r"[+-]?[0-9]+")
_NUMBER = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)(e[+-]?[0-9]+)?")  # text is lower case


def _int(text: str, command: str, lo: int, hi: int) -> int:
    if not _WHOLE.fullmatch(text):
        raise InjectionError(f"{command!r}: {text!r} is not a whole number")
    value = int(text)
    if not lo <= value <= hi:
        raise InjectionError(f"{command!r}: {value} is outside {lo} to {hi}")
    return value


def _float(text: str, command: str, lo: float, hi: float) -> float:
    if not _NUMBER.fullmatch(text):
        raise InjectionError(f"{command!r}: {text!r} is not a number")
    value = float(text)
    if not lo <= value <= hi:
        raise InjectionError(f"{command!r}: {text} is outside {lo:g} to {hi:g}")
    return value


# ---- output shaping -----------------------------------------------------------------------------
class OutputShaper:
    """What the output faults do to the bytes the device sends; the host's reach it intact."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.corrupt = 0
        self.truncate = 0
        self.garbage = 0
        self.delay_s = 0.0
        self._held: deque[tuple[float, bytes]] = deque()

    def apply(self, fault: OutputFault) -> None:
        match fault:
            case CorruptFrames(count):
                self.corrupt = count
            case TruncateFrames(count):
                self.truncate = count
            case SendGarbage(count):
                self.garbage = count
            case DelayOutput(seconds):
                self.delay_s = seconds

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
