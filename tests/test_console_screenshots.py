"""docs/screenshots/*.svg (the README's) are what the console shows now."""

from __future__ import annotations

from laserctl.console import screenshots


def test_the_screenshots_are_current() -> None:
    rendered = screenshots.render_all()
    assert set(rendered) == set(screenshots.SCENES)
    stale = [
        name
        for name, svg in rendered.items()
        if not (screenshots.OUT / f"{name}.svg").exists()
        or (screenshots.OUT / f"{name}.svg").read_text(encoding="utf-8") != svg
    ]
    assert not stale, (
        f"stale screenshots {stale}: run `python -m laserctl.console.screenshots` (make docs)"
    )
    for svg in rendered.values():
        assert "E-STOP (Esc)" in svg.replace("&#160;", " ")
