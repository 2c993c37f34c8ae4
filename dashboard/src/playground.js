// The playground: a form over GenerationService.Generate that plays the music as it is generated.
// The stream asks for AUDIO_FORMAT_PCM_F32LE and hands each chunk to the Player; Stop aborts the
// call, which closes the connection, and the server cancels the generation (its lease and queue slot
// go back). Refusals show the server's message; one for want of a token (or of its role) asks for a
// token through the page's form and generates again with it. FLAC comes from the server's encoder:
// the same request again, pinned to the seed the first one used.
import { createClient, ConnectError, Code } from "@connectrpc/connect";
import { AudioFormat, GenerationService } from "./gen/maestro/v1/generation_pb.js";
import { Player, f32le } from "./player.js";
import { clipInput, download, wav } from "./audiofiles.js";

const $ = (id) => document.getElementById(id);
const byTest = (id) => document.querySelector(`[data-testid="${id}"]`);
const RETRY_MS = 3000;

function readout(id, value, text) {
  const el = byTest(id);
  el.dataset.value = value === undefined ? "" : String(value);
  el.textContent = text ?? (value === undefined ? "—" : String(value));
}
const ms = (v) => (v >= 1000 ? `${(v / 1000).toFixed(2)} s` : `${v.toFixed(0)} ms`);
const optional = (id, parse = Number) => ($(id).value.trim() === "" ? undefined : parse($(id).value.trim()));

function modelState(m) {
  if (m.error) return `refused: ${m.error}`;
  if (!m.weightsPresent) return "absent";
  return m.loaded ? `loaded on ${m.device}${m.inFlight ? `, ${m.inFlight} in flight` : ""}` : "present, not loaded";
}

/**
 * Wires the playground to `transport` (the page's, which sends the session's token). `needToken(what,
 * message, retry)` shows the page's token form and runs `retry` once a token is entered.
 */
export function playground({ transport, needToken }) {
  const client = createClient(GenerationService, transport);
  const state = { clip: undefined, run: undefined, last: undefined };

  async function refreshModels() {
    const select = $("pg-model");
    try {
      const { models } = await client.listModels({});
      select.dataset.state = "listed";
      // Left alone when nothing changed: replacing the options would close an open list.
      const key = models.map((m) => `${m.model} ${modelState(m)}`).join("\n");
      if (key === select.dataset.key) return;
      select.dataset.key = key;
      const keep = select.value;
      select.replaceChildren(...models.map((m) => {
        const o = document.createElement("option");
        o.value = m.model;
        o.textContent = `${m.model} — ${modelState(m)}`;
        o.disabled = !m.weightsPresent || !!m.error;
        return o;
      }));
      const usable = models.filter((m) => m.weightsPresent && !m.error);
      select.value = usable.some((m) => m.model === keep) ? keep : (usable.find((m) => m.loaded) ?? usable[0])?.model ?? "";
    } catch (e) {
      // Telemetry behind a token: listed once the page has one.
      select.dataset.state = "failed";
      select.title = e instanceof ConnectError ? e.rawMessage : String(e);
      setTimeout(refreshModels, RETRY_MS);
    }
  }
  // Listed on load, after each generation and when the list is opened: no polling of the model roots.
  refreshModels();
  $("pg-model").addEventListener("focus", () => state.run || refreshModels());

  function request() {
    const sampling = $("pg-sampling").value;
    const req = {
      model: $("pg-model").value,
      prompt: $("pg-prompt").value,
      negativePrompt: $("pg-negative").value,
      durationS: Number($("pg-duration").value),
      seed: optional("pg-seed", BigInt),
      guidanceScale: optional("pg-guidance"),
      temperature: optional("pg-temperature"),
      topK: optional("pg-top-k"),
      topP: optional("pg-top-p"),
      greedy: sampling === "greedy",
      samplingMode: sampling === "greedy" ? 0 : Number(sampling),
      chunkMs: Number($("pg-chunk-ms").value) || 0,
      format: AudioFormat.PCM_F32LE,
    };
    if (state.clip) req[$("pg-clip-role").value === "melody" ? "melody" : "audioPrompt"] = state.clip;
    return req;
  }

  function setState(word, text = word) {
    readout("playground-state", word, text);
    const running = word === "connecting" || word === "playing";
    $("pg-generate").disabled = running;
    $("pg-stop").disabled = !running;
  }

  function refused(e, retry) {
    const message = e instanceof ConnectError ? `${Code[e.code]}: ${e.rawMessage}` : String(e?.message ?? e);
    $("pg-error").textContent = message;
    $("pg-error").dataset.code = e instanceof ConnectError ? Code[e.code] : "";
    if (e instanceof ConnectError && (e.code === Code.Unauthenticated || e.code === Code.PermissionDenied)) {
      needToken("Generate needs a token with the generate role", e.rawMessage, retry);
    }
  }

  async function generate() {
    if (state.run) return;
    const clickedAt = performance.now();
    // Made (or resumed) inside the click, so the autoplay policy lets it sound.
    state.ctx ??= new AudioContext();
    state.ctx.resume();
    const abort = new AbortController();
    const run = { abort, req: request(), player: undefined, clickedAt };
    state.run = run;
    $("pg-error").textContent = "";
    $("pg-wav").disabled = $("pg-flac").disabled = true;
    for (const id of ["playground-first-audio-ms", "playground-done-ms", "playground-checksum", "playground-rtf", "playground-used-seed"]) readout(id, undefined);
    readout("playground-received-seconds", 0, "0.0 s");
    readout("playground-progress", 0, "—");
    setState("connecting", "waiting for the server…");
    try {
      for await (const res of client.generate(run.req, { signal: abort.signal })) on(run, res.payload);
      run.complete = true;
      setState("done");
    } catch (e) {
      if (abort.signal.aborted) setState("stopped");
      else {
        setState("refused", "refused");
        refused(e, generate);
      }
    } finally {
      state.run = undefined;
      // What was received downloads as WAV even when stopped; FLAC only for a whole generation.
      if (run.player?.frames) state.last = run;
      $("pg-wav").disabled = !run.player?.frames;
      $("pg-flac").disabled = !run.complete;
      refreshModels();
    }
  }

  function on(run, { case: kind, value }) {
    if (kind === "header") {
      run.header = value;
      run.startedAt = performance.now();
      const canvas = $("pg-wave");
      run.player = new Player(state.ctx, {
        sampleRate: value.sampleRate, channels: value.channels, expectedFrames: Number(value.expectedSamples),
        clickedAt: run.clickedAt, canvas,
      });
      readout("playground-used-seed", value.params?.seed, String(value.params?.seed ?? "—"));
      const notes = [`${value.model} on ${value.device}`, `${value.sampleRate} Hz`, `${value.channels} ch`];
      if (value.queuePosition) notes.push(`queued behind ${value.queuePosition}`);
      notes.push(...value.inputConversions);
      $("pg-notes").textContent = notes.join(" · ");
      setState("playing", value.queuePosition ? "queued…" : "generating…");
    } else if (kind === "chunk") {
      const p = run.player;
      p.play(f32le(value.data));
      if (run.player.firstAudioMs !== undefined && byTest("playground-first-audio-ms").dataset.value === "") {
        readout("playground-first-audio-ms", p.firstAudioMs.toFixed(1), ms(p.firstAudioMs));
        byTest("playground-first-audio-ms").dataset.audioState = state.ctx.state;
      }
      readout("playground-received-seconds", p.seconds, `${p.seconds.toFixed(1)} s`);
      readout("playground-progress", value.progress, `step ${value.framesDone} / ${value.framesTotal}`);
      const rtf = (performance.now() - run.startedAt) / 1000 / p.seconds;
      readout("playground-rtf", rtf.toFixed(3), rtf.toFixed(2));
      readout("playground-checksum", p.checksum, p.checksum.toString(16).padStart(8, "0"));
      setState("playing", "generating…");
    } else if (kind === "summary") {
      const done = performance.now() - run.clickedAt;
      readout("playground-done-ms", done.toFixed(1), ms(done));
      readout("playground-rtf", value.realTimeFactor, `${value.realTimeFactor.toFixed(2)} (${value.stepsPerSecond.toFixed(0)} steps/s)`);
    }
  }

  $("playground").addEventListener("submit", (ev) => {
    ev.preventDefault();
    generate();
  });
  $("pg-stop").addEventListener("click", () => {
    state.run?.abort.abort();
    state.run?.player?.stop();
  });
  $("pg-wav").addEventListener("click", () => {
    const { player, header } = state.last;
    download(wav(player.samples(), header.sampleRate, header.channels), `maestro-${header.params?.seed ?? "audio"}.wav`);
  });
  $("pg-flac").addEventListener("click", () => flac(state.last));
  clipControls(state);

  // The server's FLAC of the same generation: its request again with the seed it used, encoded
  // there. The same device and checkpoint give the same samples (see docs/playground.md).
  async function flac(last) {
    const button = $("pg-flac");
    button.disabled = true;
    button.textContent = "Encoding FLAC…";
    const req = { ...last.req, seed: last.header.params.seed, format: AudioFormat.FLAC };
    const parts = [];
    try {
      for await (const res of client.generate(req)) if (res.payload.case === "chunk") parts.push(res.payload.value.data);
      download(new Blob(parts, { type: "audio/flac" }), `maestro-${req.seed}.flac`);
    } catch (e) {
      refused(e, () => flac(last));
    } finally {
      button.textContent = "Download FLAC";
      button.disabled = false;
    }
  }
}

// The optional clip: a file picker, or a file dropped on its box.
function clipControls(state) {
  const note = $("pg-clip-note"), clear = $("pg-clip-clear"), drop = $("pg-drop");
  async function take(file) {
    note.textContent = `reading ${file.name}…`;
    try {
      const { input, note: how } = await clipInput(file);
      state.clip = input;
      note.textContent = `${file.name}: ${how}`;
      clear.hidden = false;
    } catch (e) {
      state.clip = undefined;
      note.textContent = String(e.message ?? e);
    }
  }
  $("pg-clip").addEventListener("change", (ev) => ev.target.files[0] && take(ev.target.files[0]));
  clear.addEventListener("click", () => {
    state.clip = undefined;
    $("pg-clip").value = "";
    note.textContent = "or drop an audio file here (optional)";
    clear.hidden = true;
  });
  drop.addEventListener("dragover", (ev) => {
    ev.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (ev) => {
    ev.preventDefault();
    drop.classList.remove("over");
    const file = ev.dataTransfer.files[0];
    if (file) take(file);
  });
}
