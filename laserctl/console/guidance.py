"""What to tell the operator: for every latched cause, what happened, what to do and how to
reset; for refusals and warnings, what to do next. docs/operator-guide.md has the same table.

The words follow the controller's rules (docs/controller.md): a cause that is a condition
(an interlock, the link, the handpiece, the e-stop) must clear before RESET is accepted; the
others are acknowledged by the reset; every reset runs a new self test.
"""

from __future__ import annotations

from dataclasses import dataclass

from .view import CauseView

RESET = "press r (RESET: a new self test runs, then STANDBY)"


@dataclass(frozen=True, slots=True)
class Advice:
    title: str  # what happened, in a few words
    todo: str  # what the operator does now
    reset: str  # how to get back to STANDBY


_INTERLOCK: dict[str, Advice] = {
    "door": Advice(
        "Door / remote interlock opened",
        "Someone may have entered the room during emission: check the room and the patient, "
        "close the door.",
        f"When the door reads OK, {RESET}.",
    ),
    "temperature": Advice(
        "Handpiece over-temperature (SR-20)",
        "Stop treating and let the handpiece cool; check the cooling water and air flow.",
        f"When the temperature reads OK again, {RESET}. If it returns, call service.",
    ),
    "cooling": Advice(
        "Cooling failure (SR-20)",
        "Stop treating; check the chiller, its water level and hoses.",
        f"When cooling reads OK again, {RESET}. If it returns, call service.",
    ),
    "shutter": Advice(
        "Shutter reading unexpected",
        "A malfunction of the shutter or its sensor: do not continue treating.",
        "Call service; a reset (r) is refused while the shutter reads open.",
    ),
    "handpiece": Advice(
        "Handpiece identity",
        "The handpiece does not match the session (another one, or another firmware).",
        f"Connect the session's handpiece again, then {RESET}; or end the session (x).",
    ),
    "calibration": Advice(
        "Calibration not valid (SR-14)",
        "The handpiece has no valid calibration.",
        "A service engineer calibrates it (service screen); then start a new session.",
    ),
    "link": Advice(
        "Link to the handpiece lost (SR-09)",
        "Check the cable and the handpiece's power; the console reconnects by itself.",
        f"When the link reads OK again, {RESET}.",
    ),
}

_KIND: dict[str, Advice] = {
    "link": _INTERLOCK["link"],
    "handpiece": _INTERLOCK["handpiece"],
    "estop": Advice(
        "EMERGENCY STOP (SR-03)",
        "Emission was stopped. Make the patient and the room safe; find out why it was pressed.",
        f"Release the e-stop button (the console's e-stop needs no release), then {RESET}.",
    ),
    "reboot": Advice(
        "The handpiece restarted",
        "It lost power or reset; its shot counter may have restarted (see the report).",
        f"To go on, {RESET}.",
    ),
    "self_test": Advice(
        "Self test failed (SR-17)",
        "The named item failed its power-up check: the handpiece must not be used.",
        "Press r (RESET) to run the self test again; if it fails again, call service.",
    ),
    "energy": Advice(
        "Energy outside +-20 % of the set value (SR-06)",
        "Stop treating. The output may be wrong: a service engineer checks the calibration.",
        "Press r (RESET) to acknowledge it (a new self test runs); stop if it happens again.",
    ),
    "device": Advice(
        "The handpiece reported a fault",
        "Note the message.",
        f"To go on, {RESET}; if it returns, call service.",
    ),
    "shot_counter": Advice(
        "Shot counter gap (SR-11)",
        "Shots may be missing from the log: note it for the report.",
        "Press r (RESET) to acknowledge it (a new self test runs); tell service.",
    ),
    "shot": Advice(
        "The handpiece fired when it should not have",
        "Stop treating at once: a pulse came unarmed, too early or beyond the grant.",
        "Press r (RESET) to acknowledge it; do not treat again before service has checked it.",
    ),
    "internal": Advice(
        "Software error (SR-10)",
        "The handpiece was disarmed. Note the message.",
        f"To go on, {RESET}; if it returns, end the session (x) and call service.",
    ),
}

_ANY_INTERLOCK = Advice(
    "An interlock opened",
    "Find the interlock that reads OPEN in the interlock panel and close it.",
    f"When every interlock reads OK, {RESET}.",
)
_UNKNOWN = Advice("Fault", "Note the message.", f"To go on, {RESET}; if it returns, call service.")


def advise(cause: CauseView) -> Advice:
    if cause.kind == "interlock":
        return _INTERLOCK.get(cause.interlock or "", _ANY_INTERLOCK)
    return _KIND.get(cause.kind, _UNKNOWN)


_REFUSAL_HINTS: tuple[tuple[str, str], ...] = (
    ("eyewear not confirmed", "confirm protective eyewear (e)"),
    ("footswitch is pressed", "take your foot off the footswitch, then arm (a)"),
    ("skin_contact", "place the handpiece on the skin"),
    ("aiming_beam", "switch the aiming beam on"),
    ("door", "close the door"),
    ("key", "turn the key on"),
    ("estop", "release the e-stop button"),
    ("calibration", "a service engineer calibrates the handpiece"),
    ("budget used up", "the area's dose for this session is used: end the session (x)"),
    ("parameters not confirmed", "wait a moment; the handpiece is taking the parameters"),
    ("outside the profile", "choose a value inside the window shown"),
    ("above the maximum", "choose a value inside the window shown"),
    ("below the minimum", "choose a value inside the window shown"),
    ("cause still present", "clear the cause first (see the fault panel)"),
    ("link", "check the cable; wait for the link"),
)


def refusal_hint(reason: str) -> str:
    for needle, hint in _REFUSAL_HINTS:
        if needle in reason:
            return hint
    return "see the message"


def warning_hint(message: str) -> str:
    if "+-10 %" in message:
        return "watch the next shots; if it repeats, ask service to check the calibration"
    if "emission indication" in message:
        return "tell service: the handpiece's emission indication came late"
    return "note it"
