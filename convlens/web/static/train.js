// Training on the page: start a job, draw its loss and accuracy as they stream in (Server-Sent
// Events over a POST), cancel it, download the model; upload your own .keras/.weights.h5.
"use strict";

const Train = {
  // This page's session: the server keeps the model it trains or uploads under this token.
  session: Array.from(crypto.getRandomValues(new Uint8Array(12)),
    (b) => b.toString(16).padStart(2, "0")).join(""),
  points: [], // {loss, accuracy} per batch, as reported
  epochs: [], // {epoch, loss, accuracy, val_loss, val_accuracy} per epoch
  running: false,
};

function trainStatus(text) {
  document.getElementById("train-status").textContent = text;
}

Train.drawChart = function () {
  const canvas = document.getElementById("train-chart");
  const context = canvas.getContext("2d");
  const w = canvas.width;
  const h = canvas.height;
  context.fillStyle = "#fff";
  context.fillRect(0, 0, w, h);
  context.strokeStyle = "#c9d3dc";
  context.strokeRect(0.5, 0.5, w - 1, h - 1);
  const n = Train.points.length;
  if (n === 0) return;
  const maxLoss = Math.max(...Train.points.map((p) => p.loss || 0), 1e-6);
  const line = (key, scale, colour) => {
    context.strokeStyle = colour;
    context.lineWidth = 2;
    context.beginPath();
    Train.points.forEach((p, i) => {
      const x = 4 + ((w - 8) * i) / Math.max(1, n - 1);
      const y = h - 4 - ((h - 8) * (p[key] || 0)) / scale;
      if (i === 0) context.moveTo(x, y);
      else context.lineTo(x, y);
    });
    context.stroke();
  };
  line("loss", maxLoss, "#e8590c");
  line("accuracy", 1, "#1971c2");
  context.fillStyle = "#1d2b36";
  context.font = "12px sans-serif";
  const last = Train.points[n - 1];
  context.fillText(`loss ${Draw.number(last.loss)} (orange, scale 0..${Draw.number(maxLoss)})` +
    `   accuracy ${Draw.number(last.accuracy)} (blue, 0..1)   batches ${n}`, 8, 16);
};

function handleEvent(kind, data) {
  if (kind === "batch") {
    Train.points.push(data);
    Train.drawChart();
  } else if (kind === "epoch") {
    Train.epochs.push(data);
    const validation = data.val_accuracy === undefined ? "" :
      `, validation accuracy ${Draw.number(data.val_accuracy)}`;
    trainStatus(`epoch ${data.epoch}: accuracy ${Draw.number(data.accuracy)}${validation}`);
  } else if (kind === "done") {
    Train.finished = data;
    trainStatus(`${data.cancelled ? "cancelled" : "done"} after ${data.epochs} epoch(s); ` +
      "the maps and the prediction now use the trained weights");
    document.getElementById("train-download").hidden = false;
    Maps.load(false);
  } else if (kind === "error") {
    trainStatus(`training failed: ${data.message}`);
  }
}

// Parse "event: K\ndata: JSON\n\n" blocks as they arrive.
async function readEvents(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let kind = "message";
      let data = "";
      for (const line of block.split("\n")) {
        if (line.startsWith("event: ")) kind = line.slice(7);
        else if (line.startsWith("data: ")) data += line.slice(6);
      }
      handleEvent(kind, JSON.parse(data));
    }
  }
}

Train.start = async function () {
  if (Train.running) return;
  Train.running = true;
  Train.points = [];
  Train.epochs = [];
  Train.finished = null;
  Train.drawChart();
  document.getElementById("train-start").disabled = true;
  document.getElementById("train-cancel").disabled = false;
  trainStatus("starting...");
  try {
    const response = await fetch("/api/train", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({
        ...Maps.request, session: Train.session,
        epochs: Number(document.getElementById("train-epochs").value),
        samples: Number(document.getElementById("train-samples").value),
      }),
    });
    if (!response.ok) {
      const data = await response.json();
      trainStatus(`${response.status}: ${data.error.message}`);
    } else {
      trainStatus("training...");
      await readEvents(response);
    }
  } catch (error) {
    trainStatus(`could not reach the server: ${error}`);
  } finally {
    Train.running = false;
    document.getElementById("train-start").disabled = false;
    document.getElementById("train-cancel").disabled = true;
  }
};

Train.cancel = function () {
  return Maps.post("/api/train/cancel", { session: Train.session });
};

Train.download = async function (event) {
  event.preventDefault();
  const response = await fetch("/api/model/download", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ ...Maps.request, session: Train.session }),
  });
  const link = document.createElement("a");
  link.href = URL.createObjectURL(await response.blob());
  link.download = "convlens-model.keras";
  link.click();
};

Train.upload = async function () {
  const input = document.getElementById("upload");
  const file = input.files[0];
  if (!file) return;
  const status = document.getElementById("upload-status");
  status.textContent = "reading...";
  const bytes = new Uint8Array(await file.arrayBuffer());
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  }
  const answer = await Maps.post("/api/model", {
    ...Maps.request, session: Train.session, filename: file.name, data: btoa(binary),
  });
  if (!answer.ok) {
    status.textContent = answer.data.error.message;
    return;
  }
  status.textContent = `loaded ${answer.data.filename}: ${answer.data.spec}`;
  status.dataset.spec = answer.data.spec;
  document.getElementById("spec").value = answer.data.spec;
  explain(false); // app.js: the page now explores the uploaded model
};

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("train-start").addEventListener("click", () => Train.start());
  document.getElementById("train-cancel").addEventListener("click", () => Train.cancel());
  document.getElementById("train-download").addEventListener("click", Train.download);
  document.getElementById("upload").addEventListener("change", () => Train.upload());
  Train.drawChart();
});
