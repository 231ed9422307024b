"""The files `coemogen evaluate` writes, all from the report data (the dict `evaluate` returns):
metrics.json (the data itself), metrics.md (the table) and report.html (the table, the networks,
any warnings, bar charts and a grid of generated images per emotion)."""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display needed

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from PIL import Image  # noqa: E402

from ..data.images import image_grid  # noqa: E402
from ..io import write_text  # noqa: E402
from ..tables import format_table  # noqa: E402
from .metrics import PAPER_METRICS, REPORTED_KEYS  # noqa: E402

METRICS = REPORTED_KEYS  # the table's columns
CHARTED = PAPER_METRICS


def table_rows(report: dict) -> list[dict]:
    """One row per emotion, then `overall`: {"emotion": name, metric: value, ...}."""
    return [{"emotion": e, **m} for e, m in report["per_emotion"].items()] + [
        {"emotion": "overall", **report["overall"]}
    ]


def _columns(rows: list[dict]) -> list[str]:
    """The reported metrics this report has (the relation metric only where the judges have a relation head)."""
    return ["emotion", *(m for m in METRICS if any(m in row for row in rows))]


def markdown_table(report: dict) -> str:
    """The metrics table in Markdown (metrics.md and the command's summary)."""
    rows = table_rows(report)
    return format_table(rows, _columns(rows))


def _cell(value: object) -> str:
    """A value as the tables print it (floats to 4 significant digits), HTML-escaped."""
    return html.escape(f"{value:.4g}" if isinstance(value, float) else str(value))


def html_table(report: dict) -> str:
    """The metrics table as an HTML <table>: a header row, then one row per emotion and `overall`."""
    columns = _columns(table_rows(report))
    head = "<tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in columns) + "</tr>"
    body = "".join(
        "<tr>" + "".join(f"<td>{_cell(row.get(c, ''))}</td>" for c in columns) + "</tr>" for row in table_rows(report)
    )
    return f"<table border='1' cellpadding='4'><thead>{head}</thead><tbody>{body}</tbody></table>"


def _png_data(obj: Image.Image | Figure) -> str:
    """A PIL image or a matplotlib figure as a PNG data URL."""
    buf = io.BytesIO()
    if isinstance(obj, Image.Image):
        obj.save(buf, format="PNG")
    else:
        obj.savefig(buf, format="png", dpi=80)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _charts(report: dict) -> str:
    emotions = list(report["per_emotion"])
    fig, axes = plt.subplots(1, len(CHARTED), figsize=(16, 3))
    for ax, key in zip(axes, CHARTED):
        ax.bar(emotions, [report["per_emotion"][e][key] for e in emotions], color="tab:blue")
        ax.set_title(key)
        ax.tick_params(axis="x", rotation=60, labelsize=7)
    fig.tight_layout()
    try:
        return _png_data(fig)
    finally:
        plt.close(fig)


def render_html(report: dict, generated: dict[str, list[Image.Image]]) -> str:
    """report.html's text, from the report data and the generated images by emotion."""
    settings = report.get("settings", {})
    networks = "".join(
        f"<li>{html.escape(role)}: {html.escape(str(name))}</li>" for role, name in settings.get("networks", {}).items()
    )
    warnings = "".join(f"<li>{html.escape(w)}</li>" for w in settings.get("warnings", []))
    sections = []
    for emotion in report["per_emotion"]:
        images = generated.get(emotion, [])
        if not images:
            continue
        grid = image_grid(images[:16], columns=8)
        sections.append(
            f"<h3>{html.escape(emotion)}</h3><img alt='{html.escape(emotion, quote=True)}' src='{_png_data(grid)}' "
            f"style='image-rendering:pixelated;width:{min(100, 12 * len(images[:8]))}%'>"
        )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>CoEmoGen evaluation</title></head><body>"
        f"<h1>CoEmoGen evaluation</h1>{html_table(report)}"
        + (f"<h2>Warnings</h2><ul class='warnings'>{warnings}</ul>" if warnings else "")
        + f"<h2>Networks</h2><ul class='networks'>{networks}</ul>"
        f"<img alt='metrics per emotion' src='{_charts(report)}' width='100%'>"
        f"{''.join(sections)}</body></html>"
    )


def write_report(report: dict, generated: dict[str, list[Image.Image]], out: str | Path) -> Path:
    """Write metrics.md, report.html and then metrics.json into `out` (created if needed), each
    atomically; returns `out`."""
    out = Path(out)
    write_text(out / "metrics.md", markdown_table(report) + "\n")
    write_text(out / "report.html", render_html(report, generated))
    write_text(out / "metrics.json", json.dumps(report, indent=1))
    return out
