#!/usr/bin/env node
// Generates music into a WAV file: one GenerationService.Generate call asking for AUDIO_FORMAT_WAV,
// whose chunks' data concatenated is the whole file (the first chunk carries the RIFF header with the
// exact sizes), written as the chunks arrive. Prints the server's summary; exits as the `maestro` CLI
// does (0, 2 for usage, 3 unreachable, 4 bad request or unknown model, 5 refused for resources,
// 7 credentials, 130 Ctrl-C, which cancels the call on the server and keeps what arrived).

import { closeSync, openSync, writeSync } from "node:fs";

import { connect, EXIT, fail, failCall, numberFlag, parseCommandLine } from "./connect.mjs";

const USAGE = `usage: node generate-wav.mjs --model MODEL --prompt TEXT [--duration 8] [--seed N] [-o out.wav]
                            [--addr host:port] [--token TOKEN]
  --model      a model id the server lists (ListModels), e.g. maestro/musicgen-tiny
  --prompt     the text to condition on (empty: unconditional)
  --duration   seconds of audio (default 8)
  --seed       a fixed seed, for the same music again
  -o           the WAV file to write (default out.wav)
  --addr       the server, host:port (default $MAESTRO_ADDR or 127.0.0.1:50051)
  --token      sent as "authorization: Bearer TOKEN" (default $MAESTRO_TOKEN)`;

const flags = parseCommandLine(USAGE, {
  model: { type: "string" },
  prompt: { type: "string", default: "" },
  duration: { type: "string", default: "8" },
  seed: { type: "string" },
  output: { type: "string", short: "o", default: "out.wav" },
});
if (!flags.model) {
  fail(EXIT.USAGE, "--model is required (see --help)");
}
const request = {
  model: flags.model,
  prompt: flags.prompt,
  duration_s: numberFlag("duration", flags.duration),
  format: "AUDIO_FORMAT_WAV",
};
if (flags.seed !== undefined) {
  if (!/^\d+$/.test(flags.seed)) {
    fail(EXIT.USAGE, `--seed: not an unsigned integer: ${JSON.stringify(flags.seed)}`);
  }
  request.seed = flags.seed; // uint64: a decimal string keeps every bit
}

const { generation, metadata } = connect(flags);
const started = Date.now();
const call = generation.Generate(request, metadata);
let interrupted = false;
process.once("SIGINT", () => {
  interrupted = true;
  call.cancel();
});

let header;
let summary;
let file;
let written = 0;
let nextIndex = 0;
try {
  for await (const response of call) {
    if (response.payload === "header") {
      header = response.header;
      // Opened only once the server accepted the request: a refusal leaves no empty file behind.
      file = openSync(flags.output, "w");
    } else if (response.payload === "chunk") {
      const chunk = response.chunk;
      if (file === undefined || chunk.index !== nextIndex) {
        fail(EXIT.GENERAL, `DATA_LOSS: chunk ${chunk.index} arrived where chunk ${nextIndex} was due`);
      }
      nextIndex += 1;
      writeSync(file, chunk.data);
      written += chunk.data.length;
    } else if (response.payload === "summary") {
      summary = response.summary;
    }
  }
} catch (err) {
  if (interrupted) {
    fail(EXIT.INTERRUPTED, `interrupted: kept the ${written} bytes that arrived in ${flags.output}`);
  }
  failCall(err);
} finally {
  if (file !== undefined) {
    closeSync(file);
  }
  generation.close();
}
if (summary === undefined) {
  fail(EXIT.GENERAL, "the stream ended without a summary");
}

const seconds = Number(summary.samples) / header.sample_rate;
console.log(
  `wrote ${flags.output}: ${written} bytes, ${seconds.toFixed(2)} s at ${header.sample_rate} Hz, ` +
    `${header.channels} channel(s), seed ${header.params.seed}`,
);
console.log(
  `generated ${summary.frames} frames in ${Math.round(summary.total_ms)} ms on ${summary.device} ` +
    `(real-time factor ${summary.real_time_factor.toFixed(2)}, ` +
    `${summary.steps_per_second.toFixed(1)} steps/s), first audio after ` +
    `${Math.round(summary.time_to_first_chunk_ms)} ms, wall ${Date.now() - started} ms`,
);
