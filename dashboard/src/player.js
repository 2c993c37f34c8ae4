// The playground's audio side: plays a generation's PCM chunks through Web Audio as they arrive
// (each chunk an AudioBufferSourceNode scheduled right after the previous one, so the browser's own
// resampler takes the model's rate to the device's; no worklet, nothing the page's CSP must allow),
// draws the waveform, and keeps what it played for the WAV download and the checksum.

// How far ahead of "now" the first chunk (and one after an underrun) is scheduled: enough for the
// node to be set up, little enough not to delay the first sound.
const LEAD_S = 0.05;

// FNV-1a over bytes, 32 bits: cheap, incremental, and as easy to compute from the stream in any
// other client.
const FNV_OFFSET = 0x811c9dc5;
const FNV_PRIME = 0x01000193;
export function fnv1a(hash, bytes) {
  for (let i = 0; i < bytes.length; i++) hash = Math.imul(hash ^ bytes[i], FNV_PRIME) >>> 0;
  return hash;
}

/** Interleaved little-endian f32 samples out of a chunk's bytes (which may sit at any offset). */
export function f32le(bytes) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Float32Array(bytes.byteLength >> 2);
  for (let i = 0; i < out.length; i++) out[i] = view.getFloat32(i * 4, true);
  return out;
}

export class Player {
  /** `ctx` an AudioContext made on the click (so the autoplay policy lets it run). */
  constructor(ctx, { sampleRate, channels, expectedFrames, clickedAt, canvas }) {
    Object.assign(this, { ctx, sampleRate, channels, expectedFrames, clickedAt, canvas });
    this.next = 0;
    this.sources = [];
    this.parts = [];
    this.frames = 0;
    this.checksum = FNV_OFFSET;
    this.firstAudioMs = undefined;
    this.columns = new Float32Array(2 * (canvas?.width ?? 0)).fill(NaN);
    this.clear();
  }

  /** Schedules one chunk's interleaved samples; returns its frames. */
  play(samples) {
    const frames = samples.length / this.channels;
    if (frames === 0) return 0;
    const buffer = this.ctx.createBuffer(this.channels, frames, this.sampleRate);
    for (let c = 0; c < this.channels; c++) {
      const plane = new Float32Array(frames);
      for (let i = 0; i < frames; i++) plane[i] = samples[i * this.channels + c];
      buffer.copyToChannel(plane, c);
    }
    this.hash(buffer);
    const source = this.ctx.createBufferSource();
    source.buffer = buffer;
    source.connect(this.ctx.destination);
    const at = Math.max(this.next, this.ctx.currentTime + LEAD_S);
    source.start(at);
    if (this.firstAudioMs === undefined) {
      this.firstAudioMs = performance.now() - this.clickedAt + (at - this.ctx.currentTime) * 1000;
    }
    this.next = at + buffer.duration;
    this.sources.push(source);
    source.onended = () => this.sources.splice(this.sources.indexOf(source), 1);
    this.parts.push(samples);
    this.draw(samples, this.frames);
    this.frames += frames;
    return frames;
  }

  // The checksum covers what the audio output was handed: the buffer's own samples, read back and
  // interleaved again, as little-endian f32 bytes (the stream's byte order).
  hash(buffer) {
    const planes = Array.from({ length: this.channels }, (_, c) => buffer.getChannelData(c));
    const bytes = new Uint8Array(4 * this.channels * buffer.length);
    const view = new DataView(bytes.buffer);
    for (let i = 0; i < buffer.length; i++) {
      for (let c = 0; c < this.channels; c++) view.setFloat32(4 * (i * this.channels + c), planes[c][i], true);
    }
    this.checksum = fnv1a(this.checksum, bytes);
  }

  /** Seconds of audio received (and scheduled) so far. */
  get seconds() {
    return this.frames / this.sampleRate;
  }

  /** Stops what is still playing or scheduled. */
  stop() {
    for (const s of [...this.sources]) s.stop();
  }

  /** Everything played, interleaved. */
  samples() {
    const out = new Float32Array(this.parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of this.parts) {
      out.set(p, at);
      at += p.length;
    }
    return out;
  }

  clear() {
    const g = this.canvas?.getContext("2d");
    if (!g) return;
    g.clearRect(0, 0, this.canvas.width, this.canvas.height);
    g.fillStyle = "#eee";
    g.fillRect(0, this.canvas.height / 2, this.canvas.width, 1);
  }

  // Each pixel column is the min..max of the samples it covers (the first channel), drawn as the
  // samples arrive; the width stands for the whole expected length.
  draw(samples, startFrame) {
    const g = this.canvas?.getContext("2d");
    if (!g) return;
    const { width, height } = this.canvas;
    const total = Math.max(this.expectedFrames, startFrame + samples.length / this.channels);
    const touched = new Set();
    for (let i = 0; i < samples.length; i += this.channels) {
      const x = Math.min(width - 1, Math.floor(((startFrame + i / this.channels) / total) * width));
      const v = samples[i];
      const lo = this.columns[2 * x], hi = this.columns[2 * x + 1];
      if (!(v >= lo)) this.columns[2 * x] = v;
      if (!(v <= hi)) this.columns[2 * x + 1] = v;
      touched.add(x);
    }
    g.fillStyle = "#36c";
    for (const x of touched) {
      const lo = Math.max(-1, this.columns[2 * x]), hi = Math.min(1, this.columns[2 * x + 1]);
      const top = ((1 - hi) / 2) * height;
      g.fillRect(x, top, 1, Math.max(1, ((hi - lo) / 2) * height));
    }
  }
}
