"""A model drawn as its graph: one box per layer, an arrow from each layer it reads.

``model_edges(model)`` lists who reads whom as indices into ``model.layers`` (a chain is a
line; a Functional model follows each layer's calls, ``layer.inbound_nodes``, within the
model's graph). ``graph_layout(model)`` puts every layer on a row (its longest path from an
input, so a merge sits below all its branches) and orders each row by where its inputs are,
so parallel branches stand side by side. ``model_graph_svg(model)`` draws that layout; each
box is a ``<g class="graph-layer" data-layer="I">`` a page can make clickable.

>>> from convlens import Input, Model, layers
>>> x = Input((8, 8, 3), name="image")
>>> y = layers.Add(name="add")([layers.Conv2D(4, 1, name="a")(x), layers.Conv2D(4, 1, name="b")(x)])
>>> model = Model(x, y)
>>> [model.layers[i].name for i in (0, 1, 2, 3)], model_edges(model)
(['image', 'a', 'b', 'add'], [(0, 1), (0, 2), (1, 3), (2, 3)])
>>> [(box.name, box.row, box.column) for box in graph_layout(model).boxes]
[('image', 0, 0), ('a', 1, 0), ('b', 1, 1), ('add', 2, 0)]
"""

from __future__ import annotations

from dataclasses import dataclass
from xml.sax.saxutils import escape, quoteattr

from convlens.kinds import kind_of

__all__ = ["GraphLayout", "graph_layout", "model_edges", "model_graph_svg"]

BOX_WIDTH = 200
BOX_HEIGHT = 46
GAP_X = 28
GAP_Y = 40
MARGIN = 12
_FONT = "font-family:Helvetica,Arial,sans-serif"
_FILLS = {"conv": "#dbe8f6", "merge": "#fde2c8", "input": "#eef0f2", "other": "#ffffff"}


def model_edges(model) -> list[tuple[int, int]]:
    """``(source, target)`` pairs of indices into ``model.layers``: ``target`` reads the
    output of ``source`` (once per pair, in ``model.layers`` order of the target)."""
    layers = model.layers
    graph = getattr(model, "graph", None)
    if graph is None:
        return [(i - 1, i) for i in range(1, len(layers))]
    position = {id(layer): i for i, layer in enumerate(layers)}
    edges = []
    for target, layer in enumerate(layers):
        for node in graph.nodes_of(layer):
            for tensor in node.inputs:
                source = position.get(id(tensor.layer))
                if source is not None and (source, target) not in edges:
                    edges.append((source, target))
    return edges


@dataclass
class Box:
    index: int
    name: str
    class_name: str
    shape: str
    kind: str  # conv, merge, input or other: the box's colour
    row: int
    column: int
    x: float
    y: float


@dataclass
class GraphLayout:
    boxes: list[Box]
    edges: list[tuple[int, int]]
    width: float
    height: float


def _kind(layer) -> str:
    if type(layer).__name__ == "InputLayer":
        return "input"
    kind = kind_of(layer)
    if kind.field == "merge":
        return "merge"
    return "conv" if kind.field == "window" and getattr(layer, "kernel", None) is not None \
        else "other"


def _shape_text(layer) -> str:
    shape = getattr(layer, "output_shape", None)
    if not shape or isinstance(shape, list):
        return ""
    return "x".join("?" if d is None else str(d) for d in shape[1:])


def graph_layout(model) -> GraphLayout:
    """Rows and columns for every layer of a built ``model`` (see the module docstring)."""
    layers = model.layers
    edges = model_edges(model)
    parents: dict[int, list[int]] = {i: [] for i in range(len(layers))}
    for source, target in edges:
        parents[target].append(source)
    rows: dict[int, int] = {}
    pending = list(range(len(layers)))
    while pending:  # longest path from an input; every source is placed before its readers
        waiting = []
        for i in pending:
            if all(p in rows for p in parents[i]):
                rows[i] = max((rows[p] + 1 for p in parents[i]), default=0)
            else:
                waiting.append(i)
        if len(waiting) == len(pending):
            raise ValueError(f"model '{model.name}' has a cycle between its layers; a graph "
                             "drawing needs layers that read only earlier layers.")
        pending = waiting
    by_row: dict[int, list[int]] = {}
    for i in sorted(range(len(layers)), key=lambda i: (rows[i], i)):
        by_row.setdefault(rows[i], []).append(i)
    columns: dict[int, int] = {}
    xs: dict[int, float] = {}
    step = BOX_WIDTH + GAP_X
    for row in sorted(by_row):
        # Under the mean position of its inputs (a branch stays under the layer it leaves),
        # pushed right just enough not to overlap its left neighbour.
        wanted = {i: sum(xs[p] for p in parents[i]) / len(parents[i]) if parents[i] else 0.0
                  for i in by_row[row]}
        order = sorted(by_row[row], key=lambda i: (wanted[i], i))
        left = MARGIN - step
        for column, i in enumerate(order):
            columns[i] = column
            xs[i] = left = max(wanted[i] if parents[i] else MARGIN, left + step)
    shift = MARGIN - min(xs.values(), default=MARGIN)
    xs = {i: x + shift for i, x in xs.items()}
    boxes = [Box(index=i, name=layer.name, class_name=type(layer).__name__,
                 shape=_shape_text(layer), kind=_kind(layer), row=rows[i], column=columns[i],
                 x=xs[i], y=MARGIN + rows[i] * (BOX_HEIGHT + GAP_Y))
             for i, layer in enumerate(layers)]
    return GraphLayout(
        boxes=boxes, edges=edges,
        width=max((x for x in xs.values()), default=MARGIN) + BOX_WIDTH + MARGIN,
        height=2 * MARGIN + len(by_row) * BOX_HEIGHT + (len(by_row) - 1) * GAP_Y)


def _edge(source: Box, target: Box) -> str:
    x1, y1 = source.x + BOX_WIDTH / 2, source.y + BOX_HEIGHT
    x2, y2 = target.x + BOX_WIDTH / 2, target.y - 3
    if target.row - source.row > 1:
        # A skip over rows between: leave and arrive at the side, bowed outwards.
        side = -1 if x1 <= x2 else 1
        x1 = source.x + (0 if side < 0 else BOX_WIDTH)
        x2 = target.x + (0 if side < 0 else BOX_WIDTH)
        y1 = source.y + BOX_HEIGHT / 2
        y2 = target.y + BOX_HEIGHT / 2
        bow = min(x1, x2) - GAP_X * 0.9 if side < 0 else max(x1, x2) + GAP_X * 0.9
        path = f"M{x1:.1f},{y1:.1f} C{bow:.1f},{y1:.1f} {bow:.1f},{y2:.1f} {x2 - 3 * side:.1f}," \
               f"{y2:.1f}"
    else:
        middle = (y1 + y2) / 2
        path = f"M{x1:.1f},{y1:.1f} C{x1:.1f},{middle:.1f} {x2:.1f},{middle:.1f} {x2:.1f}," \
               f"{y2:.1f}"
    return (f'<path class="graph-edge" data-from="{source.index}" data-to="{target.index}" '
            f'd="{path}" fill="none" stroke="#5c7080" stroke-width="1.4" '
            'marker-end="url(#graph-arrow)"/>')


def model_graph_svg(model) -> str:
    """An SVG document (text) of ``model``'s layers as boxes and who reads whom as arrows."""
    layout = graph_layout(model)
    boxes = {box.index: box for box in layout.boxes}
    margin_x = GAP_X  # room for the skips bowed round the sides
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="model-graph" '
        f'width="{layout.width + 2 * margin_x:.0f}" height="{layout.height:.0f}" '
        f'viewBox="{-margin_x:.0f} 0 {layout.width + 2 * margin_x:.0f} {layout.height:.0f}" '
        f'role="img" aria-label={quoteattr(f"the layers of model {model.name} as a graph")}>',
        '<defs><marker id="graph-arrow" viewBox="0 0 8 8" refX="7" refY="4" markerWidth="7" '
        'markerHeight="7" orient="auto"><path d="M0,0 L8,4 L0,8 z" fill="#5c7080"/></marker>'
        '</defs>',
    ]
    parts += [_edge(boxes[source], boxes[target]) for source, target in layout.edges]
    for box in layout.boxes:
        reads = ", ".join(boxes[s].name for s, t in layout.edges if t == box.index)
        title = f"{box.name} ({box.class_name}) {box.shape}" + (f", reads {reads}" if reads
                                                                 else "")
        parts.append(
            f'<g class="graph-layer" data-layer="{box.index}" data-name={quoteattr(box.name)} '
            f'data-row="{box.row}" data-column="{box.column}" tabindex="0">'
            f"<title>{escape(title)}</title>"
            f'<rect x="{box.x:.1f}" y="{box.y:.1f}" width="{BOX_WIDTH}" height="{BOX_HEIGHT}" '
            f'rx="6" fill="{_FILLS[box.kind]}" stroke="#33475b" stroke-width="1.2"/>'
            f'<text x="{box.x + BOX_WIDTH / 2:.1f}" y="{box.y + 19:.1f}" font-size="13" '
            f'font-weight="bold" text-anchor="middle" fill="#1d2b36" style="{_FONT}">'
            f"{escape(_clip(box.name, 26))}</text>"
            f'<text x="{box.x + BOX_WIDTH / 2:.1f}" y="{box.y + 36:.1f}" font-size="12" '
            f'text-anchor="middle" fill="#33475b" style="{_FONT}">'
            f"{escape(_clip(f'{box.class_name} {box.shape}', 30))}</text></g>")
    parts.append("</svg>")
    return "\n".join(parts)


def _clip(text: str, size: int) -> str:
    return text if len(text) <= size else text[: size - 1] + "…"
