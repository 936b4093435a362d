"""docs/protocol.md section 14 (SIM_CONTROL) and the simulator's parser cannot drift apart: every
command form the parser in drivers/sim/faults.py accepts is in the table of 14.2 and every form
there is accepted; every example, name and range of the spec is sent as SIM_CONTROL frames to a
simulated handpiece and answered as the spec says; every refusal of 14.5 is NAK MALFORMED."""

from __future__ import annotations

import ast
import inspect
import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

from drivers.protocol import (
    Ack,
    CalFire,
    Command,
    DeviceEvent,
    FrameDecoder,
    FrameRejected,
    Hello,
    HostLink,
    Interlock,
    MeterReading,
    Nak,
    NakReason,
    Param,
    ProtocolError,
    Reply,
    Response,
    SelfTest,
    SelfTestItem,
    SelfTestResult,
    SetParams,
    SimControl,
    StatusChanged,
    decode_message,
)
from drivers.sim import faults
from drivers.sim.firmware import SimulatedHandpiece

DOC = (Path(__file__).resolve().parents[1] / "docs" / "protocol.md").read_text(encoding="utf-8")
HANDPIECES = ("fractional-1550", "ndyag-1064")
PLACEHOLDER = re.compile(r"<[a-z]+>", re.IGNORECASE)


# ---- the spec --------------------------------------------------------------------------------
def section(title: str) -> str:
    """The text of one `### 14.x` subsection of section 14."""
    start = DOC.index("## 14 SIM_CONTROL")
    body = DOC[start : DOC.index("\n## 15 ", start)]
    match = re.search(rf"^### {re.escape(title)}\n(.*?)(?=^### |\Z)", body, re.M | re.S)
    assert match, f"docs/protocol.md 14 has no subsection {title!r}"
    return match.group(1)


def table(title: str) -> list[list[str]]:
    """The rows of the first table of a subsection, as cells (header and rule left out)."""
    lines = [line for line in section(title).splitlines() if line.startswith("|")]
    assert len(lines) > 2, f"no table in docs/protocol.md {title}"
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:]]


def code_spans(cell: str) -> list[str]:
    return re.findall(r"`([^`]*)`", cell)


@dataclass(frozen=True)
class Row:
    forms: tuple[str, ...]  # e.g. ("press", "press footswitch") or ("corrupt <N>",)
    arguments: str
    example: str


def command_rows() -> list[Row]:
    rows = []
    for command, arguments, _effect, example in table("14.2 Commands"):
        forms = tuple(code_spans(command))
        [text] = code_spans(example)
        rows.append(Row(forms, arguments, text))
    return rows


def shape(form: str) -> str:
    """A form with its placeholders made alike: `open <interlock>` -> `open <>`."""
    return PLACEHOLDER.sub("<>", form.lower())


def matches(form: str, text: str) -> bool:
    pattern = r"\s+".join(
        r"\S+" if PLACEHOLDER.fullmatch(w) else re.escape(w) for w in form.split()
    )
    return re.fullmatch(pattern, text.strip(), re.IGNORECASE) is not None


# ---- the code --------------------------------------------------------------------------------
def accepted_forms() -> set[str]:
    """Every command form parse_injection accepts, read from its source: a test of the whole
    text (`joined in _FIXED`, `joined == "replug"`) is that text; a test of the first word
    (`verb in _READINGS and len(args) == 1`) is that word and one `<>` per argument. Names
    (`_FIXED`, `_READINGS`) are looked up in drivers.sim.faults, so their entries count too."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(faults.parse_injection)))
    [function] = tree.body
    assert isinstance(function, ast.FunctionDef)
    forms: set[str] = set()
    for node in _ifs(function.body):
        conditions = _conditions(node.test)
        found = [w for t in conditions for w in [_words(t)] if w]
        if not found:
            continue  # `if not words:`
        assert len(found) == 1, f"line {node.lineno}: more than one test of the command words"
        name, words = found[0]
        if name == "joined":
            forms |= set(words)
        else:
            count = next((n for t in conditions if (n := _arg_count(t)) is not None), None)
            assert count is not None, f"line {node.lineno}: {words} with any number of words"
            forms |= {" ".join([word, *["<>"] * count]) for word in words}
    return forms


def _ifs(body: list[ast.stmt]) -> list[ast.If]:
    """The if statements of a function body, with every elif of theirs."""
    out = []
    for statement in body:
        node: ast.stmt | None = statement
        while isinstance(node, ast.If):
            out.append(node)
            node = node.orelse[0] if len(node.orelse) == 1 else None
    return out


def _conditions(test: ast.expr) -> list[ast.expr]:
    return list(test.values) if isinstance(test, ast.BoolOp) else [test]


def _words(test: ast.expr) -> tuple[str, list[str]] | None:
    """(`verb` or `joined`, the words) of `verb == "x"`, `verb in ("x", "y")` or `joined in
    _FIXED` (a name of drivers.sim.faults: its keys or items)."""
    if not (isinstance(test, ast.Compare) and isinstance(test.left, ast.Name)):
        return None
    if test.left.id not in ("verb", "joined") or len(test.ops) != 1:
        return None
    right = test.comparators[0]
    if isinstance(test.ops[0], ast.Eq) and isinstance(right, ast.Constant):
        return test.left.id, [str(right.value)]
    if isinstance(test.ops[0], ast.In) and isinstance(right, ast.Tuple):
        return test.left.id, [str(e.value) for e in right.elts if isinstance(e, ast.Constant)]
    if isinstance(test.ops[0], ast.In) and isinstance(right, ast.Name):
        return test.left.id, [str(word) for word in getattr(faults, right.id)]
    raise AssertionError(f"line {test.lineno}: a test of {test.left.id} this reader cannot read")


def _arg_count(test: ast.expr) -> int | None:
    """N of `len(args) == N`."""
    if (
        isinstance(test, ast.Compare)
        and isinstance(test.left, ast.Call)
        and isinstance(test.left.func, ast.Name)
        and test.left.func.id == "len"
        and isinstance(test.ops[0], ast.Eq)
        and isinstance(test.comparators[0], ast.Constant)
        and isinstance(test.comparators[0].value, int)
    ):
        return test.comparators[0].value
    return None


# ---- a simulated handpiece on the other end of SIM_CONTROL ---------------------------------------
class Bench:
    """A host link and a simulated handpiece wired together in memory, on a stepped clock."""

    def __init__(self, handpiece: str) -> None:
        self.now = 0.0
        self.sim = SimulatedHandpiece(handpiece, seed=2, now=self.now)
        self.host = HostLink(self.now, first_seq=1)
        self.call(Hello(1, 1))

    def answer(self, text: str) -> Response:
        """The device's own answer to SIM_CONTROL `text`, as its firmware writes it: read before
        the output shaping that some of these commands switch on (`corrupt 3` corrupts this
        very answer on the wire; a test of that is below)."""
        seq = self.host.send(SimControl(text), self.now)
        self.sim.receive(self.host.data_to_send(), self.now)
        decoder = FrameDecoder()
        decoder.feed(self.sim.link.data_to_send())
        answers = []
        while (frame := decoder.next()) is not None:
            assert not isinstance(frame, ProtocolError), frame
            message = decode_message(frame.type, frame.payload)
            if frame.seq == seq and isinstance(message, Response):
                answers.append(message)
        assert len(answers) == 1, (text, answers)
        return answers[0]  # (the host link never hears it: one answer() per Bench)

    def call(self, command: Command) -> tuple[Response, list[object]]:
        """Over the wire, output shaping and all: the answer and every event before it."""
        seq = self.host.send(command, self.now)
        seen: list[object] = []
        for _ in range(200):
            self.sim.receive(self.host.data_to_send(), self.now)
            self.host.receive_data(self.sim.output(self.now), self.now)
            while (event := self.host.next_event()) is not None:
                if isinstance(event, Reply) and event.seq == seq:
                    return event.response, seen
                seen.append(event)
            self.now += 0.005
            self.host.tick(self.now)
            self.sim.tick(self.now)
        raise AssertionError(f"{command}: no answer in 1 s")


def acked(response: Response) -> bool:
    return response == Ack(SimControl.TYPE)


def refused(response: Response) -> bool:
    return response == Nak(SimControl.TYPE, NakReason.MALFORMED, 0, 0)


# ---- 14.2: the commands ----------------------------------------------------------------------
def test_every_form_the_parser_accepts_is_in_the_spec_and_every_one_there_is_accepted() -> None:
    code = accepted_forms()
    doc = {shape(form) for row in command_rows() for form in row.forms}
    assert {"open <>", "replug", "corrupt <>", "power cycle", "fail <>"} <= code, code  # it reads
    assert not code - doc, (
        f"accepted by drivers/sim/faults.py, not in docs/protocol.md 14.2: {sorted(code - doc)}"
    )
    assert not doc - code, (
        f"in docs/protocol.md 14.2, not accepted by the parser: {sorted(doc - code)}"
    )


@pytest.mark.parametrize("row", command_rows(), ids=lambda row: row.forms[0])
@pytest.mark.parametrize("handpiece", HANDPIECES)
def test_every_example_of_the_spec_is_acknowledged(row: Row, handpiece: str) -> None:
    assert any(matches(form, row.example) for form in row.forms), (row.example, row.forms)
    assert acked(Bench(handpiece).answer(row.example))
    assert acked(Bench(handpiece).answer(row.example.upper()))  # case does not matter
    spaced = "  " + row.example.replace(" ", " \t ") + " "
    assert acked(Bench(handpiece).answer(spaced))  # nor spacing


@dataclass(frozen=True)
class Range:
    command: str
    whole: bool
    lo: float
    hi: float


def ranges() -> list[Range]:
    out = []
    for row in command_rows():
        found = re.search(r"(whole number|number), (-?[\d.]+) to (-?[\d.]+)", row.arguments)
        if found is None:
            continue
        kind, lo, hi = found.groups()
        out.append(Range(row.forms[0].split()[0], kind == "whole number", float(lo), float(hi)))
    return out


@pytest.mark.parametrize("spec", ranges(), ids=lambda spec: spec.command)
def test_every_range_of_the_spec_is_the_simulators_both_bounds_included(spec: Range) -> None:
    step = 1.0 if spec.whole else 0.001
    inside, outside = [spec.lo, spec.hi], [spec.lo - step, spec.hi + step]
    for value in inside + outside:
        text = f"{spec.command} {value:.0f}" if spec.whole else f"{spec.command} {value:.3f}"
        answer = Bench("ndyag-1064").answer(text)
        assert (acked if value in inside else refused)(answer), (text, answer)


def test_every_numeric_argument_has_a_range() -> None:
    numeric = {
        row.forms[0].split()[0]
        for row in command_rows()
        for form in row.forms
        if PLACEHOLDER.search(form) and not form.endswith(("<interlock>", "<item>"))
    }
    assert numeric == {spec.command for spec in ranges()}
    assert len(numeric) == 6, numeric  # corrupt, truncate, garbage, delay, drift, gain


# ---- 14.3 and 14.4: the names ----------------------------------------------------------------
def interlock_names() -> list[tuple[str, Interlock, dict[str, bool]]]:
    out = []
    for name, also, interlock, *has in table("14.3 Interlock names"):
        fitted = {hp: cell == "yes" for hp, cell in zip(HANDPIECES, has, strict=True)}
        for word in code_spans(name) + code_spans(also):
            out.append((word, Interlock[code_spans(interlock)[0]], fitted))
    return out


def test_the_interlock_and_self_test_names_are_the_parsers() -> None:
    doc = {word for word, _, _ in interlock_names()}
    code = set(faults.INTERLOCK_NAMES)
    assert doc == code, (
        f"only in 14.3: {sorted(doc - code)}; only in faults.py: {sorted(code - doc)}"
    )
    doc = {code_spans(name)[0] for name, _ in table("14.4 Self-test items")}
    code = set(faults.SELFTEST_NAMES)
    assert doc == code, (
        f"only in 14.4: {sorted(doc - code)}; only in faults.py: {sorted(code - doc)}"
    )


@pytest.mark.parametrize("handpiece", HANDPIECES)
@pytest.mark.parametrize(
    ("name", "interlock", "fitted"), interlock_names(), ids=[n for n, _, _ in interlock_names()]
)
def test_each_interlock_name_opens_that_input_on_the_handpieces_that_have_it(
    handpiece: str, name: str, interlock: Interlock, fitted: dict[str, bool]
) -> None:
    bench = Bench(handpiece)
    answer, events = bench.call(SimControl(f"open {name}"))
    if not fitted[handpiece]:
        assert refused(answer)
        return
    assert acked(answer)
    changes = [e.event for e in events if isinstance(e, DeviceEvent)]
    statuses = [e for e in changes if isinstance(e, StatusChanged)]
    assert statuses, "the input's change went out before the ACK"  # 14.1
    assert not statuses[-1].body.is_closed(interlock)
    answer, _ = bench.call(SimControl(f"close {name}"))
    assert acked(answer) and bench.sim.status().is_closed(interlock)


@pytest.mark.parametrize(
    ("name", "item"), table("14.4 Self-test items"), ids=lambda x: x.strip("`")
)
def test_each_self_test_name_fails_that_item(name: str, item: str) -> None:
    bench = Bench("fractional-1550")
    assert acked(bench.call(SimControl(f"fail {code_spans(name)[0]}"))[0])
    result, _ = bench.call(SelfTest())
    assert isinstance(result, SelfTestResult)
    assert dict(result.items) == {int(i): int(i.name != code_spans(item)[0]) for i in SelfTestItem}


# ---- 14.5: refusals --------------------------------------------------------------------------
def refusals() -> list[tuple[str, str]]:
    out = []
    for text, handpiece, _why in table("14.5 Refused"):
        spans = code_spans(text)
        out.append((spans[0] if spans else "", handpiece))  # `(empty)` has no code span
    return out


@pytest.mark.parametrize(("text", "where"), refusals())
def test_every_refusal_of_the_spec_is_nak_malformed_and_changes_nothing(
    text: str, where: str
) -> None:
    for handpiece in HANDPIECES if where == "either" else (where,):
        bench = Bench(handpiece)
        before = bench.sim.status()
        assert refused(bench.answer(text)), (text, handpiece)
        after = bench.sim.status()
        assert (before.closed, before.known, before.footswitch, before.state) == (
            after.closed,
            after.known,
            after.footswitch,
            after.state,
        )
        shaper = bench.sim.shaper
        assert (shaper.corrupt, shaper.truncate, shaper.garbage, shaper.delay_s) == (0, 0, 0, 0)
        assert (bench.sim.energy.drift, bench.sim.energy.gain) == (0.0, 1.0)


def test_at_the_top_of_the_energy_ranges_the_simulator_still_answers() -> None:
    """What the ranges are for: `gain 1e300` once made the next pulse raise in the firmware,
    its reading too large for the u32 of METER_READING."""
    bench = Bench("ndyag-1064")
    for command in (SimControl("gain 10"), SimControl("drift 1000"), SelfTest()):
        bench.call(command)
    top = {p: round(hi * 1000) for p, (_, hi) in bench.sim.model.capabilities.items()}
    assert isinstance(bench.call(SetParams(tuple(top.items())))[0], Ack)
    reading, _ = bench.call(CalFire(top[Param.FLUENCE_J_CM2]))
    assert isinstance(reading, MeterReading)
    assert reading.measured_milli > 100 * reading.set_milli  # 10 x 11, less the noise


# ---- what 14.1 and 14.2 say about the answer itself -------------------------------------------
def test_corrupt_counts_its_own_ack_first_and_the_retries_are_answered_from_the_cache() -> None:
    bench = Bench("ndyag-1064")
    answer, events = bench.call(SimControl("corrupt 2"))
    assert acked(answer)  # the third transmission's answer: the first two were corrupted
    assert sum(isinstance(e, FrameRejected) for e in events) == 2
    assert bench.sim.link.duplicates == 2  # retransmissions, not new commands


@pytest.mark.parametrize("text", ["reboot", "power cycle"])
def test_a_power_cycle_is_acknowledged_after_its_boot(text: str) -> None:
    bench = Bench("ndyag-1064")
    boot_before = bench.sim.boot_id
    answer, events = bench.call(SimControl(text))
    assert acked(answer)
    changes = [type(e.event).__name__ for e in events if isinstance(e, DeviceEvent)]
    expected = ["Boot", "StatusChanged", "Fault"] if text == "reboot" else ["Boot", "StatusChanged"]
    assert changes == expected
    assert bench.sim.boot_id != boot_before


def physical(bench: Bench) -> tuple[object, ...]:
    """What 14.1 calls physical: the inputs, the footswitch, the temperature and the faults."""
    status, sim = bench.sim.status(), bench.sim
    shaping = (sim.shaper.corrupt, sim.shaper.truncate, sim.shaper.garbage, sim.shaper.delay_s)
    return (
        status.closed,
        status.known,
        status.footswitch,
        sim.footswitch_stuck,
        round(sim.thermal.temp_c, 6),
        shaping,
        sim.energy.drift,
        sim.energy.gain,
        frozenset(sim.selftest_failures),
    )


@pytest.mark.parametrize("handpiece", HANDPIECES)
def test_the_defaults_of_the_spec_and_a_power_cycle_keeps_what_was_injected(handpiece: str) -> None:
    fresh = Bench(handpiece)
    every_input = sum(1 << i for i in fresh.sim.model.interlocks)
    assert physical(fresh) == (
        every_input,
        every_input,
        0,
        False,
        25.0,
        (0, 0, 0, 0.0),
        0.0,
        1.0,
        frozenset(),
    )
    result, _ = fresh.call(SelfTest())
    assert isinstance(result, SelfTestResult) and result.passed == 1
    # Without the wire from here: `truncate 7` would cut the answers short.
    for text in ("open key", "press", "stick footswitch", "truncate 7", "drift 5", "gain 2"):
        fresh.sim.inject(text, fresh.now)
    fresh.sim.inject("fail meter", fresh.now)
    injected = physical(fresh)
    assert injected[0] != every_input and injected[5] == (0, 7, 0, 0.0)
    boot = fresh.sim.boot_id
    fresh.sim.inject("power cycle", fresh.now)
    assert fresh.sim.boot_id != boot
    assert physical(fresh) == injected
