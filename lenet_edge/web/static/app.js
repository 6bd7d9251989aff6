// The page: a digit drawn or photographed, read by the int8 (and fp32) model with onnxruntime-web; the
// self-check against native onnxruntime's logits; the bench. What the tests read is in window.lenetEdge.
import { runBench } from "./bench.js";
import { PictureError, modelInput, pictureToDigit } from "./picture.js";
import { createSession, exclusive, fetchBytes, loadOrt, runLogits } from "./session.js";

const state = { ready: false, failed: null, message: "", result: null, selfCheck: null, benchReport: null };
window.lenetEdge = state;
const $ = (id) => document.getElementById(id);
const LATENCY_CALLS = 5;  // a reading's latency: the median of this many calls at batch 1, after one untimed

function say(text) {
  state.message = text;
  $("message").textContent = text;
  $("message").hidden = !text;
}

function bytesOf(base64) {
  return Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
}

function softmax(logits) {
  const top = Math.max(...logits);
  const e = Array.from(logits, (v) => Math.exp(v - top));
  const total = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / total);
}

function argmax(values) {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i] > values[best]) best = i;
  return best;
}

// ----------------------------------------------------------------------------- reading a digit

async function classify(ctx, digit) {
  const readings = [];
  for (const m of ctx.models) {
    const size = m.preprocessing.input_size;
    const input = modelInput(digit, 1, m.preprocessing, true);
    const logits = Array.from(await runLogits(ctx.ort, m.session, input, 1, size));
    const times = [];
    for (let i = 0; i < LATENCY_CALLS; i++) {
      const start = performance.now();
      await runLogits(ctx.ort, m.session, input, 1, size);
      times.push(performance.now() - start);
    }
    times.sort((a, b) => a - b);
    const p = softmax(logits);
    const k = argmax(p);
    readings.push({ label: m.label, precision: m.precision, logits, probabilities: p, class: m.class_labels[k],
                    probability: p[k], unsure: p[k] < ctx.site.rules.unsure_below,
                    latency_ms: times[LATENCY_CALLS >> 1] });
  }
  return readings;
}

// `wide`: run's doubt about a picture whose ink is wider than it is tall by wide_aspect (touching digits).
function showReading(ctx, digit, wide, readings, source) {
  const first = readings[0];
  const doubts = [...(first.unsure ? ["low probability"] : []), ...(wide ? ["wide"] : [])];
  state.result = { source, label: first.class, probability: first.probability, unsure: doubts.length > 0, doubts,
                   digit: Array.from(digit), models: readings };
  $("label").textContent = first.class;
  $("probability").textContent = `${(100 * first.probability).toFixed(1)} %`;
  $("unsure").hidden = !doubts.length;
  $("unsure").textContent = `unsure: ${doubts.join(", ")}${wide ? " (probably touching digits: the page reads one)" : ""}`;
  const bars = $("bars");
  bars.replaceChildren();
  first.probabilities.forEach((p, k) => {
    const row = document.createElement("div");
    row.className = "bar" + (k === argmax(first.probabilities) ? " top" : "");
    row.innerHTML = `<span>${ctx.models[0].class_labels[k]}</span><i style="width:${(100 * p).toFixed(1)}%"></i>` +
                    `<b>${(100 * p).toFixed(1)}</b>`;
    bars.append(row);
  });
  const side = Math.sqrt(digit.length);
  const seen = $("seen").getContext("2d");
  const image = seen.createImageData(side, side);
  digit.forEach((v, i) => { image.data.set([v, v, v, 255], 4 * i); });
  seen.putImageData(image, 0, 0);
  $("latency").replaceChildren(...readings.map((r) => {
    const row = document.createElement("tr");
    row.innerHTML = `<td>${r.label}</td><td>${r.precision}</td><td>${r.class}${r.unsure ? "?" : ""}</td>` +
                    `<td>${(100 * r.probability).toFixed(1)} %</td><td>${(1000 * r.latency_ms).toFixed(0)} µs</td>`;
    return row;
  }));
  $("result").hidden = false;
}

async function readPixels(ctx, rgba, width, height, source) {
  try {
    const m = ctx.models[0].preprocessing;
    const { digit, wide } = pictureToDigit(rgba, width, height, m.input_size - 2 * m.pad, ctx.site.rules);
    showReading(ctx, digit, wide, await exclusive(() => classify(ctx, digit)), source);
    say("");
  } catch (error) {
    if (!(error instanceof PictureError)) throw error;
    say(`${source}: ${error.message}`);
  }
}

// ----------------------------------------------------------------------------- drawing and photos

function setUpDrawing(ctx) {
  const canvas = $("pad");
  const pen = canvas.getContext("2d", { willReadFrequently: true });
  let drawing = false, strokes = 0;
  const clear = () => {
    pen.fillStyle = "#fff";
    pen.fillRect(0, 0, canvas.width, canvas.height);
    strokes = 0;
  };
  const at = (event) => {
    const box = canvas.getBoundingClientRect();
    return [(event.clientX - box.left) * canvas.width / box.width, (event.clientY - box.top) * canvas.height / box.height];
  };
  canvas.addEventListener("pointerdown", (event) => {
    drawing = true;
    strokes++;
    canvas.setPointerCapture(event.pointerId);
    pen.lineWidth = canvas.width / 14;
    pen.lineCap = pen.lineJoin = "round";
    pen.strokeStyle = "#000";
    pen.beginPath();
    pen.moveTo(...at(event));
    pen.lineTo(...at(event));
    pen.stroke();
  });
  canvas.addEventListener("pointermove", (event) => {
    if (!drawing) return;
    pen.lineTo(...at(event));
    pen.stroke();
  });
  const finish = () => {
    if (!drawing) return;
    drawing = false;
    read();
  };
  canvas.addEventListener("pointerup", finish);
  canvas.addEventListener("pointercancel", finish);
  const read = () => {
    if (!strokes) return say("the canvas is empty: draw a digit first");
    const { data } = pen.getImageData(0, 0, canvas.width, canvas.height);
    return readPixels(ctx, data, canvas.width, canvas.height, "drawing").catch((error) => say(`drawing: ${error.message}`));
  };
  $("clear").addEventListener("click", () => { clear(); say(""); });
  $("read").addEventListener("click", read);
  state.canvasPNG = () => canvas.toDataURL("image/png");
  clear();
}

async function readFile(ctx, file) {
  const rules = ctx.site.rules;
  if (file.size > rules.max_image_file_bytes) {
    return say(`${file.name}: ${file.size} bytes (expected an image file of at most ${rules.max_image_file_bytes} bytes)`);
  }
  let bitmap;
  try {
    bitmap = await createImageBitmap(file, { colorSpaceConversion: "none", premultiplyAlpha: "none" });
  } catch {
    return say(`${file.name}: not an image this browser can decode (expected PNG, JPEG, BMP, GIF, TIFF or WebP)`);
  }
  const { width, height } = bitmap;
  if (width * height > rules.max_image_pixels) {
    bitmap.close();
    return say(`${file.name}: ${width}x${height} pixels (expected at most ${rules.max_image_pixels} pixels)`);
  }
  const canvas = new OffscreenCanvas(width, height);
  const pen = canvas.getContext("2d", { willReadFrequently: true, colorSpace: "srgb" });
  pen.drawImage(bitmap, 0, 0);
  bitmap.close();
  const { data } = pen.getImageData(0, 0, width, height);
  return readPixels(ctx, data, width, height, file.name);
}

function setUpFiles(ctx) {
  for (const id of ["open", "photo"]) {
    $(id).addEventListener("change", async (event) => {
      const file = event.target.files[0];
      event.target.value = "";  // the same file chosen again is read again
      if (file) await readFile(ctx, file).catch((error) => say(`${file.name}: ${error.message}`));
    });
  }
}

// ----------------------------------------------------------------------------- self-check

// The packaged test digits through the page's preprocessing and onnxruntime-web, against native
// onnxruntime's logits from build time: int8 bit for bit (float32 bit patterns), fp32 within tolerance
// with the same argmax.
async function selfCheck(ctx) {
  const data = ctx.checkData;
  const count = data.count;
  const images = bytesOf(data.images);
  const report = { passed: true, images: count, source: data.source, fp32_tolerance: ctx.site.selfcheck.fp32_tolerance,
                   models: [] };
  for (const m of ctx.models) {
    const size = m.preprocessing.input_size;
    const input = modelInput(Float32Array.from(images), count, m.preprocessing, false);
    const got = await runLogits(ctx.ort, m.session, input, count, size);
    const expected = new Float32Array(bytesOf(data.logits[m.label]).buffer);
    const gotBits = new Uint32Array(got.buffer, got.byteOffset, got.length);
    const expectedBits = new Uint32Array(expected.buffer);
    let identical = 0, argmaxAgree = 0, right = 0, maxDiff = 0, firstMismatch = null;
    for (let n = 0; n < count; n++) {
      let same = true;
      for (let j = 0; j < 10; j++) {
        const i = n * 10 + j;
        if (gotBits[i] !== expectedBits[i]) same = false;
        maxDiff = Math.max(maxDiff, Math.abs(got[i] - expected[i]));
      }
      if (same) identical++;
      else if (firstMismatch === null) firstMismatch = n;
      const a = argmax(got.subarray(n * 10, n * 10 + 10));
      if (a === argmax(expected.subarray(n * 10, n * 10 + 10))) argmaxAgree++;
      if (a === data.labels[n]) right++;
    }
    const rule = m.precision === "int8" ? "bit-identical" : `within ${report.fp32_tolerance}, same argmax`;
    const passed = m.precision === "int8" ? identical === count
      : maxDiff <= report.fp32_tolerance && argmaxAgree === count;
    report.models.push({ label: m.label, precision: m.precision, rule, passed, bit_identical: identical,
                         max_abs_diff: maxDiff, argmax_agree: argmaxAgree, accuracy: right / count,
                         first_mismatch: firstMismatch });
    report.passed = report.passed && passed;
  }
  return report;
}

function showSelfCheck(report) {
  $("selfcheck").className = report.passed ? "pass" : "fail";
  $("selfcheck").replaceChildren(...[`${report.passed ? "✔ passed" : "✘ FAILED"}: ${report.images} official test digits, ` +
    "logits against native onnxruntime's"].concat(report.models.map((m) =>
    `${m.label} (${m.precision}, ${m.rule}): ${m.bit_identical}/${report.images} bit-identical, ` +
    `max |diff| ${m.max_abs_diff.toExponential(2)}, argmax ${m.argmax_agree}/${report.images}, ` +
    `accuracy ${(100 * m.accuracy).toFixed(2)} %${m.passed ? "" : " ← FAILED"}`)).map((text) => {
    const line = document.createElement("div");
    line.textContent = text;
    return line;
  }));
}

// ----------------------------------------------------------------------------- bench

function setUpBench(ctx) {
  $("bench").addEventListener("click", async () => {
    $("bench").disabled = true;
    try {
      const images = bytesOf(ctx.checkData.images);
      const report = await runBench(ctx.site, images, ctx.checkData.labels, ctx.checkData.source,
                                    (text) => { $("bench-progress").textContent = text; });
      state.benchReport = report;
      showBench(report);
    } catch (error) {
      say(`bench: ${error.message}`);
    } finally {
      $("bench").disabled = false;
    }
  });
}

function showBench(report) {
  $("bench-progress").textContent = `${report.duration_s.toFixed(1)} s; ${report.environment.execution.evidence.slice(1).join(", ")}`;
  const labels = report.models.map((m) => m.label);
  $("bench-rows").replaceChildren(...report.rows.map((r) => {
    const base = report.rows.find((o) => o.model === labels[0] && o.batch_size === r.batch_size && o.threads === r.threads);
    const row = document.createElement("tr");
    row.innerHTML = `<td>${r.model}</td><td>${r.batch_size}</td><td>${r.threads}</td>` +
      `<td>${r.latency_ms.mean.toFixed(3)}</td><td>${r.latency_ms.p50.toFixed(3)}</td>` +
      `<td>±${(100 * r.spread.round_cv).toFixed(0)} %</td><td>${(r.latency_ms.mean / base.latency_ms.mean).toFixed(2)}</td>`;
    return row;
  }));
  const link = $("bench-download");
  URL.revokeObjectURL(link.href);
  link.href = URL.createObjectURL(new Blob([JSON.stringify(report, null, 2) + "\n"], { type: "application/json" }));
  link.hidden = false;
  $("bench-table").hidden = false;
}

// ----------------------------------------------------------------------------- start

async function main() {
  const site = await (await fetch("site.json")).json();
  const ort = await loadOrt(1);
  const models = [];
  for (const m of site.models) models.push({ ...m, session: await createSession(ort, await fetchBytes(m.file)) });
  const checkData = await (await fetch(site.selfcheck.file)).json();
  const ctx = { site, ort, models, checkData };
  $("models").textContent = models.map((m) => `${m.label} (${m.precision}, ${m.variant})`).join(" · ") +
    ` · onnxruntime-web ${ort.env.versions?.web ?? site.onnxruntime_web}`;
  setUpDrawing(ctx);
  setUpFiles(ctx);
  setUpBench(ctx);
  state.ready = true;
  $("status").textContent = "ready: draw a digit, or open a picture of one";
  state.selfCheck = await exclusive(() => selfCheck(ctx));
  showSelfCheck(state.selfCheck);
}

main().catch((error) => {
  state.failed = String(error?.message || error);
  $("status").textContent = `the page could not start: ${state.failed}`;
});
