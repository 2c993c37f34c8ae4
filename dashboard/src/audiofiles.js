// Audio files in and out of the playground: the clip a user drops (sent as the WAV it is, or as
// 16-bit PCM after the browser decodes it), the WAV built from the samples played, and downloads.
import { AudioEncoding } from "./gen/maestro/v1/generation_pb.js";

// The rate the browser decodes other formats to: a real rate the server accepts, which it resamples
// to the model's (and says so in the header).
const DECODE_RATE = 48000;

/**
 * The server's f32 → s16 rule (src/audio_out/pcm.rs): NaN is 0, clamp, round(x * 32767), computed as
 * Rust does it: the product in f32 (`fround` of the exact f64 product) and halves away from zero.
 */
export function toI16(x) {
  if (Number.isNaN(x)) return 0;
  const y = Math.fround(Math.max(-1, Math.min(1, x)) * 32767);
  return Math.sign(y) * Math.round(Math.abs(y));
}

const isWav = (b) => b.length >= 12 && String.fromCharCode(...b.subarray(0, 4)) === "RIFF" && String.fromCharCode(...b.subarray(8, 12)) === "WAVE";

/** An `AudioInput` for `file`: a WAV as it is (the server reads it), anything else decoded here. */
export async function clipInput(file) {
  const bytes = new Uint8Array(await file.arrayBuffer());
  if (isWav(bytes)) return { input: { data: bytes, encoding: AudioEncoding.WAV }, note: "sent as WAV" };
  const ctx = new OfflineAudioContext(1, 1, DECODE_RATE);
  let audio;
  try {
    audio = await ctx.decodeAudioData(bytes.buffer);
  } catch (e) {
    throw new Error(`this browser cannot decode ${file.name}: ${e.message ?? e}`);
  }
  const channels = audio.numberOfChannels;
  const planes = Array.from({ length: channels }, (_, c) => audio.getChannelData(c));
  const data = new Uint8Array(2 * channels * audio.length);
  const view = new DataView(data.buffer);
  for (let i = 0; i < audio.length; i++) {
    for (let c = 0; c < channels; c++) view.setInt16(2 * (i * channels + c), toI16(planes[c][i]), true);
  }
  return {
    input: { data, encoding: AudioEncoding.PCM_S16LE, sampleRate: DECODE_RATE, channels },
    note: `decoded here: ${audio.duration.toFixed(1)} s, ${channels} ch, sent as 16-bit PCM at ${DECODE_RATE} Hz`,
  };
}

/** A 16-bit PCM WAV of interleaved f32 samples, converted as the server's own WAV is. */
export function wav(samples, sampleRate, channels) {
  const data = 2 * samples.length;
  const out = new DataView(new ArrayBuffer(44 + data));
  const text = (at, s) => [...s].forEach((ch, i) => out.setUint8(at + i, ch.charCodeAt(0)));
  text(0, "RIFF");
  out.setUint32(4, 36 + data, true);
  text(8, "WAVE");
  text(12, "fmt ");
  out.setUint32(16, 16, true);
  out.setUint16(20, 1, true);
  out.setUint16(22, channels, true);
  out.setUint32(24, sampleRate, true);
  out.setUint32(28, sampleRate * channels * 2, true);
  out.setUint16(32, channels * 2, true);
  out.setUint16(34, 16, true);
  text(36, "data");
  out.setUint32(40, data, true);
  for (let i = 0; i < samples.length; i++) out.setInt16(44 + 2 * i, toI16(samples[i]), true);
  return new Blob([out.buffer], { type: "audio/wav" });
}

/** Saves `blob` as `name` through the browser's download. */
export function download(blob, name) {
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = name;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 60_000);
}
