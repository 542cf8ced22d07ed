// Pictures on canvases: a map of numbers as grey pixels, a kernel in blue/red, a drawing pad.
// Nothing is computed here but the colour of a number: every number comes from the server.
"use strict";

const Draw = {};

// The grey level of value v on the scale [low, high]: 0 (black) .. 255 (white).
Draw.grey = function (v, low, high) {
  if (!(high > low)) return 0;
  return Math.max(0, Math.min(255, Math.round((255 * (v - low)) / (high - low))));
};

// Paint rows (an array of arrays, one per pixel row of canvas) grey on [low, high].
Draw.paintGrey = function (canvas, rows, low, high) {
  const context = canvas.getContext("2d");
  const image = context.createImageData(canvas.width, canvas.height);
  for (let i = 0; i < canvas.height; i++) {
    for (let j = 0; j < canvas.width; j++) {
      const g = Draw.grey(rows[i][j], low, high);
      const at = 4 * (i * canvas.width + j);
      image.data[at] = g;
      image.data[at + 1] = g;
      image.data[at + 2] = g;
      image.data[at + 3] = 255;
    }
  }
  context.putImageData(image, 0, 0);
};

// A canvas with one pixel per value of rows, grey on [low, high].
Draw.mapCanvas = function (rows, low, high, className) {
  const canvas = document.createElement("canvas");
  canvas.width = rows[0].length;
  canvas.height = rows.length;
  if (className) canvas.className = className;
  Draw.paintGrey(canvas, rows, low, high);
  return canvas;
};

// A kernel slice (rows x cols): red positive, blue negative, white zero, on +-scale.
Draw.kernelCanvas = function (rows, scale, className) {
  const height = rows.length;
  const width = rows[0].length;
  const canvas = document.createElement("canvas");
  canvas.width = width;
  canvas.height = height;
  canvas.className = className || "kernel";
  const context = canvas.getContext("2d");
  const image = context.createImageData(width, height);
  for (let i = 0; i < height; i++) {
    for (let j = 0; j < width; j++) {
      const t = scale > 0 ? Math.max(-1, Math.min(1, rows[i][j] / scale)) : 0;
      const fade = Math.round(255 * (1 - Math.abs(t)));
      const at = 4 * (i * width + j);
      image.data[at] = t >= 0 ? 255 : fade;
      image.data[at + 1] = fade;
      image.data[at + 2] = t <= 0 ? 255 : fade;
      image.data[at + 3] = 255;
    }
  }
  context.putImageData(image, 0, 0);
  return canvas;
};

// A canvas in a box that can carry highlight rectangles over it (positioned in %).
Draw.framed = function (canvas, title) {
  const box = document.createElement("div");
  box.className = "framed";
  if (title) box.title = title;
  box.appendChild(canvas);
  return box;
};

// Mark rows [r0, r1] x cols [c0, c1] (inclusive, clipped) of a framed canvas.
Draw.mark = function (box, r0, r1, c0, c1, className) {
  const canvas = box.querySelector("canvas");
  const rows = canvas.height;
  const cols = canvas.width;
  let mark = box.querySelector("." + className);
  if (!mark) {
    mark = document.createElement("div");
    mark.className = "mark " + className;
    box.appendChild(mark);
  }
  const top = Math.max(0, r0);
  const bottom = Math.min(rows - 1, r1);
  const left = Math.max(0, c0);
  const right = Math.min(cols - 1, c1);
  mark.style.top = (100 * top) / rows + "%";
  mark.style.left = (100 * left) / cols + "%";
  mark.style.height = (100 * (bottom - top + 1)) / rows + "%";
  mark.style.width = (100 * (right - left + 1)) / cols + "%";
  mark.dataset.rows = `${r0},${r1}`;
  mark.dataset.cols = `${c0},${c1}`;
  return mark;
};

// Seven significant digits, as the library's text prints them.
Draw.number = function (v) {
  if (v === null || v === undefined) return "";
  return Number(Number(v).toPrecision(7)).toString();
};

// A 28x28 drawing pad: onChange(pixels) gets rows of values in [0, 1] after each stroke.
Draw.pad = function (canvas, onChange) {
  const size = canvas.width;
  const values = Array.from({ length: size }, () => new Array(size).fill(0));
  let drawing = false;
  const paint = () => Draw.paintGrey(canvas, values, 0, 1);

  function ink(event) {
    const rect = canvas.getBoundingClientRect();
    const x = ((event.clientX - rect.left) / rect.width) * size;
    const y = ((event.clientY - rect.top) / rect.height) * size;
    // A soft round brush about two pixels wide, as a pen stroke in MNIST.
    for (let i = Math.floor(y) - 2; i <= Math.floor(y) + 2; i++) {
      for (let j = Math.floor(x) - 2; j <= Math.floor(x) + 2; j++) {
        if (i < 0 || j < 0 || i >= size || j >= size) continue;
        const d = Math.hypot(i + 0.5 - y, j + 0.5 - x);
        const amount = Math.max(0, Math.min(1, 1.6 - d));
        values[i][j] = Math.max(values[i][j], amount);
      }
    }
    paint();
  }

  canvas.addEventListener("pointerdown", (event) => {
    drawing = true;
    canvas.setPointerCapture(event.pointerId);
    ink(event);
  });
  canvas.addEventListener("pointermove", (event) => {
    if (drawing) ink(event);
  });
  canvas.addEventListener("pointerup", () => {
    if (!drawing) return;
    drawing = false;
    onChange(values.map((row) => row.map((v) => Math.round(v * 1000) / 1000)));
  });
  paint();
  return {
    clear() {
      values.forEach((row) => row.fill(0));
      paint();
    },
    show(rows) {
      rows.forEach((row, i) => row.forEach((v, j) => (values[i][j] = v)));
      paint();
    },
  };
};
