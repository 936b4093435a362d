"""The link as the core sees it (SR-09, SR-15, SR-16): opened or reopened (identify the
handpiece again), silent for too long or lost (latch FAULT, abandon what is in flight),
answering again after a silence (HELLO and resynchronise before anything is trusted).
"""

from __future__ import annotations

from drivers.host import ConnectionCrashed, Reconnected, TransportLost
from drivers.protocol import PROTOCOL_VERSION, Hello, LinkSilent

from .causes import Cause, CauseKind
from .context import Core
from .events import LinkOpened, LinkOpenFailed
from .identity import identified
from .table import State

LinkChange = (
    LinkOpened | LinkOpenFailed | Reconnected | LinkSilent | TransportLost | ConnectionCrashed
)


def on_link_change(core: Core, event: LinkChange) -> None:
    match event:
        case LinkSilent():
            if core.connected and core.link_alive:
                core.link_alive = False
                ms = event.silent_for * 1000
                core.latch(Cause(CauseKind.LINK, f"device silent for {ms:.0f} ms (SR-09)"))
        case TransportLost():
            gone(core, Cause(CauseKind.LINK, f"link lost: {event.error}"))
        case ConnectionCrashed():
            gone(core, Cause(CauseKind.INTERNAL, f"connection crashed: {event.error}"))
        case Reconnected():
            core.connected = core.link_alive = True
            core.note("info", f"reconnected to {event.info.serial}")
            identified(core, event.info)
        case LinkOpened():
            core.connected = core.link_alive = True
            identified(core, event.info)
        case LinkOpenFailed():
            core.last_message = f"cannot connect: {event.error}"
            core.note("info", core.last_message)
            if core.state is State.CONNECTING:
                core.fire("link_open_failed")


def answered(core: Core) -> None:
    """Something valid arrived from the device: after a silence, identify it again."""
    if core.connected and not core.link_alive:
        core.link_alive = True
        core.note("info", "the device answers again: identifying it")
        core.send(Hello(PROTOCOL_VERSION, PROTOCOL_VERSION))
        core.resync_device()


def gone(core: Core, cause: Cause) -> None:
    core.connected = core.link_alive = False
    abandon(core)
    core.latch(cause)


def abandon(core: Core) -> None:
    """Nothing sent is coming back: no command in flight, no parameters confirmed, no re-read
    under way."""
    core.inflight.abandon()
    core.params_confirmed = False
    core.ledger.reset_recovery()
