"""Plain Markdown tables for command summaries and reports."""

from __future__ import annotations


def format_table(rows: list[dict], columns: list[str]) -> str:
    """A plain Markdown table (used by every command's summary)."""

    def fmt(v):
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    body = [[fmt(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(b[i]) for b in body)) if body else len(c) for i, c in enumerate(columns)]
    line = lambda cells: "| " + " | ".join(x.ljust(w) for x, w in zip(cells, widths)) + " |"  # noqa: E731
    return "\n".join([line(columns), line(["-" * w for w in widths])] + [line(b) for b in body])
