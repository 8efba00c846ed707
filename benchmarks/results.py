"""The result type every benchmark returns, and the table and JSON they are reported as."""

from __future__ import annotations

import json
import operator
from dataclasses import asdict, dataclass, field
from pathlib import Path

_COMPARISONS = {">=": operator.ge, "<=": operator.le}


@dataclass
class Figure:
    """One measured figure and the target it is held to.

    Attributes:
        family: the benchmark it belongs to ("compute", "features", ...).
        name: what it measures, short ("training / GEMM ceiling").
        value: the measured number (usually a ratio of two timings from the same process).
        unit: "x" for ratios, or a unit ("clips/s", "MB").
        target: the number `value` must reach, or None for a figure shown for context only.
        comparison: ">=" or "<=": how `value` is held against `target`.
        details: the raw timings and sizes the figure was computed from.
        note: a short remark printed under the table (what bounds it, what differs in --quick).
    """

    family: str
    name: str
    value: float
    unit: str = "x"
    target: float | None = None
    comparison: str = ">="
    details: dict = field(default_factory=dict)
    note: str = ""

    @property
    def status(self) -> str:
        """ "PASS" or "MISS" against the target; "info" when there is none."""
        if self.target is None:
            return "info"
        return "PASS" if _COMPARISONS[self.comparison](self.value, self.target) else "MISS"

    def to_dict(self) -> dict:
        return {**asdict(self), "status": self.status}


def format_number(value: float) -> str:
    """Three significant digits, or an exponent for very small or large numbers."""
    if value == 0 or 1e-2 <= abs(value) < 1e5:
        return f"{value:.3g}"
    return f"{value:.2e}"


def table(figures: list[Figure]) -> str:
    """A Markdown table: family, figure, value, target, status; notes as a numbered list below."""
    rows = [("family", "figure", "value", "target", "status")]
    notes = []
    for figure in figures:
        value = f"{format_number(figure.value)} {figure.unit}".strip()
        target = (
            "-"
            if figure.target is None
            else f"{figure.comparison} {format_number(figure.target)} {figure.unit}".strip()
        )
        name = figure.name
        if figure.note:
            notes.append(figure.note)
            name = f"{name} [{len(notes)}]"
        rows.append((figure.family, name, value, target, figure.status))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]

    def line(cells):
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"

    lines = [line(rows[0]), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += [line(row) for row in rows[1:]]
    lines += [""] + [f"[{n}] {note}" for n, note in enumerate(notes, 1)] if notes else []
    return "\n".join(lines)


def write_json(path: str | Path, figures: list[Figure], context: dict) -> None:
    """Writes {"context": ..., "figures": [...]} with every figure's status."""
    document = {"context": context, "figures": [figure.to_dict() for figure in figures]}
    Path(path).write_text(json.dumps(document, indent=2, default=_plain) + "\n", encoding="utf-8")


def _plain(value):
    """numpy scalars and paths as plain JSON values."""
    if hasattr(value, "item"):
        return value.item()
    return str(value)
