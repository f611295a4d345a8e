"""Small server-drawn SVG charts: no script, no external asset, readable without colour."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from markupsafe import Markup


def _fmt(value: float) -> str:
    if value >= 100 or value == int(value):
        return f"{value:,.0f}"
    return f"{value:,.2f}"


def sparkline(
    values: Sequence[float | None],
    *,
    label: str,
    unit: str = "",
    width: int = 160,
    height: int = 32,
    ceiling: float | None = None,
) -> Markup:
    """A line over ``values`` (oldest first); None is a gap (no data that minute).

    ``ceiling`` fixes the top of the scale (1.0 for a ratio); otherwise the
    largest value is the top. The SVG carries a ``<title>`` with the label,
    the latest value and the maximum, for screen readers and hover.
    """
    known = [v for v in values if v is not None]
    top = ceiling if ceiling is not None else max(known, default=0.0)
    top = top or 1.0
    n = len(values)
    step = width / max(n - 1, 1)
    segments: list[list[str]] = [[]]
    for i, v in enumerate(values):
        if v is None:
            if segments[-1]:
                segments.append([])
            continue
        x = i * step
        y = height - 2 - (min(v, top) / top) * (height - 4)
        segments[-1].append(f"{x:.1f},{y:.1f}")
    lines = "".join(
        f'<polyline points="{" ".join(pts)}" fill="none" stroke="currentColor" stroke-width="1.5"/>'
        for pts in segments
        if len(pts) > 1
    )
    dots = "".join(
        f'<circle cx="{pts[0].split(",")[0]}" cy="{pts[0].split(",")[1]}" r="1.5" '
        'fill="currentColor"/>'
        for pts in segments
        if len(pts) == 1
    )
    latest = known[-1] if known else None
    title = f"{label}: " + (
        "no data"
        if latest is None
        else f"latest {_fmt(latest)}{unit}, max {_fmt(max(known))}{unit}"
    )
    return Markup(
        f'<svg class="spark" role="img" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" aria-label="{escape(title)}">'
        f"<title>{escape(title)}</title>"
        f'<line x1="0" y1="{height - 1}" x2="{width}" y2="{height - 1}" class="axis"/>'
        f"{lines}{dots}</svg>"
    )
