"""The service screen's calibration plot: measured against set, the fitted line and the
identity, drawn in character cells (a terminal has no canvas)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from rich.text import Text
from textual.widgets import Static

if TYPE_CHECKING:
    from laserctl.calibration.fit import Fit, Point


class CalibrationPlot(Static):
    """Measured against set, the fitted line and the identity, in character cells."""

    DEFAULT_CSS = "CalibrationPlot { border: round $primary; padding: 0 1; height: auto; }"

    def show(
        self,
        points: Sequence[Point],
        fit: Fit | None,
        unit: str,
        width: int = 48,
        height: int = 12,
    ) -> None:
        self.border_title = "Calibration: measured against set"
        if not points:
            self.update("no calibration pulses yet")
            return
        top = max(*(p.set for p in points), *(p.measured for p in points)) * 1.05
        grid = [[" "] * width for _ in range(height)]

        def put(x: float, y: float, mark: str) -> None:
            col = min(width - 1, max(0, round(x / top * (width - 1))))
            row = min(height - 1, max(0, height - 1 - round(y / top * (height - 1))))
            if grid[row][col] == " " or mark == "o":
                grid[row][col] = mark

        for i in range(width):
            x = top * i / (width - 1)
            put(x, x, ".")
            if fit is not None:
                put(x, fit.at(x), "-")
        for p in points:
            put(p.set, p.measured, "o")
        text = Text()
        for r, row in enumerate(grid):
            label = f"{top * (height - 1 - r) / (height - 1):7.1f} |" if r % 3 == 0 else "        |"
            text.append(label, style="dim")
            for ch in row:
                style = {"o": "bold cyan", "-": "green", ".": "dim"}.get(ch, "")
                text.append(ch, style=style)
            text.append("\n")
        text.append("        +" + "-" * width + "\n", style="dim")
        text.append(f"         0 .. {top:.1f} {unit} set", style="dim")
        text.append("\n o measured   - fit   . measured = set", style="dim")
        if fit is not None:
            text.append(
                f"\nmeasured = {fit.slope:.4f} x set {fit.offset:+.3f} {unit}; residual "
                f"{fit.residual_pct:.2f} %, linearity {fit.linearity_pct:.2f} %, "
                f"{fit.pulses} pulses at {fit.set_points} set points"
            )
        self.update(text)
