// The page's bench: both models, batch 1 and 64, 1 thread and, where the page is cross-origin isolated,
// more; interleaved rounds as `lenet-edge bench` times them (lenet_edge/bench/timing.py), one worker per
// thread count. It returns a report of the schema `lenet-edge bench -o` writes (docs/bench-report.md),
// with environment.execution.kind "browser": real hardware, which `lenet-edge compare` ranks.

const SIMD_PROBE = new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 123, 3, 2, 1, 0, 10, 10, 1, 8, 0,
                                   65, 0, 253, 15, 253, 98, 11]);  // a function returning an i8x16.splat: SIMD128

export function wasmFeatures() {
  const threads = typeof SharedArrayBuffer !== "undefined" && self.crossOriginIsolated === true;
  return { simd: WebAssembly.validate(SIMD_PROBE), threads, crossOriginIsolated: self.crossOriginIsolated === true };
}

export function threadCounts() {
  const cores = navigator.hardwareConcurrency || 1;
  const many = Math.min(4, cores);  // onnxruntime-web's own default ceiling
  return wasmFeatures().threads && many > 1 ? [1, many] : [1];
}

// numpy.percentile's default: linear interpolation between the sorted values.
function percentile(sorted, p) {
  const at = (p / 100) * (sorted.length - 1);
  const lo = Math.floor(at), hi = Math.ceil(at);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (at - lo);
}

function meanOf(values) {
  return values.reduce((a, b) => a + b, 0) / values.length;
}

function sampleStd(values) {
  const m = meanOf(values);
  return Math.sqrt(values.reduce((a, v) => a + (v - m) ** 2, 0) / (values.length - 1));
}

// bench.py's _stats: a row's figures from its timings (ms), one list per round.
export function rowStats(rounds, batchSize) {
  const all = rounds.flat();
  const sorted = Float64Array.from(all).sort();
  const mean = meanOf(all);
  const roundMeans = rounds.map(meanOf);
  const roundMedians = rounds.map((r) => percentile(Float64Array.from(r).sort(), 50));
  const [p50, p90, p99] = [50, 90, 99].map((p) => percentile(sorted, p));
  return {
    latency_ms: { mean, std: sampleStd(all), min: sorted[0], p50, p90, p99, max: sorted[sorted.length - 1] },
    throughput_ips: (batchSize * 1000) / mean,
    spread: { rounds: rounds.length, round_means_ms: roundMeans, round_p50s_ms: roundMedians,
              round_cv: sampleStd(roundMeans) / meanOf(roundMeans), p90_over_p50: p90 / p50 },
  };
}

function runWorker(message) {
  return new Promise((resolve, reject) => {
    const worker = new Worker(new URL("./bench-worker.js", import.meta.url), { type: "module" });
    worker.onmessage = (event) => {
      if (event.data.progress) return message.onProgress?.(event.data.progress);
      worker.terminate();
      event.data.error ? reject(new Error(event.data.error)) : resolve(event.data);
    };
    worker.onerror = (event) => { worker.terminate(); reject(new Error(event.message || "bench worker failed")); };
    const { onProgress, ...plain } = message;
    worker.postMessage(plain);
  });
}

function platformOf(userAgent) {
  const match = /\(([^;)]+)/.exec(userAgent);
  return match ? match[1] : "unknown";
}

// site: site.json; digits: the self-check's Uint8Array of count (side x side) digits, labels their classes.
export async function runBench(site, digits, labels, source, onProgress) {
  const started = performance.now();
  const settings = site.bench;
  const threads = threadCounts();
  const { runs, rounds } = settings;
  const shares = Array.from({ length: rounds }, (_, k) => Math.floor(runs / rounds) + (k < runs % rounds ? 1 : 0));
  const rows = [];
  const checks = {};
  let ortVersion = site.onnxruntime_web;
  for (const t of threads) {
    const result = await runWorker({
      threads: t, models: site.models.map(({ label, file, preprocessing }) => ({ label, file, preprocessing })),
      digits, labels, batchSizes: settings.batch_sizes, shares, warmup: settings.warmup,
      minTurnMs: settings.min_turn_ms, check: t === threads[0], onProgress,
    });
    Object.assign(checks, result.checks);
    ortVersion = result.ortVersion || ortVersion;
    for (const row of result.rows) {
      rows.push({ model: row.model, batch_size: row.batchSize, threads: t,
                  runs: row.rounds.reduce((n, r) => n + r.length, 0), ...rowStats(row.rounds, row.batchSize) });
    }
  }
  const features = wasmFeatures();
  const ua = navigator.userAgent;
  const brand = (navigator.userAgentData?.brands || []).map((b) => `${b.brand} ${b.version}`).join(", ");
  const maxBatch = Math.max(...settings.batch_sizes);
  const count = labels.length;
  return {
    schema: settings.schema, version: settings.version,
    created: new Date().toISOString().replace(/\.\d{3}Z$/, "+00:00"),
    duration_s: Math.round(performance.now() - started) / 1000,
    settings: {
      batch_sizes: settings.batch_sizes, threads, runs, warmup: settings.warmup, rounds,
      min_turn_ms: settings.min_turn_ms,
      inputs: { kind: "packaged", source, images: maxBatch, distinct_images: Math.min(count, maxBatch) },
      timer: "performance.now() in a dedicated worker, one inference per timing (browsers coarsen it: 5 us when "
             + "cross-origin isolated, else 100 us)",
      session: { provider: "onnxruntime-web wasm", intra_op_threads: "threads (env.wasm.numThreads)",
                 inter_op_threads: 1, graph_optimization_level: "all (default)",
                 execution_mode: "sequential (default)" },
    },
    environment: {
      device: null,
      execution: { kind: "browser", evidence: [
        `user agent ${ua}`, `WebAssembly SIMD ${features.simd ? "yes" : "no"}`,
        `WebAssembly threads ${features.threads ? "yes (cross-origin isolated)" : "no (not cross-origin isolated)"}`,
        `onnxruntime-web ${ortVersion}`] },
      board: null,
      cpu: { model: `unknown (browser: ${brand || platformOf(ua)})`, architecture: "wasm32",
             flags: features.simd ? ["wasm_simd128"] : [], flags_source: "browser", int8_dot_product: [],
             logical_cores: navigator.hardwareConcurrency || null, usable_cores: navigator.hardwareConcurrency || null,
             physical_cores: null },
      os: { system: platformOf(ua), release: "unknown" },
      kernel: { system: platformOf(ua), release: "unknown", version: "unknown", architecture: "unknown" },
      versions: { browser: brand || ua, onnxruntime: `${ortVersion} (web)`, "onnxruntime-web": ortVersion,
                  "lenet-edge": site.lenet_edge },
      onnxruntime: { version: ortVersion, wheel_tags: [], build_info: "onnxruntime-web ort-wasm-simd-threaded",
                     device: "CPU", providers: ["wasm"] },
      browser: { user_agent: ua, brands: brand || null, wasm_simd: features.simd, wasm_threads: features.threads,
                 cross_origin_isolated: features.crossOriginIsolated, onnxruntime_web: ortVersion },
      load_average: { start: null, end: null },
    },
    models: site.models.map((m) => ({
      label: m.label, kind: "onnxruntime-web", file: m.file.split("/").pop(), sha256: m.sha256, bytes: m.bytes,
      variant: m.variant, precision: m.precision, check: { images: count, accuracy: checks[m.label] ?? null },
    })),
    rows,
  };
}
