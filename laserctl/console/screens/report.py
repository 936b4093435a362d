"""The end of a session: what was delivered, what went wrong, where the report is."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import Button, Footer, Static

from ..host import OnConsole
from ..widgets import ConsoleHeader

if TYPE_CHECKING:
    from ..treatment import SessionSummary


def summary_text(summary: SessionSummary) -> Text:
    r = summary.report
    hp = r.get("handpiece") or {}
    text = Text()
    text.append(f"Session {summary.session_id}\n", style="bold")
    text.append(f"patient {summary.patient}, area {summary.area}, course {summary.course}\n")
    sim = " (SIMULATED)" if hp.get("simulated") else ""
    text.append(f"handpiece {hp.get('handpiece', '?')} {hp.get('serial', '?')}{sim}\n")
    text.append(f"plan {r['plan_id']}\n")
    text.append(f"final state {r['final_state']}\n\n")
    text.append("shots  ", style="bold")
    text.append(
        f"{r['shots_seen']} this session (device count {r['shots_fired']}), "
        f"{summary.shots_logged} in the shot log\n"
    )
    text.append("dose   ", style="bold")
    text.append(f"{r['pulses_used']} pulses, {r['fluence_used_j_cm2']:.1f} J/cm2\n\n")
    faults = r["faults"]
    text.append(f"faults {len(faults)}\n", style="bold red" if faults else "bold")
    for fault in faults:
        text.append(f"  - in {fault['state']}: {fault['cause']}\n")
    refusals = r["refusals"]
    text.append(f"refusals {len(refusals)}\n", style="bold")
    for refusal in refusals[-5:]:
        text.append(f"  - {refusal['command']}: {refusal['reason']}\n")
    warnings = r["warnings"]
    if warnings:
        text.append(f"warnings {len(warnings)}\n", style="bold yellow")
        for warning in warnings[-5:]:
            text.append(f"  - {warning}\n")
    text.append("\nshot log  ", style="bold")
    text.append(summary.log_note + "\n", style="green" if summary.log_ok else "bold red")
    text.append("report    ", style="bold")
    if summary.report_path:
        text.append(summary.report_path)
    else:
        text.append(f"not written: {summary.report_problem}", style="bold red")
    return text


class ReportScreen(OnConsole, Screen[None]):
    DEFAULT_CSS = """
    ReportScreen #body { padding: 1 2; }
    ReportScreen #buttons { height: 3; margin: 1 0 0 0; }
    ReportScreen #buttons Button { margin: 0 2 0 0; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("n", "next_patient", "Next patient"),
        Binding("q", "app.quit", "Quit"),
    ]
    AUTO_FOCUS = "#next"

    def __init__(self, summary: SessionSummary) -> None:
        super().__init__()
        self.summary = summary

    def compose(self) -> ComposeResult:
        yield ConsoleHeader("Session report")
        with VerticalScroll(id="body"):
            yield Static(summary_text(self.summary), id="summary")
            with Horizontal(id="buttons"):
                yield Button("Next patient (n)", id="next", variant="primary")
                yield Button("Quit (q)", id="quit")
        yield Footer()

    @on(Button.Pressed, "#next")
    def action_next_patient(self) -> None:
        self.console.leave_session()

    @on(Button.Pressed, "#quit")
    async def _quit(self) -> None:
        await self.console.action_quit()
