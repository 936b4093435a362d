"""The host end of a handpiece link, with I/O: a transport, the sans-IO HostLink and one reader
thread that moves bytes and keeps time.

Commands can be sent from any thread; each write happens at once under the link lock, so a
DISARM or ESTOP goes out ahead of anything queued and never waits for the reader thread. Replies
resolve futures; everything else (device events, link silence, a lost transport, a reconnect) is
handed to one subscriber callback, which the controller turns into events on its own queue. The
subscriber hears events in the order they arrived: those that came during the HELLO of open()
from the thread calling open(), before it starts the reader thread; every later one from the
reader thread. It must not wait for a reply (call()): only the reader thread resolves them.

When the transport fails (cable pulled, device node gone) every pending command fails with
LinkDown, the subscriber hears TransportLost, and with reconnect=True the connection reopens the
URL with back-off and identifies the handpiece (HELLO) before anything else is sent, then reports
Reconnected with what it found. Comparing that with the handpiece of the session is the
controller's job (SR-15).

One file because it is one object: the writers, the reader thread, reconnect and the HELLO
handshake share one lock and one link, and each is correct only together with the others (a
stop command written by a caller while the reader swaps links). Above it is only what the
connection reports and raises. What it builds on without I/O is in drivers/protocol: HostLink,
DeviceInfo (identity.py) and the wording of a NAK (refusals.py).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

from drivers.protocol import (
    PROTOCOL_VERSION,
    Command,
    CommandFailed,
    DeviceInfo,
    Disarm,
    FrameRejected,
    Hello,
    HelloInfo,
    HostLink,
    LinkEvent,
    Nak,
    Reply,
    Response,
    describe_nak,
    encode_frame,
)
from drivers.protocol.link import STALL_S
from drivers.transport import Transport, TransportError, open_transport

Clock = Callable[[], float]


# ---- what the connection reports ----------------------------------------------------------
@dataclass(frozen=True)
class TransportLost:
    error: str


@dataclass(frozen=True)
class Reconnected:
    info: DeviceInfo


@dataclass(frozen=True)
class ConnectionCrashed:
    """An unexpected exception in the reader thread; the device was sent DISARM (SR-10)."""

    error: str


Notification = LinkEvent | TransportLost | Reconnected | ConnectionCrashed


class CommandError(Exception):
    """A command that did not succeed; the message says which and why."""


class LinkDown(CommandError):
    pass


class CommandTimeout(CommandError):
    pass


class CommandRefused(CommandError):
    def __init__(self, command: Command, nak: Nak) -> None:
        self.command, self.nak = command, nak
        super().__init__(describe_nak(command, nak))


# ---- the connection -------------------------------------------------------------------------
@dataclass
class ConnectionStats:
    connects: int = 0
    transport_errors: int = 0
    frames_rejected: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    last_error: str = ""
    stalls: int = 0  # reader wake-ups more than STALL_S late: the process was not running
    rejected_by_kind: dict[str, int] = field(default_factory=dict)


class HandshakeError(CommandError):
    pass


class _Answer:
    """What call() waits on, in place of a Future: one C lock, taken when made and released
    by whoever settles it (the reader thread, or a failing link). A Future's wait and
    notify_all are Python code on both threads (a Condition, a new lock per wait, a waiter
    list), on the path between the reply arriving and the caller running again."""

    __slots__ = ("_claim", "_ready", "error", "response")

    def __init__(self) -> None:
        self._claim = threading.Lock()  # taken by the first set_result/set_exception only
        self._ready = threading.Lock()  # released once settled; call() blocks on it
        self._ready.acquire()
        self.response: Response | None = None
        self.error: BaseException | None = None

    def done(self) -> bool:
        return self._claim.locked()

    def set_result(self, response: Response) -> None:
        if self._claim.acquire(blocking=False):
            self.response = response
            self._ready.release()

    def set_exception(self, error: BaseException) -> None:
        if self._claim.acquire(blocking=False):
            self.error = error
            self._ready.release()

    def wait(self, timeout: float) -> bool:
        return self._ready.acquire(timeout=max(0.0, timeout))


_Waiter = Future[Response] | _Answer


class HandpieceConnection:
    def __init__(
        self,
        url: str,
        *,
        on_event: Callable[[Notification], None] | None = None,
        reconnect: bool = True,
        clock: Clock = time.monotonic,
        hello_timeout: float = 2.0,
        opener: Callable[[str], Transport] = open_transport,
    ) -> None:
        self.url = url
        self._reopen_url = url  # what a reconnect opens: the device the first open resolved to
        self.on_event = on_event or (lambda _n: None)
        self.reconnect = reconnect
        self.clock = clock
        self.hello_timeout = hello_timeout
        self._opener = opener
        self._lock = threading.RLock()
        self._transport: Transport | None = None
        self._link: HostLink | None = None
        self._futures: dict[int, _Waiter] = {}
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None
        # A transport mid-HELLO and its link: DISARM and ESTOP go out on it at once (SR-03).
        self._hello: tuple[Transport, HostLink] | None = None
        self._stepped: HostLink | None = None  # the link the reader last stepped, and when
        self._last_step = 0.0
        self.info: DeviceInfo | None = None
        self.stats = ConnectionStats()

    # ---- lifecycle ----------------------------------------------------------------------------
    def open(self) -> DeviceInfo:
        """Open the URL and identify the handpiece, or raise CommandError saying what went wrong."""
        try:
            transport = self._opener(self.url)
        except (TransportError, OSError) as exc:
            raise LinkDown(str(exc)) from exc
        try:
            link, info, early = self._handshake(transport)
        except TransportError as exc:
            transport.close()
            raise LinkDown(f"{self.url}: link failed during HELLO: {exc}") from exc
        except BaseException:
            transport.close()
            raise
        with self._lock:
            self._transport, self._link, self.info = transport, link, info
        # A URL such as `usb:` (the first handpiece found) must not reconnect to another one.
        self._reopen_url = getattr(transport, "device_url", self.url)
        self.stats.connects += 1
        self._dispatch_early(early, transport)
        # Only now the reader: what it reads came after every event above.
        self._thread = threading.Thread(target=self._run, name=f"link {self.url}", daemon=True)
        self._thread.start()
        return info

    def _dispatch_early(self, early: list[LinkEvent], transport: Transport) -> None:
        """Hand the subscriber the events of the handshake, in arrival order, from the thread
        calling open() and before the reader thread exists, so none can overtake them. A
        subscriber that raises leaves no half-open connection: no reader would ever serve it."""
        try:
            for event in early:
                self._dispatch(event)
        except BaseException:
            with self._lock:
                if self._transport is transport:  # and DISARM no longer goes to the HELLO's link
                    self._transport, self._link, self._hello = None, None, None
                self._fail_all(LinkDown(f"{self.url}: subscriber failed during open"))
            transport.close()
            raise

    def close(self) -> None:
        self._closed.set()
        thread = self._thread
        # open() on another thread may have made the reader but not started it yet: it then
        # starts, sees the connection closed and ends at once; there is nothing to wait for.
        if thread is not None and thread.is_alive() and thread is not threading.current_thread():
            thread.join(timeout=2.0)
        with self._lock:
            if self._transport is not None:
                self._transport.close()
            self._transport = self._hello = None
            self._fail_all(LinkDown(f"{self.url}: connection closed"))

    def __enter__(self) -> HandpieceConnection:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def connected(self) -> bool:
        return self._transport is not None and self._link is not None

    @property
    def transport(self) -> Transport | None:
        return self._transport

    # ---- commands -----------------------------------------------------------------------------
    def send(self, command: Command) -> Future[Response]:
        """Queue a command; priority commands are on the wire before this returns."""
        future: Future[Response] = Future()
        self._submit(command, future)
        return future

    def call(self, command: Command, timeout: float = 2.0) -> Response:
        """Send and wait; a NAK raises CommandRefused, silence CommandTimeout."""
        answer = _Answer()
        self._submit(command, answer)
        if not answer.wait(timeout):
            raise CommandTimeout(f"{type(command).__name__}: no answer in {timeout} s")
        if answer.error is not None:
            raise answer.error
        response = answer.response
        assert response is not None
        if isinstance(response, Nak):
            raise CommandRefused(command, response)
        return response

    def _submit(self, command: Command, waiter: _Waiter) -> None:
        with self._lock:
            if self._link is None or self._transport is None:
                if not (command.PRIORITY and self._stop_during_hello(command, waiter)):
                    waiter.set_exception(LinkDown(f"{self.url}: link is down"))
                return
            now = self.clock()
            seq = self._link.send(command, now)
            self._futures[seq] = waiter
            self._flush(now)

    def _stop_during_hello(self, command: Command, waiter: _Waiter) -> bool:
        """DISARM or ESTOP while a transport is open but HELLO not yet answered: on the wire
        now, through the handshake's link, which goes on retrying it once it is the
        connection's link (SR-03, SR-16). Caller holds the lock; False when nothing is open."""
        if self._hello is None:
            return False
        transport, link = self._hello
        now = self.clock()
        seq = link.send(command, now)
        self._futures[seq] = waiter
        try:
            transport.write(link.data_to_send())
        except TransportError:
            return True  # the handshake fails on its own, and fails the waiter with it
        link.note_written(now)
        return True

    def _flush(self, now: float) -> None:
        """Write what the link has to send. Caller holds the lock."""
        assert self._link is not None
        data = self._link.data_to_send()
        if not data or self._transport is None:
            return
        try:
            self._transport.write(data)
        except TransportError as exc:
            self._lost(exc)
            return
        self.stats.bytes_out += len(data)
        self._link.note_written(now)

    # ---- the reader thread --------------------------------------------------------------------
    def _run(self) -> None:
        while not self._closed.is_set():
            try:
                if self._transport is None:
                    self._reconnect_loop()
                    continue
                self._step()
            except Exception as exc:  # SR-10: never let the link die silently
                self._crash(exc)
                return

    def _step(self) -> None:
        transport, link = self._transport, self._link
        if transport is None or link is None:
            return
        if link is not self._stepped:  # a new link: its first step has no earlier one
            self._stepped, self._last_step = link, self.clock()
        timeout = min(max(link.next_deadline() - self.clock(), 0.0), 0.02)
        try:
            data = transport.read(timeout)
        except TransportError as exc:
            with self._lock:
                self._lost(exc, transport)
            return
        events: list[LinkEvent] = []
        with self._lock:
            if self._link is not link:
                return
            now = self.clock()
            # Back more than STALL_S later than the last step and the wait allow: this thread
            # was not running (SR-09: HostLink.defer_silence, docs/protocol.md 10).
            if now - (self._last_step + timeout) > STALL_S:
                self.stats.stalls += 1
                link.defer_silence(now)
            self._last_step = now
            if data:
                self.stats.bytes_in += len(data)
                link.receive_data(data, now)
            link.tick(now)
            self._flush(now)
            while (event := link.next_event()) is not None:
                events.append(event)
        for event in events:
            self._dispatch(event)

    def _dispatch(self, event: Notification) -> None:
        if isinstance(event, Reply):
            future = self._futures.pop(event.seq, None)
            if future is not None and not future.done():
                future.set_result(event.response)
        elif isinstance(event, CommandFailed):
            future = self._futures.pop(event.seq, None)
            if future is not None and not future.done():
                name = type(event.command).__name__
                message = f"{name}: unanswered after {event.attempts} attempts"
                future.set_exception(CommandTimeout(message))
        elif isinstance(event, FrameRejected):
            self.stats.frames_rejected += 1
            kind = event.error.counter
            self.stats.rejected_by_kind[kind] = self.stats.rejected_by_kind.get(kind, 0) + 1
        self.on_event(event)

    def _lost(self, exc: BaseException, transport: Transport | None = None) -> None:
        """The transport failed. Caller holds the lock. With `transport`, only if that one is
        still current: a reader that fails after a writer already declared the loss is quiet."""
        if transport is not None and transport is not self._transport:
            return
        self.stats.transport_errors += 1
        self.stats.last_error = str(exc)
        if self._transport is not None:
            self._transport.close()
        self._transport, self._link, self._hello = None, None, None
        self._fail_all(LinkDown(f"{self.url}: {exc}"))
        self.on_event(TransportLost(str(exc)))

    def _fail_all(self, error: CommandError) -> None:
        futures, self._futures = self._futures, {}
        for future in futures.values():
            if not future.done():
                future.set_exception(error)

    def _reconnect_loop(self) -> None:
        if not self.reconnect:
            self._closed.wait(0.05)
            return
        delay = 0.05
        while not self._closed.is_set():
            try:
                transport = self._opener(self._reopen_url)
            except (TransportError, OSError):
                self._closed.wait(delay)
                delay = min(delay * 2, 1.0)
                continue
            try:
                link, info, early = self._handshake(transport)
            except (CommandError, TransportError):  # the link may fail again mid-HELLO
                transport.close()
                self._closed.wait(delay)
                delay = min(delay * 2, 1.0)
                continue
            with self._lock:
                self._transport, self._link, self.info = transport, link, info
            self.stats.connects += 1
            self.on_event(Reconnected(info))
            for event in early:
                self._dispatch(event)
            return

    def _crash(self, exc: BaseException) -> None:
        message = f"{type(exc).__name__}: {exc}"
        with self._lock:
            transport = self._transport
            if transport is not None:
                # Best effort, straight onto the wire: the link state may be what broke.
                with contextlib.suppress(Exception):
                    transport.write(encode_frame(Disarm.TYPE, 0, Disarm().pack()))
            self._fail_all(LinkDown(f"{self.url}: connection crashed: {message}"))
        self.stats.last_error = message
        with contextlib.suppress(Exception):  # the subscriber may be what raised
            self.on_event(ConnectionCrashed(message))

    # ---- identification -----------------------------------------------------------------------
    def _handshake(self, transport: Transport) -> tuple[HostLink, DeviceInfo, list[LinkEvent]]:
        """HELLO and wait for HELLO_INFO, keeping any events that arrive meanwhile. The link is
        reachable for stop commands from the start (_stop_during_hello), so it is only touched
        under the lock."""
        start = self.clock()
        link = HostLink(start)
        with self._lock:
            seq = link.send(Hello(PROTOCOL_VERSION, PROTOCOL_VERSION), start)
            self._hello = (transport, link)
        try:
            return self._await_hello(transport, link, seq, start)
        except BaseException:
            with self._lock:
                if self._hello is not None and self._hello[1] is link:
                    self._hello = None
                self._fail_all(LinkDown(f"{self.url}: HELLO failed"))  # stops sent meanwhile
            raise

    def _await_hello(
        self, transport: Transport, link: HostLink, seq: int, start: float
    ) -> tuple[HostLink, DeviceInfo, list[LinkEvent]]:
        early: list[LinkEvent] = []
        received = 0
        rejected = 0
        while True:
            with self._lock:
                now = self.clock()
                data = link.data_to_send()
                if data:
                    transport.write(data)
                    link.note_written(now)
            if now - start > self.hello_timeout:
                if received:
                    raise HandshakeError(
                        f"{self.url}: {received} bytes but no valid HELLO_INFO in "
                        f"{self.hello_timeout:g} s ({rejected} frames rejected): is this a "
                        "laserctl handpiece at the right baud rate?"
                    )
                raise HandshakeError(
                    f"{self.url}: no answer to HELLO within {self.hello_timeout:g} s"
                )
            chunk = transport.read(0.02)
            with self._lock:
                now = self.clock()
                received += len(chunk)
                if chunk:
                    link.receive_data(chunk, now)
                link.tick(now)
                while (event := link.next_event()) is not None:
                    if isinstance(event, Reply) and event.seq == seq:
                        if isinstance(event.response, HelloInfo):
                            return link, DeviceInfo.from_hello(event.response), early
                        if isinstance(event.response, Nak):
                            raise HandshakeError(
                                f"{self.url}: {describe_nak(event.command, event.response)}"
                            )
                    elif isinstance(event, CommandFailed) and event.seq == seq:
                        seq = link.send(Hello(PROTOCOL_VERSION, PROTOCOL_VERSION), now)
                    elif isinstance(event, FrameRejected):
                        rejected += 1
                    else:
                        early.append(event)
