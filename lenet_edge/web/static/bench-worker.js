// One thread count of the page's bench: onnxruntime-web started with that many threads, both models
// timed in interleaved rounds (bench.py's time_interleaved), the raw timings sent back.
import { modelInput } from "./picture.js";
import { createSession, fetchBytes, loadOrt, runLogits } from "./session.js";

async function timeCalls(run, count) {
  const timings = [];
  for (let i = 0; i < count; i++) {
    const start = performance.now();
    await run();
    timings.push(performance.now() - start);
  }
  return timings;
}

function median(values) {
  const s = Float64Array.from(values).sort();
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

// Each model warmed up, then `shares.length` rounds; in round k the models take turns in an order rotated by
// k, each turn shares[k] calls or more, enough to last minTurnMs by the warm-up's median call.
async function timeInterleaved(runners, shares, warmup, minTurnMs, progress) {
  const perCall = runners.map(() => Infinity);
  for (const [i, r] of runners.entries()) {
    const warm = await timeCalls(r.run, warmup);
    if (warm.length) perCall[i] = median(warm);
  }
  const perRound = runners.map(() => []);
  for (const [k, share] of shares.entries()) {
    for (let j = 0; j < runners.length; j++) {
      const i = (j + k) % runners.length;
      progress(`${runners[i].label}, round ${k + 1}/${shares.length}`);
      const calls = Math.max(share, Math.ceil(minTurnMs / Math.max(perCall[i], 1e-6)));
      perRound[i].push(await timeCalls(runners[i].run, calls));
    }
  }
  return perRound;
}

self.onmessage = async (event) => {
  const { threads, models, digits, labels, batchSizes, shares, warmup, minTurnMs, check } = event.data;
  try {
    const ort = await loadOrt(threads);
    const count = labels.length;
    const loaded = [];
    for (const m of models) {
      const session = await createSession(ort, await fetchBytes(new URL(m.file, new URL("./", import.meta.url))));
      const size = m.preprocessing.input_size;
      loaded.push({ ...m, session, size, input: modelInput(Float32Array.from(digits), count, m.preprocessing, false) });
    }
    const checks = {};
    if (check) {
      for (const m of loaded) {
        const logits = await runLogits(ort, m.session, m.input, count, m.size);
        let right = 0;
        for (let n = 0; n < count; n++) {
          const row = logits.subarray(n * 10, n * 10 + 10);
          if (row.indexOf(Math.max(...row)) === labels[n]) right++;
        }
        checks[m.label] = right / count;
      }
    }
    const rows = [];
    for (const b of batchSizes) {
      const runners = loaded.map((m) => {
        const x = m.input.subarray(0, b * m.size * m.size);  // the first b digits (b <= count)
        return { label: m.label, run: () => runLogits(ort, m.session, x, b, m.size) };
      });
      const progress = (what) => self.postMessage({ progress: `${threads} thread(s), batch ${b}: ${what}` });
      const perRound = await timeInterleaved(runners, shares, warmup, minTurnMs, progress);
      for (const [i, m] of loaded.entries()) rows.push({ model: m.label, batchSize: b, rounds: perRound[i] });
    }
    self.postMessage({ rows, checks, ortVersion: ort.env.versions?.web });
  } catch (error) {
    self.postMessage({ error: String(error?.message || error) });
  }
};
