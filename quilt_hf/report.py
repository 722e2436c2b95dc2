"""A report a person reads: Markdown and a self-contained HTML page with tables and pictures.

Sections are added as the stages finish; ``write`` renders both files. Pictures are PNG files beside the
report (linked from the Markdown, embedded as base64 in the HTML so the page can be sent on its own).
"""

from __future__ import annotations

import base64
import html
import os
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from quilt_hf import atomic


@dataclass
class Section:
    """A titled part of the report: paragraphs, tables and pictures, kept in the order they were added."""

    title: str
    blocks: list[tuple] = field(default_factory=list)

    def text(self, paragraph: str) -> Section:
        """Add a paragraph (`code` and **bold** spans are rendered in HTML)."""
        self.blocks.append(("text", paragraph))
        return self

    def table(self, header: Sequence[str], rows: Sequence[Sequence[object]]) -> Section:
        self.blocks.append(("table", [str(h) for h in header], [[str(c) for c in row] for row in rows]))
        return self

    def image(self, path: str | Path, caption: str) -> Section:
        self.blocks.append(("image", str(path), caption))
        return self


class Report:
    """Collects sections and writes ``report.md`` and ``report.html`` into ``folder``."""

    def __init__(self, folder: str | Path, title: str):
        self.folder = Path(folder)
        self.title = title
        self.sections: list[Section] = []

    def section(self, title: str) -> Section:
        section = Section(title)
        self.sections.append(section)
        return section

    def _relative(self, path: str | Path) -> str:
        return os.path.relpath(Path(path), self.folder)

    def markdown(self) -> str:
        lines = [f"# {self.title}", ""]
        for section in self.sections:
            lines += [f"## {section.title}", ""]
            for kind, *content in section.blocks:
                if kind == "text":
                    lines += [content[0], ""]
                elif kind == "table":
                    header, rows = content
                    lines.append("| " + " | ".join(header) + " |")
                    lines.append("|" + "---|" * len(header))
                    lines += ["| " + " | ".join(row) + " |" for row in rows]
                    lines.append("")
                else:
                    path, caption = content
                    lines += [f"![{caption}]({self._relative(path)})", f"*{caption}*", ""]
        return "\n".join(lines)

    def html(self) -> str:
        parts = [
            "<!doctype html><html><head><meta charset='utf-8'>",
            f"<title>{html.escape(self.title)}</title>",
            "<style>body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
            "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}"
            "th{background:#f3f0f5}img{max-width:100%;border:1px solid #ddd}figure{margin:1em 0}"
            "figcaption{color:#555;font-size:90%}code{background:#f5f5f5;padding:1px 3px}</style></head><body>",
            f"<h1>{html.escape(self.title)}</h1>",
        ]
        for section in self.sections:
            parts.append(f"<h2>{html.escape(section.title)}</h2>")
            for kind, *content in section.blocks:
                if kind == "text":
                    parts.append(f"<p>{_inline_code(html.escape(content[0]))}</p>")
                elif kind == "table":
                    header, rows = content
                    parts.append("<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>")
                    parts += ["<tr>" + "".join(f"<td>{_cell_html(c)}</td>" for c in row) + "</tr>" for row in rows]
                    parts.append("</table>")
                else:
                    path, caption = content
                    data = base64.b64encode(Path(path).read_bytes()).decode()
                    parts.append(
                        f"<figure><img src='data:image/png;base64,{data}' alt='{html.escape(caption)}'>"
                        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
                    )
        parts.append("</body></html>")
        return "\n".join(parts)

    def write(self) -> tuple[Path, Path]:
        self.folder.mkdir(parents=True, exist_ok=True)
        md, page = self.folder / "report.md", self.folder / "report.html"
        for path, text in ((md, self.markdown()), (page, self.html())):
            atomic.write_text(path, text)
        return md, page


def _cell_html(cell: str) -> str:
    """A table cell as HTML: escaped, with the ``<br>`` line breaks that Markdown tables use kept."""
    return "<br>".join(html.escape(part) for part in cell.split("<br>"))


def _inline_code(text: str) -> str:
    """`code` and **bold** spans of already-escaped text as HTML."""
    pieces = text.split("`")
    text = "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(pieces))
    pieces = text.split("**")
    return "".join(f"<strong>{p}</strong>" if i % 2 else p for i, p in enumerate(pieces))


def pairs_grid(images: Sequence, captions: Sequence[str], path: str | Path, *, columns: int = 3, title: str = "") -> Path:
    """Save a grid of image-text pairs (PIL images with their wrapped captions) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    count = len(images)
    rows = max(1, -(-count // columns))
    figure, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 4.0 * rows), squeeze=False)
    for k, axis in enumerate(axes.flat):
        axis.axis("off")
        if k >= count:
            continue
        axis.imshow(images[k])
        caption = captions[k] if len(captions[k]) <= 330 else captions[k][:327] + "..."
        axis.set_title("\n".join(textwrap.wrap(caption, 48)), fontsize=8, loc="left")
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return Path(path)
