"""Rendering of explanation objects as plain text, Markdown and an HTML fragment.

An explanation is a list of ``Section`` objects (one per layer, or one per trace),
each a heading and ``Block``s: a title, lines of words and numbers (spans between
backticks are formulas or code), optionally a table and preformatted lines (number
grids). The three renderers below turn the same blocks into each format; the HTML
is an XHTML-valid fragment (``<section>`` elements) that a page can embed.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field

_CODE = re.compile(r"`([^`]*)`")


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]


@dataclass
class Block:
    title: str
    lines: list[str] = field(default_factory=list)
    table: Table | None = None
    pre: list[str] = field(default_factory=list)


@dataclass
class Section:
    heading: str
    blocks: list[Block] = field(default_factory=list)
    css_class: str = "convlens-layer"


def _plain(line: str) -> str:
    return _CODE.sub(r"\1", line)


def _table_text(table: Table, indent: str) -> list[str]:
    rows = [table.header] + [[_plain(c) for c in row] for row in table.rows]
    widths = [max(len(r[i]) for r in rows) for i in range(len(table.header))]
    out = []
    for number, row in enumerate(rows):
        out.append(indent + "  ".join(c.rjust(w) if number else c.ljust(w)
                                      for c, w in zip(row, widths)).rstrip())
        if number == 0:
            out.append(indent + "  ".join("-" * w for w in widths))
    return out


def to_text(sections: list[Section]) -> str:
    out: list[str] = []
    for section in sections:
        if out:
            out.append("")
        out += [section.heading, "=" * min(len(section.heading), 100)]
        for block in section.blocks:
            out.append(f"  {block.title}:" if block.title else "")
            out += ["    " + _plain(line) for line in block.lines]
            if block.table is not None:
                out += _table_text(block.table, "    ")
            out += ["    " + line for line in block.pre]
    return "\n".join(out)


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|")


def to_markdown(sections: list[Section], level: int = 2) -> str:
    hashes = "#" * level
    out: list[str] = []
    for section in sections:
        out += [f"{hashes} {section.heading}", ""]
        for block in section.blocks:
            if block.title:
                out += [f"**{block.title}**", ""]
            if block.lines:
                out += [f"- {line}" for line in block.lines] + [""]
            if block.table is not None:
                out.append("| " + " | ".join(_md_cell(h) for h in block.table.header) + " |")
                out.append("|" + "---|" * len(block.table.header))
                out += ["| " + " | ".join(_md_cell(c) for c in row) + " |"
                        for row in block.table.rows]
                out.append("")
            if block.pre:
                out += ["```"] + block.pre + ["```", ""]
    return "\n".join(out).rstrip() + "\n"


def _inline_html(line: str) -> str:
    parts = _CODE.split(line)
    return "".join(
        f"<code>{html.escape(part)}</code>" if i % 2 else html.escape(part)
        for i, part in enumerate(parts)
    )


def to_html(sections: list[Section], level: int = 3) -> str:
    """An HTML fragment (XHTML-valid): one ``<section>`` per section, no styles, no scripts."""
    out = ['<div class="convlens-explanation">']
    for section in sections:
        out.append(f'<section class="{html.escape(section.css_class)}">')
        out.append(f"<h{level}>{html.escape(section.heading)}</h{level}>")
        for block in section.blocks:
            out.append('<div class="convlens-block">')
            if block.title:
                out.append(f"<h{level + 1}>{html.escape(block.title)}</h{level + 1}>")
            if block.lines:
                out.append("<ul>")
                out += [f"<li>{_inline_html(line)}</li>" for line in block.lines]
                out.append("</ul>")
            if block.table is not None:
                out.append("<table>")
                out.append("<thead><tr>" + "".join(
                    f"<th>{html.escape(h)}</th>" for h in block.table.header) + "</tr></thead>")
                out.append("<tbody>")
                out += ["<tr>" + "".join(f"<td>{_inline_html(c)}</td>" for c in row) + "</tr>"
                        for row in block.table.rows]
                out.append("</tbody></table>")
            if block.pre:
                out.append("<pre>" + html.escape("\n".join(block.pre)) + "</pre>")
            out.append("</div>")
        out.append("</section>")
    out.append("</div>")
    return "\n".join(out)


class Renderable:
    """Mixin: ``sections()`` gives the content; printing and notebooks use the renderers."""

    def sections(self) -> list[Section]:  # pragma: no cover - overridden
        raise NotImplementedError

    def to_text(self) -> str:
        return to_text(self.sections())

    def to_markdown(self, level: int = 2) -> str:
        return to_markdown(self.sections(), level)

    def to_html(self, level: int = 3) -> str:
        return to_html(self.sections(), level)

    def __str__(self) -> str:
        return self.to_text()

    def _repr_html_(self) -> str:
        return self.to_html()

    def _repr_markdown_(self) -> str:
        return self.to_markdown()
