"""The HTML every sftpick page is made of: one style, escaping, a plotly figure without its
JS, and the page around them with plotly's JS inlined (no network needed to view it). Used by
the run report and the evaluation page."""
from __future__ import annotations

import html

MAX_CHARS = 1200  # text shown per field; the rest is cut with a note

STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:1100px;color:#222;padding:0 1rem}
h1{font-size:1.6rem}h2{margin-top:2.2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:.25rem .6rem;text-align:left}
td.n{text-align:right;font-variant-numeric:tabular-nums}
.note{background:#fff6d6;border-left:4px solid #e0b400;padding:.4rem .8rem}
.card{border:1px solid #ddd;border-radius:6px;padding:.6rem .9rem;margin:.8rem 0}
.card pre,pre.manifest{white-space:pre-wrap;word-break:break-word;background:#f6f6f6;padding:.5rem;margin:.3rem 0}
.meta{color:#555;font-size:.9em}
table.pair{width:100%;table-layout:fixed;margin:.6rem 0}table.pair td{vertical-align:top;width:50%}
table.pair pre{white-space:pre-wrap;word-break:break-word;background:#f6f6f6;padding:.5rem;margin:.3rem 0}
"""


def figure_html(fig, missing: str = "no numeric score column to plot.") -> str:
    if fig is None:
        return f'<p class="note">{escape(missing)}</p>'
    return f'<div class="plot">{fig.to_html(full_html=False, include_plotlyjs=False, config={"displaylogo": False})}</div>'


def page(title: str, body: str, *, run_id: str | None = None) -> str:
    from plotly.offline import get_plotlyjs

    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f'<meta name="sftpick-run-id" content="{escape(run_id or "")}">'
            f"<style>{STYLE}</style><script>{get_plotlyjs()}</script></head>\n<body>\n{body}\n</body></html>\n")


def cut(text: str) -> str:
    return text if len(text) <= MAX_CHARS else text[:MAX_CHARS] + f"… [{len(text) - MAX_CHARS} more characters]"


def escape(value) -> str:
    """Any value as text safe inside HTML (quotes too: it may sit in an attribute)."""
    return html.escape(str(value), quote=True)
