"""A deterministic in-memory bench: the controller core, a HostLink and a SimulatedHandpiece
wired together with a fake clock and no threads.

Bytes move instantly: every step the host's output goes to sim.receive() and the simulator's
output to the host link, until both are quiet. Time moves only in step() / run(), in steps of
`dt` seconds, so every test is repeatable. The calibration source is read as the runner reads
it, apart from the core: before LinkOpened, and at every ReadCalibration the core asks for
(hold_calibration keeps those back until release_calibration()); its readings are stamped with
a wall clock that starts at `wall_start` and moves with the bench. Other suites may reuse it:

    bench = Bench("fractional-1550")
    bench.connect()                 # HELLO, self test, STANDBY
    bench.operator(ConfirmEyewear()); bench.operator(RequestArm())
    bench.run(1.1); bench.inject("press"); bench.run(0.5)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from drivers.host import Reconnected, TransportLost
from drivers.protocol import (
    PROTOCOL_VERSION,
    Arm,
    Command,
    CommandFailed,
    DeviceInfo,
    FrameDecoder,
    Hello,
    HelloInfo,
    HostLink,
    LinkEvent,
    Message,
    ProtocolError,
    Reply,
    decode_message,
    encode_frame,
)
from drivers.protocol.framing import Frame
from drivers.sim import SimulatedHandpiece
from laserctl.controller.core import CalibrationSource, Controller, training_calibration
from laserctl.controller.events import (
    Action,
    CalibrationLoaded,
    CloseLink,
    CommandDone,
    CommandLost,
    Connect,
    ControllerEvent,
    LinkOpened,
    LinkOpenFailed,
    Note,
    OpenLink,
    ReadCalibration,
    RecordShot,
    Send,
    ShotsDurable,
    Tick,
)
from laserctl.controller.shots import MemoryShotStore
from laserctl.controller.table import State
from laserctl.plan import TreatmentPlan

WALL_START = 1_800_000_000.0  # the bench's wall clock (epoch seconds) at bench time 0: fixed


@dataclass
class SentCommand:
    at: float
    command: Command
    token: int


@dataclass
class Bench:
    handpiece: str = "fractional-1550"
    plan: TreatmentPlan | None = None
    seed: int = 0
    dt: float = 0.005
    calibration: CalibrationSource = training_calibration
    wall_start: float = WALL_START
    hold_calibration: bool = False  # ReadCalibration waits for release_calibration()
    serial: str | None = None
    now: float = 0.0
    sent: list[SentCommand] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)
    drop_from_device: bool = False  # the device's output is lost on the way (broken RX line)
    drop_from_host: bool = False  # the host's output is lost on the way (broken TX line)
    on_action: Callable[[Action], None] | None = None  # hook for tests that fail an action
    # Which of the device's frames reach the host (None: all): a line that loses some.
    device_frames: Callable[[Message], bool] | None = None
    # Every handle() call as (bench time, event, the actions it returned), when a list is given.
    trace: list[tuple[float, ControllerEvent, list[Action]]] | None = None
    # The shot writer's completions held back (make_durable() reports them): a group commit
    # still on its way to the disk. Otherwise a RecordShot is durable once its batch has run.
    hold_durable: bool = False

    def __post_init__(self) -> None:
        self.sim = SimulatedHandpiece(self.handpiece, seed=self.seed, serial=self.serial, now=0.0)
        self.store = MemoryShotStore()
        self.core = Controller(self.plan, now=0.0)
        self.link: HostLink | None = None
        self._tokens: dict[int, int] = {}
        self.calibration_reads: list[DeviceInfo] = []  # held back (hold_calibration)
        self.stored = 0  # the last RecordShot ticket stored
        self.durable = 0  # the last ticket reported durable (ShotsDurable)

    # ---- driving --------------------------------------------------------------------------
    def feed(self, event: ControllerEvent) -> list[Action]:
        actions = self.core.handle(event, self.now)
        if self.trace is not None:
            self.trace.append((self.now, event, actions))
        self.execute(actions)
        if self.stored > self.durable and not self.hold_durable:
            self.make_durable()
        return actions

    def make_durable(self, upto_ticket: int | None = None) -> None:
        """The shot writer reports every record up to `upto_ticket` (all stored) durable."""
        self.durable = self.stored if upto_ticket is None else upto_ticket
        self.feed(ShotsDurable(self.durable))

    def operator(self, event: ControllerEvent) -> list[Action]:
        actions = self.feed(event)
        self.pump()
        return actions

    def inject(self, text: str) -> None:
        self.sim.inject(text, self.now)
        self.pump()

    def step(self, dt: float | None = None) -> None:
        self.now += self.dt if dt is None else dt
        if self.link is not None:
            self.link.tick(self.now)
        self.sim.tick(self.now)
        self.pump()
        self.feed(Tick())
        self.pump()

    def run(self, seconds: float) -> None:
        end = self.now + seconds - 1e-9
        while self.now < end:
            self.step(min(self.dt, end - self.now + 1e-9))

    def run_until(self, done: Callable[[], bool], timeout: float) -> bool:
        end = self.now + timeout
        while not done():
            if self.now >= end:
                return False
            self.step()
        return True

    @property
    def wall(self) -> float:
        return self.wall_start + self.now

    def read_calibration(self, info: DeviceInfo) -> CalibrationLoaded:
        """What the runner's CalibrationReader reads (off the core)."""
        return CalibrationLoaded(info.serial, self.calibration(info), self.wall)

    def refresh_calibration(self) -> None:
        """The runner's periodic (or on-demand) refresh: read the source again, feed it."""
        assert self.core.device is not None
        self.feed(self.read_calibration(self.core.device))
        self.pump()

    def release_calibration(self) -> None:
        reads, self.calibration_reads = self.calibration_reads, []
        for info in reads:
            self.feed(self.read_calibration(info))
        self.pump()

    def connect(self, *, expect: State | None = State.STANDBY) -> None:
        self.operator(Connect())
        if expect is not None:
            assert self.run_until(lambda: self.core.state is expect, 2.0), (
                f"expected {expect}, controller is {self.core.state}: {self.core.causes}"
            )

    # ---- wiring ---------------------------------------------------------------------------
    def execute(self, actions: list[Action]) -> None:
        for action in actions:
            if self.on_action is not None:
                self.on_action(action)
            match action:
                case Send():
                    self.sent.append(SentCommand(self.now, action.command, action.token))
                    if self.link is None:
                        self.feed(CommandLost(action.token, "link closed"))
                        continue
                    seq = self.link.send(action.command, self.now)
                    self._tokens[seq] = action.token
                case OpenLink():
                    self._open()
                case CloseLink():
                    self.link = None
                    tokens, self._tokens = self._tokens, {}
                    for token in tokens.values():
                        self.feed(CommandLost(token, "link closed"))
                case RecordShot():
                    self.store.record(action.record)
                    self.stored = action.ticket
                case ReadCalibration():
                    if self.hold_calibration:
                        self.calibration_reads.append(action.info)
                    else:
                        self.feed(self.read_calibration(action.info))
                case Note():
                    self.notes.append(action)

    def _wire(self) -> list[LinkEvent]:
        """Move bytes both ways until quiet; returns the host link's events."""
        link = self.link
        events: list[LinkEvent] = []
        if link is None:
            return events
        for _ in range(50):
            out = link.data_to_send()
            if out:
                link.note_written(self.now)
                if not self.drop_from_host:
                    self.sim.receive(out, self.now)
            back = self.sim.output(self.now)
            if back and self.device_frames is not None:
                back = self._filter(back, self.device_frames)
            if back and not self.drop_from_device:
                link.receive_data(back, self.now)
            while (event := link.next_event()) is not None:
                events.append(event)
            if not out and not back:
                break
        return events

    @staticmethod
    def _filter(data: bytes, keep: Callable[[Message], bool]) -> bytes:
        decoder = FrameDecoder()
        decoder.feed(data)
        out = []
        while (item := decoder.next()) is not None:
            if not isinstance(item, Frame):
                continue
            try:
                message = decode_message(item.type, item.payload)
            except (ProtocolError, ValueError):
                continue
            if keep(message):
                out.append(encode_frame(item.type, item.seq, item.payload, item.version))
        return b"".join(out)

    def pump(self) -> None:
        for _ in range(50):
            events = self._wire()
            if not events:
                return
            for event in events:
                self._deliver(event)

    def _deliver(self, event: LinkEvent) -> None:
        match event:
            case Reply() if event.seq in self._tokens:
                self.feed(CommandDone(self._tokens.pop(event.seq), event.response))
            case CommandFailed() if event.seq in self._tokens:
                message = f"unanswered after {event.attempts} attempts"
                self.feed(CommandLost(self._tokens.pop(event.seq), message))
            case _:
                self.feed(event)

    def lose_transport(self, error: str = "device node gone") -> None:
        """The transport failed (cable out of the USB port): what HandpieceConnection reports."""
        self.link = None
        tokens, self._tokens = self._tokens, {}
        self.feed(TransportLost(error))
        for token in tokens.values():
            self.feed(CommandLost(token, error))

    def reconnect(self, sim: SimulatedHandpiece | None = None) -> None:
        """The connection reopened the URL (to `sim`, if another handpiece is plugged in)."""
        if sim is not None:
            self.sim = sim
        self._open(reconnected=True)
        self.pump()

    def _open(self, *, reconnected: bool = False) -> None:
        """What HandpieceConnection.open() does, in memory: HELLO and wait for HELLO_INFO."""
        link = HostLink(self.now, first_seq=1)  # deterministic bytes, so repeatable runs
        self.link = link
        seq = link.send(Hello(PROTOCOL_VERSION, PROTOCOL_VERSION), self.now)
        early: list[LinkEvent] = []
        deadline = self.now + 2.0
        while self.now < deadline:
            for event in self._wire():
                if isinstance(event, Reply) and event.seq == seq:
                    if isinstance(event.response, HelloInfo):
                        info = DeviceInfo.from_hello(event.response)
                        if not (reconnected or self.hold_calibration):
                            self.feed(self.read_calibration(info))  # as the runner's opening
                        self.feed(Reconnected(info) if reconnected else LinkOpened(info))
                        for item in early:
                            self._deliver(item)
                        return
                elif isinstance(event, CommandFailed) and event.seq == seq:
                    seq = link.send(Hello(PROTOCOL_VERSION, PROTOCOL_VERSION), self.now)
                else:
                    early.append(event)
            self.now += self.dt
            link.tick(self.now)
            self.sim.tick(self.now)
        self.link = None
        self.feed(LinkOpenFailed("no answer to HELLO"))

    # ---- looking --------------------------------------------------------------------------
    @property
    def state(self) -> State:
        return self.core.state

    def arms(self) -> list[Arm]:
        return [s.command for s in self.sent if isinstance(s.command, Arm)]

    def sent_types(self) -> list[str]:
        return [type(s.command).__name__ for s in self.sent]

    def device_shots(self) -> int:
        return self.sim.shot_no

    def notes_of(self, kind: str) -> list[str]:
        return [n.message for n in self.notes if n.kind == kind]
