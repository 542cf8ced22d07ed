"""Pictures only: built layers, models and arrays in; SVG text or PNG bytes out.

- ``conv_layer_svg(layer)``: input volume, one 3D filter spanning its channels, output stack.
- ``kernel_grid_png(layer, path=None)``: one tile per filter (channel 0 or channel mean).
- ``feature_maps_png(model, layer, x, path=None)``: one tile per output map for one input.
- ``model_graph_svg(model)``: the layers as boxes, an arrow from each layer to its readers.
"""

from convlens.viz.graph import graph_layout, model_edges, model_graph_svg
from convlens.viz.png import feature_maps_png, grid_pixel_size, kernel_grid_png
from convlens.viz.svg import conv_layer_svg

__all__ = ["conv_layer_svg", "feature_maps_png", "graph_layout", "grid_pixel_size",
           "kernel_grid_png", "model_edges", "model_graph_svg"]
