// The network at work on one input: every layer's maps, one output value made from every
// input channel (with its sliding window), the misconception beside it, and the kernels.
// Every number comes from /api/feature-maps and /api/trace (the library); this file only
// draws them.
"use strict";

const Maps = {
  explained: null, // the last /api/explain answer (spec, layers, shapes)
  request: null, // {spec, seed}
  input: null, // {digit: k} | {pixels: [...]} | {seed: s}
  data: null, // the last /api/feature-maps answer
  cell: null, // the last /api/trace answer
  selected: null, // {layer, row, col, channel}
  playing: null, // the timer while the window slides
  position: null, // [row, col] shown while playing
  digits: null, // {images, labels} from /api/examples
  focus: null, // for a graph: the layer whose maps are shown (index into model.layers)
  pad: null,
  number: 0,
  cellNumber: 0,
};

const byId = (id) => document.getElementById(id);

// [smallest, largest] of nested arrays of numbers (no spread: arrays may be long).
function extent(nested) {
  let low = Infinity;
  let high = -Infinity;
  const visit = (a) => {
    for (const v of a) {
      if (Array.isArray(v)) visit(v);
      else {
        if (v < low) low = v;
        if (v > high) high = v;
      }
    }
  };
  visit(nested);
  return [low, high];
}

Maps.post = async function (path, body) {
  const response = await fetch(path, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  let data;
  try {
    data = await response.json();
  } catch (ignored) {
    data = { error: { message: `the server answered ${response.status} without JSON` } };
  }
  return { ok: response.ok, status: response.status, data };
};

Maps.body = function (extra) {
  const session = typeof Train === "undefined" ? undefined : Train.session;
  return { ...Maps.request, input: Maps.input, session, ...extra };
};

function takesDigits(shape) {
  const key = shape.join("x");
  return key === "28x28x1" || key === "28x28" || key === "1x28x28";
}

// ----- the input ------------------------------------------------------------------------------

Maps.showDigits = function (digits) {
  Maps.digits = digits;
  const box = byId("digits");
  box.replaceChildren();
  digits.images.forEach((flat, k) => {
    const rows = [];
    for (let i = 0; i < 28; i++) rows.push(flat.slice(28 * i, 28 * i + 28));
    const button = document.createElement("button");
    button.type = "button";
    button.className = "digit";
    button.dataset.digit = String(k);
    button.title = `MNIST test digit, label ${digits.labels[k]}`;
    button.appendChild(Draw.mapCanvas(rows, 0, 255));
    button.addEventListener("click", () => Maps.choose({ digit: k }));
    box.appendChild(button);
  });
  Maps.pad = Draw.pad(byId("draw"), (pixels) => Maps.choose({ pixels }));
  byId("draw-clear").addEventListener("click", () => Maps.pad.clear());
};

Maps.choose = function (input) {
  Maps.input = input;
  Maps.highlightDigit();
  Maps.load(false);
};

Maps.highlightDigit = function () {
  const input = Maps.input;
  document.querySelectorAll("#digits button").forEach((b) => {
    const chosen = input.digit !== undefined && b.dataset.digit === String(input.digit);
    b.classList.toggle("chosen", chosen);
  });
  if (input.digit !== undefined && Maps.digits && Maps.pad) {
    const flat = Maps.digits.images[input.digit];
    const rows = [];
    for (let i = 0; i < 28; i++) rows.push(flat.slice(28 * i, 28 * i + 28).map((v) => v / 255));
    Maps.pad.show(rows);
  }
};

// Called by app.js with each successful /api/explain answer.
Maps.show = function (explained, request) {
  const sameModel = Maps.request && Maps.request.spec === request.spec &&
    Maps.request.seed === request.seed;
  Maps.explained = explained;
  Maps.request = request;
  if (!sameModel || !isGraph()) Maps.focus = isGraph() ? defaultFocus() : null;
  markFocus();
  const digits = takesDigits(explained.input_shape);
  byId("digits").hidden = !digits;
  byId("draw-panel").hidden = !digits;
  byId("image-panel").hidden = !imageShape(explained.input_shape);
  if (digits) {
    if (!Maps.input || Maps.input.seed !== undefined) {
      Maps.input = { digit: 0 };
      Maps.highlightDigit();
    }
    byId("input-note").textContent = `An MNIST test digit (${Maps.digits.source}), or draw one.`;
  } else {
    Maps.input = { seed: Number(request.seed) || 0 };
    byId("input-note").textContent = `This model takes ${explained.input_shape.join("x")}: ` +
      `the input is a fixed pattern, uniform in [0, 1) from seed ${request.seed}.`;
  }
  Maps.load(!sameModel);
};

// [height, width, channels] of an input an image can fill (1 or 3 channels, last), or null.
function imageShape(shape) {
  if (shape.length !== 3 || (shape[2] !== 1 && shape[2] !== 3)) return null;
  return shape;
}

// The chosen image file drawn at the model's input size, as pixels in [0, 1].
Maps.useImage = async function (file) {
  const [height, width, channels] = imageShape(Maps.explained.input_shape);
  const bitmap = await createImageBitmap(file);
  const canvas = document.createElement("canvas");
  canvas.width = width;
  canvas.height = height;
  const context = canvas.getContext("2d");
  context.drawImage(bitmap, 0, 0, width, height);
  const data = context.getImageData(0, 0, width, height).data;
  const pixels = [];
  for (let i = 0; i < height; i++) {
    const row = [];
    for (let j = 0; j < width; j++) {
      const at = 4 * (i * width + j);
      const rgb = [data[at], data[at + 1], data[at + 2]].map((v) => Math.round(v / 0.255) / 1000);
      row.push(channels === 3 ? rgb : [Math.round((rgb[0] + rgb[1] + rgb[2]) * 1000 / 3) / 1000]);
    }
    pixels.push(row);
  }
  Maps.choose({ pixels });
};

Maps.load = async function (newModel, cell) {
  const number = ++Maps.number;
  const extra = Maps.focus === null ? {} : { layer: Maps.focus };
  const answer = await Maps.post("/api/feature-maps", Maps.body(extra));
  if (number !== Maps.number) return;
  if (!answer.ok) {
    byId("maps").textContent = answer.data.error.message;
    return;
  }
  Maps.data = answer.data;
  Maps.drawPrediction();
  Maps.drawMaps();
  Maps.drawKernels();
  byId("maps").dataset.input = JSON.stringify(Maps.input);
  byId("maps").dataset.spec = Maps.request.spec;
  byId("maps").dataset.focus = Maps.focus === null ? "" : String(Maps.focus);
  if (cell) {
    Maps.selected = cell;
  } else if (newModel || !Maps.selected || !Maps.isCell(Maps.selected.layer)) {
    Maps.selected = Maps.firstCell();
  }
  if (Maps.selected) await Maps.select(Maps.selected);
  else clearCell();
};

// ----- a graph: boxes drawn by the server (convlens.viz), a click picks the layer shown -----

function isGraph() {
  return Boolean(Maps.explained && Maps.explained.graph && Maps.explained.graph.svg);
}

// The last convolution, where the seed question lives; else the last layer.
function defaultFocus() {
  const layers = Maps.explained.layers;
  let chosen = layers.length - 1;
  layers.forEach((layer, i) => {
    if (layer.class_name === "Conv2D") chosen = i;
  });
  return chosen;
}

Maps.showGraph = function (graph) {
  const panel = byId("graph-panel");
  const box = byId("graph");
  if (!graph || !graph.svg) {
    panel.hidden = true;
    box.replaceChildren();
    return;
  }
  box.innerHTML = graph.svg; // drawn by convlens.viz, names escaped
  panel.hidden = false;
  box.querySelectorAll("g.graph-layer").forEach((group) => {
    const pick = () => Maps.pickLayer(Number(group.dataset.layer));
    group.addEventListener("click", pick);
    group.addEventListener("keydown", (event) => {
      if (event.key === "Enter" || event.key === " ") pick();
    });
  });
  markFocus();
};

function markFocus() {
  byId("graph").querySelectorAll("g.graph-layer").forEach((group) => {
    group.classList.toggle("chosen", Number(group.dataset.layer) === Maps.focus);
  });
}

Maps.pickLayer = function (layer) {
  Maps.stop();
  Maps.focus = layer;
  markFocus();
  Maps.load(true);
};

function clearCell() {
  for (const id of ["cell", "contrast"]) byId(id).replaceChildren();
  for (const id of ["answer", "cell-sum", "cell-check", "cell-position"]) {
    byId(id).textContent = "";
  }
  byId("play").disabled = true;
  Maps.cell = null;
}

Maps.drawPrediction = function () {
  const box = byId("prediction");
  box.replaceChildren();
  const prediction = Maps.data.prediction;
  if (!prediction) return;
  const title = document.createElement("p");
  title.className = "predicted";
  title.id = "predicted-class";
  title.dataset.class = String(prediction.class);
  title.textContent = `prediction: ${prediction.class}`;
  box.appendChild(title);
  prediction.probabilities.forEach((p, k) => {
    const row = document.createElement("div");
    row.className = "bar-row";
    const bar = document.createElement("span");
    bar.className = "bar";
    bar.style.width = `${Math.round(100 * p)}%`;
    row.textContent = `${k} `;
    row.appendChild(bar);
    row.append(` ${(100 * p).toFixed(1)}%`);
    box.appendChild(row);
  });
};

// ----- feature maps ---------------------------------------------------------------------------

function channelRows(maps, channel) {
  return maps.map((row) => row.map((cell) => cell[channel]));
}

Maps.isCell = function (layer) {
  const entry = Maps.data && Maps.data.layers[layer];
  return Boolean(entry && entry.maps && entry.shape.length === 3);
};

Maps.firstCell = function () {
  const layers = Maps.data.layers;
  let chosen = null;
  layers.forEach((entry, i) => {
    if (entry.class_name === "Conv2D" && entry.maps) chosen = i;
  });
  if (Maps.focus !== null) { // a graph: the chosen layer's cell, if it is a convolution
    const focused = layers[Maps.focus];
    chosen = focused && focused.class_name === "Conv2D" && focused.maps ? Maps.focus : null;
  }
  if (chosen === null) return null;
  const [h, w] = layers[chosen].shape;
  return { layer: chosen, row: Math.floor(h / 2), col: Math.floor(w / 2), channel: 0 };
};

function mapsOfInput() {
  const input = Maps.data.input;
  const values = input.shape.length === 3 ? input.values :
    input.values.map((r) => r.map((v) => [v]));
  const [low, high] = extent(values);
  return { maps: values, low: Math.min(0, low), high: Math.max(1, high) };
}

Maps.drawMaps = function () {
  const box = byId("maps");
  box.replaceChildren();
  const input = Maps.data.input;
  if (input.shape.length === 3 || input.shape.length === 2) {
    const source = mapsOfInput();
    box.appendChild(layerRow("input", `input ${input.shape.join("x")}`, source, null));
  }
  Maps.data.layers.forEach((entry, i) => {
    if (Maps.data.layer !== null && !entry.maps) return; // a graph: the layers asked for
    let label = `${i}. ${entry.name} (${entry.class_name}) ${entry.shape.join("x")}`;
    if (Maps.data.layer !== null) {
      label += i === Maps.data.layer ? " (the layer you picked)" : " (read by the picked layer)";
    }
    box.appendChild(layerRow(String(i), label, entry, i));
  });
};

function layerRow(key, label, entry, layerIndex) {
  const row = document.createElement("div");
  row.className = "map-layer";
  row.dataset.layer = key;
  const title = document.createElement("h3");
  title.textContent = label;
  row.appendChild(title);
  const tiles = document.createElement("div");
  tiles.className = "tiles";
  row.appendChild(tiles);
  if (!entry.maps) {
    tiles.textContent = "(too many values to send: left out)";
    return row;
  }
  const maps = entry.maps;
  const rank = Array.isArray(maps[0]) ? (Array.isArray(maps[0][0]) ? 3 : 2) : 1;
  if (rank === 3) {
    const channels = maps[0][0].length;
    for (let c = 0; c < channels; c++) {
      const canvas = Draw.mapCanvas(channelRows(maps, c), entry.low, entry.high, "fmap");
      canvas.dataset.layer = key;
      canvas.dataset.channel = String(c);
      if (layerIndex !== null) {
        canvas.title = `${entry.name}, channel ${c}: click a pixel`;
        canvas.addEventListener("click", (event) => {
          const rect = canvas.getBoundingClientRect();
          const r = Math.floor(((event.clientY - rect.top) / rect.height) * canvas.height);
          const col = Math.floor(((event.clientX - rect.left) / rect.width) * canvas.width);
          Maps.stop();
          const cell = { layer: layerIndex, row: r, col, channel: c };
          if (Maps.focus !== null && layerIndex !== Maps.focus) {
            // A graph: a layer read by the picked one becomes the picked one (its own
            // inputs' maps are then sent), with this cell selected.
            Maps.focus = layerIndex;
            markFocus();
            Maps.load(false, cell);
          } else {
            Maps.select(cell);
          }
        });
      }
      tiles.appendChild(Draw.framed(canvas));
    }
  } else {
    const rows = rank === 2 ? maps : [maps];
    const canvas = Draw.mapCanvas(rows, entry.low, entry.high, "fmap vector");
    canvas.dataset.layer = key;
    canvas.dataset.channel = "all";
    tiles.appendChild(Draw.framed(canvas));
  }
  return row;
}

// ----- one output value -----------------------------------------------------------------------

Maps.select = async function (cell) {
  Maps.selected = cell;
  Maps.position = [cell.row, cell.col];
  markSelected();
  const number = ++Maps.cellNumber;
  const answer = await Maps.post("/api/trace", Maps.body({
    layer: cell.layer, index: [cell.row, cell.col, cell.channel],
  }));
  if (number !== Maps.cellNumber) return;
  const error = byId("cell-error");
  error.hidden = answer.ok;
  if (!answer.ok) {
    error.textContent = answer.data.error.message;
    return;
  }
  Maps.cell = answer.data;
  drawCell();
};

function markSelected() {
  document.querySelectorAll("#maps .mark").forEach((m) => m.remove());
  const cell = Maps.selected;
  const canvas = document.querySelector(
    `#maps canvas[data-layer="${cell.layer}"][data-channel="${cell.channel}"]`);
  if (canvas) Draw.mark(canvas.parentElement, cell.row, cell.row, cell.col, cell.col, "cell");
}

// The maps the traced layer reads: the output of the layer the server names, or the input.
function inputMapsOf() {
  const reads = Maps.cell.reads || [];
  if (reads.length === 0) return mapsOfInput();
  return Maps.data.layers[reads[0]];
}

function drawCell() {
  const data = Maps.cell;
  const split = data.filter_maps;
  const box = byId("cell");
  box.replaceChildren();
  byId("contrast").replaceChildren();
  byId("play").disabled = !split;
  const trace = data.trace;
  const entry = Maps.data.layers[trace.layer];
  if (!split) {
    byId("answer").textContent = "";
    byId("cell-sum").textContent = "";
    const html = document.createElement("div");
    html.innerHTML = trace.html; // escaped by convlens' renderer
    box.appendChild(html);
    showCheck(trace);
    return;
  }
  drawAnswer(entry, split, data.contrast);
  const source = inputMapsOf();
  const [kernelLow, kernelHigh] = extent(split.kernel);
  const kernelScale = Math.max(-kernelLow, kernelHigh);
  const partials = split.channel_maps;
  const [partialLow, partialHigh] = extent(partials);
  split.input_channels.forEach((channel, k) => {
    const card = document.createElement("div");
    card.className = "channel-card";
    card.dataset.channel = String(channel);
    const inputMap = Draw.framed(
      Draw.mapCanvas(channelRows(source.maps, channel), source.low, source.high, "input-map"),
      `input channel ${channel}`);
    const slice = Draw.kernelCanvas(channelRows(split.kernel, k), kernelScale, "kernel-slice");
    slice.title = `kernel[:, :, ${channel}, ${split.filter}]`;
    const partial = Draw.framed(
      Draw.mapCanvas(channelRows(partials, k), partialLow, partialHigh, "partial-map"),
      `channel ${channel} convolved with its slice`);
    const value = document.createElement("span");
    value.className = "partial-value";
    const caption = document.createElement("div");
    caption.className = "caption";
    caption.textContent = `ch ${channel}`;
    const times = document.createElement("span");
    times.className = "op";
    times.textContent = "*";
    const equals = document.createElement("span");
    equals.className = "op";
    equals.textContent = "=";
    card.append(caption, inputMap, times, slice, equals, partial, value);
    box.appendChild(card);
  });
  const output = document.createElement("div");
  output.className = "channel-card output-card";
  const outputMap = Draw.framed(Draw.mapCanvas(split.output, entry.low, entry.high, "output-map"),
    `${trace.layer_name} map ${split.filter}`);
  const caption = document.createElement("div");
  caption.className = "caption";
  caption.textContent = `${trace.layer_name} map ${split.filter}`;
  output.append(caption, outputMap);
  box.appendChild(output);
  drawContrast(data.contrast, split);
  showPosition(trace.index[0], trace.index[1]);
  showCheck(trace);
}

function drawAnswer(entry, split, contrast) {
  const layer = Maps.explained.layers[Maps.cell.trace.layer];
  const kernel = contrast.conv_kernel_shape;
  const separate = contrast.in_channels * contrast.multiplier;
  byId("answer").textContent =
    `${layer.name} takes ${layer.input_shape.join("x")} and outputs ` +
    `${layer.output_shape.join("x")}: each of its ${contrast.filters} filters is ` +
    `${kernel.slice(0, -1).join("x")}, one slice per input channel, and adds the ` +
    `${split.input_channels.length} results into one map, so ${contrast.filters} maps, not ` +
    `${contrast.in_channels}*${contrast.multiplier} = ${separate.toLocaleString("en-US")}. ` +
    `Parameters: ${layer.params_formula}. Below: filter ${split.filter} at one position.`;
}

// The numbers of output position (row, col) of the traced filter, from the per-channel maps.
function showPosition(row, col) {
  const split = Maps.cell.filter_maps;
  const rowTaps = split.positions[0][row];
  const colTaps = split.positions[1][col];
  document.querySelectorAll("#cell .channel-card").forEach((card, k) => {
    const value = card.querySelector(".partial-value");
    const inputBox = card.querySelector(".input-map");
    const partialBox = card.querySelector(".partial-map");
    const outputBox = card.querySelector(".output-map");
    if (inputBox) {
      Draw.mark(inputBox.parentElement, rowTaps[0], rowTaps[rowTaps.length - 1], colTaps[0],
        colTaps[colTaps.length - 1], "window");
    }
    if (partialBox) Draw.mark(partialBox.parentElement, row, row, col, col, "cell");
    if (outputBox) Draw.mark(outputBox.parentElement, row, row, col, col, "cell");
    if (value) {
      const v = split.channel_maps[row][col][k];
      value.textContent = Draw.number(v);
      value.dataset.value = String(v);
      value.title = `sum over the window of input channel ${split.input_channels[k]} times ` +
        `its kernel slice: ${v}`;
    }
  });
  const pre = split.pre_activation[row][col];
  const out = split.output[row][col];
  const bias = split.bias === null ? "no bias" : `+ bias ${Draw.number(split.bias)}`;
  const activation = split.activation === "linear" ? "" :
    `; ${split.activation}(${Draw.number(pre)}) = ${Draw.number(out)}`;
  const sum = byId("cell-sum");
  sum.textContent = `sum of the ${split.input_channels.length} per-channel values ${bias} ` +
    `= ${Draw.number(pre)}${activation}`;
  sum.dataset.pre = String(pre);
  sum.dataset.value = String(out);
  const trace = Maps.cell.trace;
  byId("cell-position").textContent =
    `${trace.layer_name}[${row}, ${col}, ${split.filter}] = ${Draw.number(out)}`;
  Maps.position = [row, col];
  markSelectedAt(row, col);
}

function markSelectedAt(row, col) {
  const cell = Maps.selected;
  const canvas = document.querySelector(
    `#maps canvas[data-layer="${cell.layer}"][data-channel="${cell.channel}"]`);
  if (canvas) Draw.mark(canvas.parentElement, row, row, col, col, "cell");
}

function showCheck(trace) {
  const verdict = trace.matches ? "equals the forward pass" : "DIFFERS from the forward pass";
  const check = byId("cell-check");
  check.textContent = `trace: ${trace.layer_name}[${trace.index.join(", ")}] = ` +
    `${Draw.number(trace.value)}, recomputed from its terms; ${verdict} ` +
    `(${Draw.number(trace.forward_value)})`;
  check.dataset.value = String(trace.value);
}

function drawContrast(contrast, split) {
  const box = byId("contrast");
  const separate = contrast.in_channels * contrast.multiplier;
  const lines = [
    `The misconception: keep these ${split.input_channels.length} per-channel maps apart ` +
      "instead of adding them. That is a real layer, " +
      `${contrast.separate_layer}, on the same input: output ` +
      `(${contrast.separate_output_shape.slice(1).join(", ")}), ${separate.toLocaleString("en-US")}` +
      ` maps, with ${contrast.separate_kernel_weights.toLocaleString("en-US")} kernel weights -- ` +
      `the same count as ${contrast.conv_name}'s ${contrast.conv_kernel_weights.toLocaleString("en-US")}.`,
    `The maps above are ${split.input_channels.length} of its ${separate.toLocaleString("en-US")}` +
      ` (channels c*${contrast.multiplier} + ${split.filter}); ${contrast.conv_name} adds them ` +
      `into its one map ${split.filter}. Checked: summing its maps per filter reproduces ` +
      `${contrast.conv_name} (max |difference| ${contrast.max_abs_diff.toExponential(2)}).`,
  ];
  for (const line of lines) {
    const p = document.createElement("p");
    p.textContent = line;
    box.appendChild(p);
  }
}

Maps.play = function () {
  if (Maps.playing) {
    Maps.stop();
    const [row, col] = Maps.position;
    Maps.select({ ...Maps.selected, row, col });
    return;
  }
  const split = Maps.cell && Maps.cell.filter_maps;
  if (!split) return;
  byId("play").textContent = "Pause";
  const rows = split.output.length;
  const cols = split.output[0].length;
  Maps.playing = setInterval(() => {
    let [row, col] = Maps.position;
    col += 1;
    if (col >= cols) {
      col = 0;
      row = (row + 1) % rows;
    }
    showPosition(row, col);
  }, 250);
};

Maps.stop = function () {
  if (Maps.playing) clearInterval(Maps.playing);
  Maps.playing = null;
  byId("play").textContent = "Play";
};

// ----- kernels --------------------------------------------------------------------------------

Maps.drawKernels = function () {
  const box = byId("kernels");
  box.replaceChildren();
  const notes = [];
  Maps.data.layers.forEach((entry, i) => {
    if (!entry.kernel) return;
    const kernel = entry.kernel; // (kh, kw, channels, filters)
    const kh = kernel.length;
    const kw = kernel[0].length;
    const channels = kernel[0][0].length;
    const filters = kernel[0][0][0].length;
    const [low, high] = extent(kernel);
    const scale = Math.max(-low, high);
    // One column per filter, one tile per channel slice down it, a pixel of gap between.
    const rows = [];
    for (let c = 0; c < channels; c++) {
      for (let a = 0; a <= kh; a++) {
        const row = [];
        for (let f = 0; f < filters; f++) {
          for (let b = 0; b <= kw; b++) row.push(a < kh && b < kw ? kernel[a][b][c][f] : 0);
        }
        rows.push(row);
      }
    }
    const figure = document.createElement("figure");
    figure.className = "kernel-grid";
    figure.dataset.layer = String(i);
    const canvas = Draw.kernelCanvas(rows, scale, "kernel-grid-canvas");
    canvas.dataset.layer = String(i);
    const zoom = Math.max(1, Math.min(8, Math.floor(800 / canvas.width)));
    canvas.style.width = `${zoom * canvas.width}px`;
    canvas.style.height = `${zoom * canvas.height}px`;
    const caption = document.createElement("figcaption");
    caption.textContent = `${entry.name}: kernel (${kh}, ${kw}, ${channels}, ${filters}) -- ` +
      `${filters} filters (columns), each ${kh}x${kw}x${channels}: ${channels} channel ` +
      `slice(s) down the column. Red positive, blue negative, up to ${Draw.number(scale)}.`;
    figure.append(Draw.framed(canvas), caption);
    box.appendChild(figure);
    notes.push(entry.name);
  });
  byId("kernels-note").textContent = notes.length ? "" : Maps.focus !== null ?
    "Pick a Conv2D layer in the graph above to see its kernels." :
    "This model has no Conv2D layer small enough to draw its kernels.";
};

document.addEventListener("DOMContentLoaded", () => {
  byId("play").addEventListener("click", () => Maps.play());
  byId("image-file").addEventListener("change", () => {
    const file = byId("image-file").files[0];
    if (file) Maps.useImage(file);
  });
});
