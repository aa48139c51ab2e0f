"""Small HTML pieces the reports share: escaping, tables, cards, a matplotlib figure as inline SVG.

The last step before a report is written (monitor/reports/model_report.py and any other report
that wants them): pure functions from values to HTML strings. Figures are inline SVG (no
network, no files) and carry their time axis and the extent of the data plotted on it as data
attributes (`data-axis-from`, `data-axis-to`, `data-data-from`, `data-data-to`, ISO 8601), so a
test or a reader can check that the data fills the axis.
"""

from __future__ import annotations

import html
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;color:#1f2933;
  background:#f7f8fa;line-height:1.45}
main{max-width:1180px;margin:0 auto;padding:20px 28px 48px}
h1{font-size:24px;margin:4px 0 2px}h2{font-size:19px;margin:28px 0 8px;border-bottom:2px solid
  #d9dee5;padding-bottom:4px}h3{font-size:16px;margin:0 0 6px}
.meta{color:#52606d;font-size:13px;margin:0 0 12px}
.verdict{background:#fff;border-left:6px solid #b45309;padding:12px 16px;font-size:15.5px;
  box-shadow:0 1px 2px rgba(0,0,0,.08)}
.verdict.ok{border-left-color:#2f855a}.verdict.harm{border-left-color:#c53030}
.card{background:#fff;border:1px solid #d9dee5;border-radius:6px;padding:12px 16px;margin:12px 0;
  box-shadow:0 1px 2px rgba(0,0,0,.05)}
.card .why{margin:4px 0 8px}.card .action{background:#fffbeb;border:1px solid #f6d58e;
  padding:6px 10px;border-radius:4px;margin:8px 0}
.badge{display:inline-block;border-radius:10px;padding:1px 8px;font-size:12px;font-weight:600;
  margin-left:6px;vertical-align:middle}
.badge.open{background:#fde2e1;color:#9b1c1c}.badge.acknowledged{background:#fef3c7;color:#92400e}
.badge.resolved{background:#dcfce7;color:#166534}.badge.harm{background:#c53030;color:#fff}
table{border-collapse:collapse;font-size:13px;margin:6px 0;background:#fff}
td,th{border:1px solid #d9dee5;padding:3px 8px;text-align:right;vertical-align:top}
th{background:#eef1f5}td.l,th.l{text-align:left}
tr.outlier td{background:#fde2e1}tr.drifted td{background:#fff4e5}
.examples{display:flex;flex-wrap:wrap;gap:10px;margin:6px 0}
.example{width:200px;font-size:12px;background:#f7f8fa;border:1px solid #d9dee5;padding:6px;
  border-radius:4px}.example img{width:128px;height:128px;display:block;margin-bottom:4px}
.figure{background:#fff;border:1px solid #d9dee5;border-radius:6px;padding:6px;margin:8px 0}
.figure svg{width:100%;height:auto}.caption{font-size:12.5px;color:#52606d;margin:2px 6px}
.note{color:#92400e;font-size:13px}.muted{color:#52606d;font-size:13px}
details summary{cursor:pointer;color:#1d4ed8}
iframe{width:100%;height:1400px;border:1px solid #d9dee5;background:#fff}
"""


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


@dataclass(frozen=True)
class Cell:
    """One table cell: text (escaped when rendered), left-aligned or not, a title tooltip."""

    text: str
    left: bool = False
    title: str = ""


def table(headers: Sequence[str], rows: Iterable[Sequence[Cell | str]], *,
          row_classes: Sequence[str] | None = None, table_id: str = "",
          left: int = 1) -> str:  # fmt: skip
    """An HTML table; the first `left` columns of plain strings are left-aligned."""
    head = "".join(f"<th class='{'l' if i < left else ''}'>{esc(h)}</th>"
                   for i, h in enumerate(headers))  # fmt: skip
    body = []
    for n, row in enumerate(rows):
        cls = row_classes[n] if row_classes and n < len(row_classes) else ""
        cells = []
        for i, cell in enumerate(row):
            c = cell if isinstance(cell, Cell) else Cell(str(cell), left=i < left)
            title = f" title='{esc(c.title)}'" if c.title else ""
            cells.append(f"<td class='{'l' if c.left else ''}'{title}>{esc(c.text)}</td>")
        body.append(f"<tr class='{cls}'>{''.join(cells)}</tr>")
    ident = f" id='{esc(table_id)}'" if table_id else ""
    return f"<table{ident}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


@dataclass(frozen=True)
class TimeExtent:
    """A figure's time axis and the span its data covers (both in event time)."""

    axis_from: datetime
    axis_to: datetime
    data_from: datetime
    data_to: datetime

    @property
    def share(self) -> float:
        """The share of the axis the data spans (1.0: it fills the axis)."""
        axis = (self.axis_to - self.axis_from).total_seconds()
        data = (self.data_to - self.data_from).total_seconds()
        return data / axis if axis > 0 else 1.0


def svg_figure(fig: Any, *, figure_id: str, caption: str = "",
               extent: TimeExtent | None = None) -> str:  # fmt: skip
    """A matplotlib figure as inline SVG in a captioned block (the figure is closed)."""
    import matplotlib.pyplot as plt

    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    plt.close(fig)
    svg = buf.getvalue()
    svg = svg[svg.index("<svg") :]  # the XML prologue and doctype are not valid inside HTML
    attrs = ""
    if extent is not None:
        attrs = "".join(
            f" data-{name}='{value.isoformat()}'"
            for name, value in (("axis-from", extent.axis_from), ("axis-to", extent.axis_to),
                                ("data-from", extent.data_from), ("data-to", extent.data_to))
        )  # fmt: skip
    cap = f"<div class='caption'>{esc(caption)}</div>" if caption else ""
    return f"<div class='figure' id='{esc(figure_id)}'{attrs}>{svg}{cap}</div>"


def pyplot() -> Any:
    """matplotlib's pyplot on the headless backend, text kept as text in the SVG."""
    import matplotlib

    matplotlib.use("Agg")  # headless: no display on servers
    import matplotlib.pyplot as plt

    plt.rcParams.update({"svg.fonttype": "none", "font.size": 9, "axes.spines.top": False,
                         "axes.spines.right": False})  # fmt: skip
    return plt
