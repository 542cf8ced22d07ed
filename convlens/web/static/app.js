// The page: read the spec, ask /api/explain, show what convlens returns. No logic of its own:
// every number and every piece of HTML/SVG shown here comes from the server (the library).
"use strict";

const $ = (id) => document.getElementById(id);
let lastTrace = null; // the trace the server returned last: its layer, axis names, sizes
let requestNumber = 0;

function show(element, visible) {
  element.hidden = !visible;
}

function setStatus(text) {
  $("status").textContent = text;
}

function showSpecError(error) {
  $("spec-error").textContent = error.message;
  show($("spec-error"), true);
  show($("stale"), !$("results").hidden);
  const caret = $("spec-caret");
  if (error.column) {
    // The spec on one line, with a caret under the column the server named.
    const line = $("spec").value.replace(/\s/g, " ");
    caret.textContent = line + "\n" + " ".repeat(error.column - 1) + "^";
    show(caret, true);
  } else {
    show(caret, false);
  }
}

function clearSpecError() {
  show($("spec-error"), false);
  show($("stale"), false);
  show($("spec-caret"), false);
}

function ask(body) {
  return Maps.post("/api/explain", body);
}

function request(withTrace) {
  const body = { spec: $("spec").value, seed: $("seed").value || "0", session: Train.session };
  if (withTrace) {
    body.layer = $("trace-layer").value;
    body.index = Array.from($("trace-index").querySelectorAll("input")).map((i) => i.value);
  }
  return body;
}

async function explain(withTrace) {
  const number = ++requestNumber;
  setStatus("computing...");
  let answer;
  try {
    answer = await ask(request(withTrace));
  } catch (error) {
    if (number === requestNumber) setStatus("");
    showSpecError({ message: `could not reach the convlens server: ${error}` });
    return;
  }
  if (number !== requestNumber) return; // a newer request is on its way
  setStatus("");
  if (!answer.ok) {
    showSpecError(answer.data.error || { message: "the server refused the request" });
    return;
  }
  clearSpecError();
  render(answer.data);
  Maps.show(answer.data, { spec: $("spec").value, seed: $("seed").value || "0" });
  window.location.hash = "spec=" + encodeURIComponent($("spec").value);
}

function render(data) {
  $("canonical-spec").textContent = data.spec;
  $("summary").textContent = data.summary;
  $("overview").innerHTML = data.overview_html; // HTML escaped by convlens' renderer
  renderLayers(data.layers);
  Maps.showGraph(data.graph);
  renderTraceControls(data.layers, data.trace);
  renderTrace(data.trace, data.trace_error);
  show($("results"), true);
}

function renderLayers(layers) {
  const container = $("layers");
  container.replaceChildren();
  for (const layer of layers) {
    const card = document.createElement("article");
    card.className = "layer";
    const text = document.createElement("div");
    text.className = "layer-text";
    text.innerHTML = layer.html;
    card.appendChild(text);
    if (layer.svg) {
      const picture = document.createElement("figure");
      picture.className = "layer-picture";
      picture.innerHTML = layer.svg; // drawn by convlens.viz, labels escaped
      card.appendChild(picture);
    }
    container.appendChild(card);
  }
}

function renderTraceControls(layers, trace) {
  const select = $("trace-layer");
  select.replaceChildren();
  for (const layer of layers) {
    const option = document.createElement("option");
    option.value = String(layer.index);
    option.textContent = `${layer.index}. ${layer.name} (${layer.class_name}) ` +
      `(${layer.output_shape.join(", ")})`;
    select.appendChild(option);
  }
  if (trace) {
    select.value = String(trace.layer);
    lastTrace = trace;
    const inputs = $("trace-index");
    inputs.replaceChildren();
    trace.axis_names.forEach((name, axis) => {
      const label = document.createElement("label");
      label.textContent = name + " ";
      const input = document.createElement("input");
      input.type = "number";
      input.min = "0";
      input.max = String(trace.output_shape[axis] - 1);
      input.value = String(trace.index[axis]);
      input.dataset.axis = name;
      label.appendChild(input);
      inputs.appendChild(label);
    });
  } else if (lastTrace) {
    select.value = String(lastTrace.layer);
  }
}

function renderTrace(trace, error) {
  show($("trace-error"), Boolean(error));
  $("trace-error").textContent = error || "";
  if (!trace) {
    $("trace-value").textContent = "";
    $("trace-result").replaceChildren();
    return;
  }
  const verdict = trace.matches ? "equals the forward pass" : "DIFFERS from the forward pass";
  $("trace-value").textContent =
    `${trace.layer_name}[${trace.index.join(", ")}] = ${Draw.number(trace.value)} ` +
    `(recomputed from its terms; ${verdict}: ${Draw.number(trace.forward_value)})`;
  $("trace-result").innerHTML = trace.html; // escaped by convlens' renderer
}

async function loadExamples() {
  const response = await fetch("/api/examples");
  const data = await response.json();
  const container = $("examples");
  for (const example of data.examples) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "example";
    button.textContent = example.title;
    button.title = example.note + "\n" + example.spec;
    button.addEventListener("click", () => {
      $("spec").value = example.spec;
      explain(false);
    });
    container.appendChild(button);
  }
  $("grammar").textContent = data.grammar;
  Maps.showDigits(data.digits);
  const fromLink = new URLSearchParams(window.location.hash.slice(1)).get("spec");
  $("spec").value = fromLink || data.initial;
}

let typingTimer = null;

function start() {
  $("explain-button").addEventListener("click", () => explain(false));
  $("trace-button").addEventListener("click", () => explain(true));
  $("trace-layer").addEventListener("change", () => {
    $("trace-index").replaceChildren(); // the server picks the centre of the new layer
    explain(true);
  });
  $("trace-index").addEventListener("keydown", (event) => {
    if (event.key === "Enter") explain(true);
  });
  $("seed").addEventListener("change", () => explain(true));
  $("spec").addEventListener("input", () => {
    clearTimeout(typingTimer);
    typingTimer = setTimeout(() => explain(false), 500);
  });
  $("spec").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) explain(false);
  });
  loadExamples()
    .then(() => explain(false))
    .catch((error) => showSpecError({ message: `could not load the page data: ${error}` }));
}

document.addEventListener("DOMContentLoaded", start);
