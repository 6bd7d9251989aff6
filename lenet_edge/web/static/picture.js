// A picture as the MNIST-style digit `lenet-edge run` makes of it: the rules of lenet_edge/inputs.py
// (rules 1-6), written again for the browser, with its constants from site.json. The page reads one
// digit: the whole picture goes through rules 4-6, as `run` does with a picture of one digit.
// tests/web/test_web_browser.py holds the two together: the same pictures give the same 28x28 digit
// (within one grey level; in practice within 1e-3, the Lanczos sums being added in another order) and
// the same label. Arithmetic that numpy does in float32 is done in float32 here (Float32Array, fround).

const f32 = Math.fround;

export class PictureError extends Error {}

// Python's round(): halves to even (0.5 -> 0, 2.5 -> 2), where Math.round takes them up.
export function pyRound(x) {
  const floor = Math.floor(x);
  const rest = x - floor;
  if (rest !== 0.5) return rest < 0.5 ? floor : floor + 1;
  return floor % 2 === 0 ? floor : floor + 1;
}

// Rule 1: RGBA bytes (H*W*4) -> grey levels. Opaque pixels: Pillow's RGB -> L (ITU-R 601-2 luma in
// integers); a picture with transparent pixels: float luma composited onto white when the visible ink is
// dark on average, else black. (Pillow takes the second way for every RGBA/LA file, even a fully opaque
// one; here an opaque picture takes the first: the two differ by less than half a grey level.)
export function greyLevels(rgba, width, height) {
  const n = width * height;
  const grey = new Float32Array(n);
  let opaque = true;
  for (let i = 0; i < n; i++) if (rgba[4 * i + 3] !== 255) { opaque = false; break; }
  if (opaque) {
    for (let i = 0; i < n; i++) {
      grey[i] = (rgba[4 * i] * 19595 + rgba[4 * i + 1] * 38470 + rgba[4 * i + 2] * 7471 + 0x8000) >> 16;
    }
    return grey;
  }
  const luma = new Float32Array(n), alpha = new Float32Array(n);
  let visible = 0, ink = 0;
  for (let i = 0; i < n; i++) {
    luma[i] = f32(f32(f32(rgba[4 * i] * f32(0.299)) + f32(rgba[4 * i + 1] * f32(0.587))) + f32(rgba[4 * i + 2] * f32(0.114)));
    alpha[i] = f32(rgba[4 * i + 3] / 255);
    visible += alpha[i];
    ink += luma[i] * alpha[i];
  }
  const background = (visible > 0 ? ink / visible : 0) < 128 ? 255 : 0;
  for (let i = 0; i < n; i++) grey[i] = f32(luma[i] * alpha[i]) + f32(background * f32(1 - alpha[i]));
  return grey;
}

// The outer ring (BORDER_FRACTION of the shorter side, at least 1 px) and the middle half.
function borderAndCentre(x, w, h, rules) {
  const b = Math.max(1, pyRound(rules.border_fraction * Math.min(h, w)));
  const ring = [];
  const centre = [];
  const r0 = Math.floor(h / 4), r1 = h - Math.floor(h / 4), c0 = Math.floor(w / 4), c1 = w - Math.floor(w / 4);
  for (let r = 0; r < h; r++) {
    for (let c = 0; c < w; c++) {
      const v = x[r * w + c];
      if (r < b || r >= h - b || c < b || c >= w - b) ring.push(v);
      if (r >= r0 && r < r1 && c >= c0 && c < c1) centre.push(v);
    }
  }
  return [Float32Array.from(ring), centre.length ? Float32Array.from(centre) : x];
}

function mean(values) {
  let s = 0;
  for (const v of values) s += v;
  return s / values.length;
}

// numpy.median of float32 values: the middle value, or the float32 mean of the two middle ones.
function median(values) {
  const sorted = Float32Array.from(values).sort();
  const m = sorted.length >> 1;
  return sorted.length % 2 ? sorted[m] : f32(f32(sorted[m - 1] + sorted[m]) / 2);
}

// Rule 2: light ink on a dark background (invert: "auto" | "yes" | "no").
export function lightOnDark(grey, w, h, rules, invert = "auto") {
  const [border, centre] = borderAndCentre(grey, w, h, rules);
  if (invert === "yes" || (invert === "auto" && mean(border) > mean(centre))) return grey.map((v) => 255 - v);
  return Float32Array.from(grey);
}

// Rule 3: the border's median plus three robust standard deviations becomes 0, the brightest pixel 255.
export function removeBackground(x, w, h, rules) {
  const [border] = borderAndCentre(x, w, h, rules);
  const level = median(border);
  const spread = 1.4826 * median(border.map((v) => Math.abs(v - level)));
  const floor = f32(level + 3.0 * spread);
  const out = new Float32Array(x.length);
  let peak = 0;
  for (let i = 0; i < x.length; i++) {
    out[i] = Math.max(x[i] - floor, 0);
    peak = Math.max(peak, out[i]);
  }
  if (peak < rules.min_contrast) {
    throw new PictureError(`no digit found (contrast ${peak.toFixed(1)} grey levels against the background; ` +
                           `expected at least ${rules.min_contrast})`);
  }
  const gain = f32(255 / peak);
  for (let i = 0; i < out.length; i++) out[i] = out[i] * gain;
  return out;
}

// Pillow's Lanczos filter (support 3) and its coefficients (libImaging/Resample.c, precompute_coeffs).
function lanczos(x) {
  const sinc = (t) => (t === 0 ? 1 : Math.sin(t * Math.PI) / (t * Math.PI));
  return x >= -3 && x < 3 ? sinc(x) * sinc(x / 3) : 0;
}

function coefficients(inSize, in0, in1, outSize) {
  const scale = f32(f32(in1 - in0) / outSize);  // float in Pillow's C
  const filterScale = Math.max(scale, 1);
  const support = 3 * filterScale;
  const taps = [];
  for (let xx = 0; xx < outSize; xx++) {
    const centre = in0 + (xx + 0.5) * scale;
    const first = Math.max(Math.trunc(centre - support + 0.5), 0);
    const last = Math.min(Math.trunc(centre + support + 0.5), inSize);
    const k = [];
    let total = 0;
    for (let x = first; x < last; x++) {
      const weight = lanczos((x - centre + 0.5) / filterScale);
      k.push(weight);
      total += weight;
    }
    taps.push({ first, k: total !== 0 ? k.map((v) => v / total) : k });
  }
  return taps;
}

// Pillow's Image.reduce of a float image: the mean of each factor_x x factor_y block (partial blocks at
// the right and bottom edges: the mean of the pixels they hold).
function reduce(x, w, h, fx, fy) {
  const ow = Math.ceil(w / fx), oh = Math.ceil(h / fy);
  const out = new Float32Array(ow * oh);
  for (let oy = 0; oy < oh; oy++) {
    for (let ox = 0; ox < ow; ox++) {
      let sum = 0, count = 0;
      for (let y = oy * fy; y < Math.min(h, (oy + 1) * fy); y++) {
        for (let c = ox * fx; c < Math.min(w, (ox + 1) * fx); c++) { sum += x[y * w + c]; count++; }
      }
      out[oy * ow + ox] = sum * (1 / count);
    }
  }
  return [out, ow, oh];
}

// Image.fromarray(x, "F").resize((newW, newH), LANCZOS, reducing_gap=3.0), as Pillow computes it.
export function resizeLanczos(x, w, h, newW, newH) {
  let box = [0, 0, w, h];
  const fx = Math.trunc(w / newW / 3) || 1, fy = Math.trunc(h / newH / 3) || 1;
  if (fx > 1 || fy > 1) {
    [x, w, h] = reduce(x, w, h, fx, fy);
    box = [0, 0, f32(box[2] / fx), f32(box[3] / fy)];
  }
  if (w === newW && h === newH && box[2] === newW && box[3] === newH) return Float32Array.from(x);
  const needH = newW !== w || box[0] !== 0 || box[2] !== newW;
  const needV = newH !== h || box[1] !== 0 || box[3] !== newH;
  if (needH) {
    const taps = coefficients(w, box[0], box[2], newW);
    const out = new Float32Array(newW * h);
    for (let y = 0; y < h; y++) {
      for (let xx = 0; xx < newW; xx++) {
        const { first, k } = taps[xx];
        let s = 0;
        for (let i = 0; i < k.length; i++) s += x[y * w + first + i] * k[i];
        out[y * newW + xx] = s;
      }
    }
    x = out;
    w = newW;
  }
  if (needV) {
    const taps = coefficients(h, box[1], box[3], newH);
    const out = new Float32Array(w * newH);
    for (let yy = 0; yy < newH; yy++) {
      const { first, k } = taps[yy];
      for (let c = 0; c < w; c++) {
        let s = 0;
        for (let i = 0; i < k.length; i++) s += x[(first + i) * w + c] * k[i];
        out[yy * w + c] = s;
      }
    }
    x = out;
  }
  return x;
}

// The box of the pixels above the ink threshold: [top, bottom, left, right], inclusive.
function inkBox(x, w, h, rules) {
  const threshold = rules.ink_threshold * 255;
  let top = h, bottom = -1, left = w, right = -1;
  for (let r = 0; r < h; r++) {
    for (let c = 0; c < w; c++) {
      if (x[r * w + c] > threshold) {
        top = Math.min(top, r); bottom = Math.max(bottom, r); left = Math.min(left, c); right = Math.max(right, c);
      }
    }
  }
  return [top, bottom, left, right];
}

// Rules 4-6: crop to the ink's box, scale its longer side to 20/28 of the field, centre of mass in the middle.
export function centreDigit(x, w, h, side, rules) {
  const [top, bottom, left, right] = inkBox(x, w, h, rules);
  const bh = bottom - top + 1, bw = right - left + 1;
  const crop = new Float32Array(bh * bw);
  for (let r = 0; r < bh; r++) crop.set(x.subarray((top + r) * w + left, (top + r) * w + left + bw), r * bw);
  const box = pyRound(side * 20 / 28);
  const scale = box / Math.max(bh, bw);
  const newH = Math.max(1, pyRound(bh * scale)), newW = Math.max(1, pyRound(bw * scale));
  const digit = resizeLanczos(crop, bw, bh, newW, newH).map((v) => Math.min(Math.max(v, 0), 255));
  let mass = 0, rowMoment = 0, colMoment = 0;
  for (let r = 0; r < newH; r++) {
    for (let c = 0; c < newW; c++) {
      const v = digit[r * newW + c];
      mass += v; rowMoment += v * r; colMoment += v * c;
    }
  }
  if (mass <= 0) throw new PictureError(`no digit left after scaling it to ${newW}x${newH} pixels`);
  const centre = side / 2;  // MNIST puts the centre of mass at pixel 14 of 28
  const top0 = Math.min(Math.max(pyRound(centre - rowMoment / mass), 0), side - newH);
  const left0 = Math.min(Math.max(pyRound(centre - colMoment / mass), 0), side - newW);
  const field = new Float32Array(side * side);
  for (let r = 0; r < newH; r++) field.set(digit.subarray(r * newW, (r + 1) * newW), (top0 + r) * side + left0);
  return field;
}

// Rules 1-6: RGBA pixels of a picture -> {digit: the (side x side) light-on-dark digit, float32 in [0, 255],
// wide: its ink box is wider than wide_aspect x its height, which `run` flags as probably touching digits}.
export function pictureToDigit(rgba, width, height, side, rules, invert = "auto") {
  if (width < 1 || height < 1 || width * height > rules.max_image_pixels) {
    throw new PictureError(`${width}x${height} pixels (expected at least 1 and at most ${rules.max_image_pixels} pixels)`);
  }
  const ink = removeBackground(lightOnDark(greyLevels(rgba, width, height), width, height, rules, invert),
                               width, height, rules);
  const [top, bottom, left, right] = inkBox(ink, width, height, rules);
  return { digit: centreDigit(ink, width, height, side, rules),
           wide: right - left + 1 > rules.wide_aspect * (bottom - top + 1) };
}

// The model's contract: its polarity, zero padding and normalisation, in float32 as numpy computes them
// (lenet_edge.data.Preprocessing). digits: N (side x side) digits, light on dark, concatenated. A picture's
// digit is first turned to the contract's polarity (inputs.to_model_polarity); MNIST arrays are taken as they are.
export function modelInput(digits, count, preprocessing, picture = true) {
  const { input_size: size, pad, mean: m, std: s, polarity } = preprocessing;
  if (polarity !== "light-on-dark" && polarity !== "dark-on-light") {
    throw new PictureError(`model contract polarity ${polarity} (expected light-on-dark or dark-on-light)`);
  }
  const side = size - 2 * pad;
  const mean32 = f32(m), std32 = f32(s);
  const background = f32(f32(f32(0 / 255) - mean32) / std32);
  const out = new Float32Array(count * size * size).fill(background);
  for (let n = 0; n < count; n++) {
    for (let r = 0; r < side; r++) {
      for (let c = 0; c < side; c++) {
        let v = digits[n * side * side + r * side + c];
        if (picture && polarity === "dark-on-light") v = f32(255 - v);
        out[n * size * size + (r + pad) * size + c + pad] = f32(f32(f32(v / 255) - mean32) / std32);
      }
    }
  }
  return out;
}
