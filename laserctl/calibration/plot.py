"""The calibration plot as a self-contained SVG: measured against set, the fit, the identity
line, and the residuals below. Hand-written SVG: no plotting library in the product."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from .fit import Fit, Point

WIDTH, HEIGHT = 640, 560
LEFT, RIGHT, TOP = 70, 20, 40
MAIN_H, GAP, RES_H = 300, 40, 100


def _ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    step = (hi - lo) / count if hi > lo else 1.0
    return [lo + step * i for i in range(count + 1)]


def svg(
    points: Sequence[Point],
    fit: Fit | None,
    *,
    title: str,
    unit: str,
    accepted: bool,
    notes: Sequence[str] = (),
) -> str:
    xs = [p.set for p in points] or [0.0, 1.0]
    ys = [p.measured for p in points] or [0.0, 1.0]
    x0, x1 = 0.0, max(xs) * 1.05
    y0, y1 = 0.0, max(*ys, *xs) * 1.05
    plot_w = WIDTH - LEFT - RIGHT

    def px(x: float) -> float:
        return LEFT + (x - x0) / (x1 - x0) * plot_w

    def py(y: float) -> float:
        return TOP + MAIN_H - (y - y0) / (y1 - y0) * MAIN_H

    res_top = TOP + MAIN_H + GAP
    residuals = [(p.measured / fit.at(p.set) - 1.0) * 100.0 for p in points] if fit else []
    r_span = max([3.0, *(abs(r) for r in residuals)]) * 1.2

    def pr(r: float) -> float:
        return res_top + RES_H / 2 - r / r_span * (RES_H / 2)

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="11">',
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>',
        f'<text x="{LEFT}" y="20" font-size="14">{escape(title)}</text>',
        f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{MAIN_H}" fill="none" '
        'stroke="#444"/>',
        f'<rect x="{LEFT}" y="{res_top}" width="{plot_w}" height="{RES_H}" fill="none" '
        'stroke="#444"/>',
    ]
    for t in _ticks(x0, x1):
        out.append(
            f'<text x="{px(t):.1f}" y="{TOP + MAIN_H + 14}" text-anchor="middle">{t:.3g}</text>'
        )
    for t in _ticks(y0, y1):
        out.append(
            f'<text x="{LEFT - 6}" y="{py(t) + 4:.1f}" text-anchor="end">{t:.3g}</text>'
            f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{py(t):.1f}" y2="{py(t):.1f}" '
            'stroke="#eee"/>'
        )
    out.append(
        f'<text x="{LEFT + plot_w / 2}" y="{TOP + MAIN_H + 28}" text-anchor="middle">'
        f"set ({escape(unit)})</text>"
        f'<text x="14" y="{TOP + MAIN_H / 2}" transform="rotate(-90 14 {TOP + MAIN_H / 2})" '
        f'text-anchor="middle">measured ({escape(unit)})</text>'
    )
    out.append(
        f'<line x1="{px(x0):.1f}" y1="{py(x0):.1f}" x2="{px(x1):.1f}" y2="{py(min(x1, y1)):.1f}" '
        'stroke="#999" stroke-dasharray="4 3"/>'
    )
    if fit is not None:
        out.append(
            f'<line x1="{px(x0):.1f}" y1="{py(fit.at(x0)):.1f}" x2="{px(x1):.1f}" '
            f'y2="{py(fit.at(x1)):.1f}" stroke="#1565c0" stroke-width="1.5"/>'
        )
    for p in points:
        out.append(f'<circle cx="{px(p.set):.1f}" cy="{py(p.measured):.1f}" r="3" fill="#c62828"/>')
    out.append(
        f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{pr(0):.1f}" y2="{pr(0):.1f}" stroke="#999"/>'
        f'<text x="{LEFT - 6}" y="{pr(0) + 4:.1f}" text-anchor="end">0 %</text>'
        f'<text x="{LEFT - 6}" y="{res_top + 10}" text-anchor="end">+{r_span:.1f} %</text>'
        f'<text x="{LEFT + 4}" y="{res_top + RES_H + 14}">residual (measured / fit - 1)</text>'
    )
    for p, r in zip(points, residuals, strict=False):
        out.append(f'<circle cx="{px(p.set):.1f}" cy="{pr(r):.1f}" r="2.5" fill="#6a1b9a"/>')
    lines = []
    if fit is not None:
        lines.append(
            f"measured = {fit.slope:.4f} x set {fit.offset:+.4f}; "
            f"residual {fit.residual_pct:.2f} %, linearity {fit.linearity_pct:.2f} %, "
            f"R2 {fit.r2:.5f}"
        )
    lines.append("ACCEPTED" if accepted else "REJECTED")
    lines.extend(notes)
    for i, line in enumerate(lines):
        out.append(
            f'<text x="{LEFT}" y="{HEIGHT - 12 - 14 * (len(lines) - 1 - i)}">{escape(line)}</text>'
        )
    out.append("</svg>")
    return "\n".join(out) + "\n"
