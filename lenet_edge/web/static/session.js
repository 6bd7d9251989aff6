// onnxruntime-web, loaded from the site's own ort/ folder (never a CDN), and the models' sessions.
// Its thread count is fixed when its WebAssembly starts, once per JavaScript realm: the page runs on one
// thread, and the bench starts a worker per thread count (bench-worker.js).

export async function loadOrt(threads) {
  const ort = await import("./ort/ort.wasm.min.mjs");
  ort.env.wasm.wasmPaths = new URL("./ort/", import.meta.url).href;
  ort.env.wasm.numThreads = threads;
  ort.env.wasm.proxy = false;
  ort.env.logLevel = "error";
  return ort;
}

export async function fetchBytes(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  return new Uint8Array(await response.arrayBuffer());
}

export async function createSession(ort, bytes) {
  return ort.InferenceSession.create(bytes, { executionProviders: ["wasm"], graphOptimizationLevel: "all",
                                              executionMode: "sequential" });
}

// Logits (count x classes) of prepared inputs (count x 1 x size x size float32).
export async function runLogits(ort, session, input, count, size) {
  const feeds = { image: new ort.Tensor("float32", input, [count, 1, size, size]) };
  const results = await session.run(feeds);
  return results.logits.data;
}

// One model call at a time in this realm: a digit drawn while the self-check runs waits for it.
let queue = Promise.resolve();
export function exclusive(task) {
  const run = queue.then(task);
  queue = run.catch(() => {});
  return run;
}
