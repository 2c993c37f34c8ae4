// The live dashboard: follows WatchSnapshots, WatchAlerts and WatchReport over gRPC-Web on the gRPC
// port (which dashboard.json names), reconnecting each with backoff. One action, Clean up, calls
// Cleanup, and the playground (playground.js) calls Generate: when the server refuses either for
// want of a token or a role, the page asks for a token and runs the call again with it.
import { createClient, ConnectError, Code } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import uPlot from "uplot";
import { ResourceService, HealthLevel, Severity, AlertEvent_Kind, MemoryLimitSource } from "./gen/maestro/v1/resources_pb.js";
import { playground } from "./playground.js";

const HISTORY_S = 300;
const TOKEN_KEY = "maestro.token";
const $ = (id) => document.getElementById(id);
const byTest = (id) => document.querySelector(`[data-testid="${id}"]`);

// ---- units as people read them, exact figures on hover ----
const GiB = 2 ** 30;
function bytes(n) {
  const v = Number(n);
  if (v >= GiB) return `${(v / GiB).toFixed(2)} GiB`;
  if (v >= 2 ** 20) return `${(v / 2 ** 20).toFixed(1)} MiB`;
  if (v >= 1024) return `${(v / 1024).toFixed(1)} KiB`;
  return `${v} B`;
}
function setBytes(el, n) {
  el.textContent = bytes(n);
  el.dataset.value = String(n);
  el.title = `${BigInt(n).toLocaleString("en")} bytes`;
}
const pct = (v) => (v === undefined ? "—" : `${v.toFixed(1)} %`);
const celsius = (v) => (v === undefined ? "—" : `${v.toFixed(0)} °C`);
const watts = (v) => (v === undefined ? "—" : `${v.toFixed(0)} W`);
const ms = (v) => (v === undefined ? "—" : v >= 1000 ? `${(v / 1000).toFixed(2)} s` : `${v.toFixed(0)} ms`);
const when = (ts) => (ts ? timestampDate(ts).toLocaleTimeString() : "—");
function ago(ts) {
  if (!ts) return "—";
  const s = Math.max(0, (Date.now() - timestampDate(ts).getTime()) / 1000);
  return s < 90 ? `${s.toFixed(0)} s ago` : `${(s / 60).toFixed(0)} min ago`;
}

function row(tbody, cells) {
  const tr = document.createElement("tr");
  for (const c of cells) {
    const td = document.createElement("td");
    if (c && typeof c === "object") {
      td.textContent = c.text;
      if (c.title) td.title = c.title;
      if (c.cls) td.className = c.cls;
    } else {
      td.textContent = c;
    }
    tr.appendChild(td);
  }
  tbody.appendChild(tr);
}
function fill(id, items, cells, empty) {
  const tbody = $(id);
  tbody.replaceChildren();
  if (items.length === 0) row(tbody, [empty]);
  for (const item of items) row(tbody, cells(item));
}
const exact = (n) => ({ text: bytes(n), title: `${BigInt(n).toLocaleString("en")} bytes` });

// ---- charts over the last five minutes ----
const series = { t: [], used: [], limit: [], rss: [], cpu: [] };
const gpuSeries = new Map(); // index -> { t, mem, util, temp, power, plots }
let thresholds = [];
const threshold = (metric, kind) => thresholds.find((t) => t.metric === metric && t.kind === kind)?.value;

function chart(el, title, labels, scale) {
  const opts = {
    title, width: el.clientWidth || 480, height: 160,
    scales: { x: { time: true }, y: scale },
    series: [{}, ...labels.map((l) => ({ label: l.label, stroke: l.stroke, dash: l.dash, width: 1.5 }))],
  };
  return new uPlot(opts, [[], ...labels.map(() => [])], el);
}
const memChart = chart($("chart-memory"), "Memory (GiB)", [
  { label: "used", stroke: "#36c" }, { label: "effective limit", stroke: "#c33", dash: [6, 4] }, { label: "server RSS", stroke: "#3a3" },
], { min: 0 });
const cpuChart = chart($("chart-cpu"), "CPU (%)", [{ label: "host CPU", stroke: "#c63" }], { range: [0, 100] });

function trim(s) {
  const cutoff = Date.now() / 1000 - HISTORY_S;
  while (s.t.length && s.t[0] < cutoff) for (const k of Object.keys(s)) if (Array.isArray(s[k])) s[k].shift();
}

function addSample(snap) {
  const t = timestampDate(snap.sampledAt).getTime() / 1000;
  if (series.t.length && t <= series.t[series.t.length - 1]) return;
  series.t.push(t);
  series.used.push(Number(snap.effectiveMemory?.usedBytes ?? 0n) / GiB);
  series.limit.push(Number(snap.effectiveMemory?.limitBytes ?? 0n) / GiB);
  series.rss.push(Number(snap.process?.rssBytes ?? 0n) / GiB);
  series.cpu.push(snap.host?.cpuPercent ?? null);
  trim(series);
  for (const d of snap.gpu?.devices ?? []) {
    let g = gpuSeries.get(d.index);
    if (!g) g = newGpu(d);
    g.t.push(t);
    g.mem.push(d.memoryUsedPercent ?? null);
    g.util.push(d.utilizationGpuPercent ?? null);
    g.temp.push(d.temperatureCelsius ?? null);
    g.power.push(d.powerWatts ?? null);
    trim(g);
  }
}

function newGpu(d) {
  const box = document.createElement("div");
  box.className = "gpu";
  box.dataset.testid = `gpu-${d.index}`;
  const head = document.createElement("div");
  head.className = "figures";
  const a = document.createElement("div"), b = document.createElement("div");
  box.append(head, a, b);
  $("gpus").appendChild(box);
  const g = { t: [], mem: [], util: [], temp: [], power: [], memW: [], memC: [], tempW: [], tempC: [], head };
  g.usage = chart(a, `cuda:${d.index} ${d.name}: memory and utilisation (%)`, [
    { label: "memory", stroke: "#36c" }, { label: "utilisation", stroke: "#3a3" },
    { label: "memory warning", stroke: "#ca0", dash: [4, 4] }, { label: "memory critical", stroke: "#c33", dash: [4, 4] },
  ], { range: [0, 100] });
  g.heat = chart(b, `cuda:${d.index}: temperature (°C) and power (W)`, [
    { label: "temperature °C", stroke: "#c63" }, { label: "power W", stroke: "#639" },
    { label: "temperature warning", stroke: "#ca0", dash: [4, 4] }, { label: "temperature critical", stroke: "#c33", dash: [4, 4] },
  ], { min: 0 });
  gpuSeries.set(d.index, g);
  return g;
}

function redraw() {
  memChart.setData([series.t, series.used, series.limit, series.rss]);
  cpuChart.setData([series.t, series.cpu]);
  for (const g of gpuSeries.values()) {
    const flat = (v) => g.t.map(() => v ?? null);
    g.usage.setData([g.t, g.mem, g.util, flat(threshold("gpu_memory_percent", "alert_warning")), flat(threshold("gpu_memory_percent", "alert_critical"))]);
    g.heat.setData([g.t, g.temp, g.power, flat(threshold("gpu_temperature_celsius", "alert_warning")), flat(threshold("gpu_temperature_celsius", "alert_critical"))]);
  }
}

// ---- what the latest snapshot says ----
function showSnapshot(snap) {
  addSample(snap);
  const sampled = timestampDate(snap.sampledAt);
  const at = byTest("sampled-at");
  at.dateTime = sampled.toISOString();
  at.dataset.value = at.dateTime;
  at.textContent = sampled.toLocaleTimeString();
  const health = HealthLevel[snap.health] ?? "UNSPECIFIED";
  const h = byTest("health");
  h.dataset.value = health;
  h.textContent = `health ${health.toLowerCase()}`;
  setBytes(byTest("host-memory-used-bytes"), snap.host?.memoryUsedBytes ?? 0n);
  setBytes(byTest("effective-limit-bytes"), snap.effectiveMemory?.limitBytes ?? 0n);
  $("limit-source").textContent = snap.effectiveMemory?.source === MemoryLimitSource.CGROUP ? "(cgroup limit)" : "(host memory)";
  setBytes(byTest("process-rss-bytes"), snap.process?.rssBytes ?? 0n);
  const cpu = byTest("host-cpu-percent");
  cpu.textContent = pct(snap.host?.cpuPercent);
  cpu.dataset.value = String(snap.host?.cpuPercent ?? "");
  const gpu = snap.gpu;
  $("gpu-note").textContent = gpu?.gpuAvailable ? `driver ${gpu.driverVersion}` : `no GPU: ${gpu?.unavailableReason || "none found"}`;
  for (const d of gpu?.devices ?? []) {
    const g = gpuSeries.get(d.index);
    const fig = (label, value, title) => {
      const div = document.createElement("div");
      div.textContent = `${label} `;
      const b = document.createElement("b");
      b.textContent = value;
      if (title) b.title = title;
      div.appendChild(b);
      return div;
    };
    g.head.replaceChildren(
      fig("memory", d.memoryUsedBytes === undefined ? "—" : `${bytes(d.memoryUsedBytes)} / ${bytes(d.memoryTotalBytes)}`,
        d.memoryUsedBytes === undefined ? "" : `${d.memoryUsedBytes} of ${d.memoryTotalBytes} bytes`),
      fig("utilisation", pct(d.utilizationGpuPercent)),
      fig("temperature", celsius(d.temperatureCelsius), `warning ${threshold("gpu_temperature_celsius", "alert_warning")} °C`),
      fig("power", d.powerLimitWatts === undefined ? watts(d.powerWatts) : `${watts(d.powerWatts)} / ${watts(d.powerLimitWatts)}`),
    );
  }
  redraw();
}

// ---- alerts, as they fire and resolve ----
const alerts = new Map();
function showAlerts() {
  const active = [...alerts.values()].sort((a, b) => b.severity - a.severity);
  fill("alerts", active, (a) => [
    { text: (Severity[a.severity] ?? "?").toLowerCase(), cls: `sev-${Severity[a.severity]}` },
    a.rule, a.resource, `${a.value.toFixed(1)} ${a.unit} (threshold ${a.threshold})`, a.message,
    a.recommendations.join("; "), ago(a.startedAt),
  ], "none");
}
function onAlertEvent(e) {
  if (e.kind === AlertEvent_Kind.RESOLVED) alerts.delete(e.alert.id);
  else alerts.set(e.alert.id, e.alert);
  showAlerts();
}

// ---- the report: leases, models, queue, recent generations, evictions ----
function showReport(r) {
  thresholds = r.thresholds;
  fill("leases", r.leases, (l) => [
    l.owner, l.kind, l.gpuIndex === undefined ? "cpu" : `cuda:${l.gpuIndex}`, exact(l.cpuMemoryBytes), exact(l.gpuMemoryBytes),
    l.expiresAt ? `${Math.max(0, (timestampDate(l.expiresAt).getTime() - Date.now()) / 1000).toFixed(0)} s` : "until released",
  ], "none");
  fill("models", r.cachedModels, (m) => [
    m.model, m.device, m.dtype, exact(m.measuredBytes || m.estimatedBytes), String(m.inFlight), ago(m.lastUsed), m.pinned ? "yes" : "no",
  ], "none");
  fill("queue", r.queue, (q) => [
    q.running ? "running" : String(q.position), q.model, q.device, `${q.durationS.toFixed(1)} s`, ms(q.waitedMs),
  ], "empty");
  fill("recent", r.recentGenerations, (g) => [
    when(g.endedAt), g.model, { text: g.outcome, title: g.error }, `${g.durationS.toFixed(1)} s`, ms(g.timeToFirstAudioMs),
    g.realTimeFactor ? g.realTimeFactor.toFixed(2) : "—",
  ], "none yet");
  fill("evictions", r.evictions, (e) => [when(e.at), e.model, e.device, exact(e.bytes), e.reason], "none");
}

// ---- connection: three streams, each retried with backoff ----
const grpc = await (await fetch("dashboard.json")).json();
const base = `${grpc.scheme}://${location.hostname}:${grpc.port}`;
let token = sessionStorage.getItem(TOKEN_KEY) ?? "";
const transport = createGrpcWebTransport({
  baseUrl: base,
  interceptors: [(next) => (req) => {
    if (token) req.header.set("authorization", `Bearer ${token}`);
    return next(req);
  }],
});
const client = createClient(ResourceService, transport);
const live = { snapshots: false, alerts: false, report: false };
let retryAt = 0;

function showConnection() {
  const el = byTest("connection");
  const up = Object.values(live).every(Boolean);
  el.dataset.state = up ? "connected" : "disconnected";
  // Every stream answering is proof the token works for reading: a refusal of a call sent before it
  // was entered must not leave the form up (unless an action waits for a stronger token).
  if (up && !pending) $("token-form").hidden = true;
  el.textContent = up ? "live" : `disconnected${retryAt > Date.now() ? `, retrying in ${Math.ceil((retryAt - Date.now()) / 1000)} s` : ""}`;
}
setInterval(showConnection, 500);

// A stream counts as live from its first message; the alert stream, silent while nothing fires,
// from the moment it opens (its failure still shows at once).
async function follow(name, open, onItem, liveOnOpen = false) {
  let delay = 500;
  for (;;) {
    const sent = token;
    try {
      const stream = open();
      if (liveOnOpen) {
        live[name] = true;
        showConnection();
      }
      for await (const item of stream) {
        if (!live[name]) {
          live[name] = true;
          delay = 500;
          showConnection();
        }
        onItem(item);
      }
    } catch (e) {
      // Only a refusal of the token in use now asks again.
      if (e instanceof ConnectError && e.code === Code.Unauthenticated && sent === token) askForToken(e.rawMessage);
    }
    live[name] = false;
    retryAt = Date.now() + delay;
    showConnection();
    await new Promise((r) => setTimeout(r, delay));
    delay = Math.min(delay * 2, 8000);
  }
}

// What to run again once a token is entered: the action the server refused for want of one.
let pending = null;

function askForToken(why, reason = "This server's telemetry needs a bearer token") {
  const form = $("token-form");
  form.hidden = false;
  $("token-reason").textContent = reason;
  $("token-error").textContent = token ? `refused: ${why}` : "";
}
$("token-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  token = $("token").value.trim();
  sessionStorage.setItem(TOKEN_KEY, token);
  $("token-form").hidden = true;
  const again = pending;
  pending = null;
  if (again) again();
});

// ---- actions ----
async function act(name, call, show) {
  const out = $("action-result");
  out.textContent = `${name}…`;
  out.dataset.state = "running";
  try {
    show(out, await call());
    out.dataset.state = "done";
  } catch (e) {
    const refused = e instanceof ConnectError && (e.code === Code.Unauthenticated || e.code === Code.PermissionDenied);
    out.dataset.state = refused ? "needs-token" : "failed";
    out.textContent = `${name}: ${e instanceof ConnectError ? e.rawMessage : e}`;
    if (refused) needToken(`${name} needs a token with the right role`, e.rawMessage, () => act(name, call, show));
  }
}

// An action refused for want of a token or its role: ask, saying why, and run `retry` with the
// token entered.
function needToken(reason, message, retry) {
  pending = retry;
  // The stream loop must not take this form for its own: the streams still work.
  askForToken(message, reason);
  $("token-error").textContent = `refused: ${message}`;
}
$("cleanup").addEventListener("click", () => act("Clean up", () => client.cleanup({ force: false, dryRun: false }), (out, r) => {
  out.textContent = `cleaned up: ${r.actions.length} action(s), ${bytes(r.hostBytesFreed)} host and ${bytes(r.gpuBytesFreed)} GPU memory freed`;
}));

playground({ transport, needToken });

// Seed the charts with the server's history, then follow.
try {
  const h = await client.getHistory({ windowSeconds: Math.min(HISTORY_S, grpc.history_seconds) });
  for (const s of h.samples) addSample(s);
} catch (e) {
  if (e instanceof ConnectError && e.code === Code.Unauthenticated) askForToken(e.rawMessage);
}
follow("snapshots", () => client.watchSnapshots({ intervalMs: 0 }), showSnapshot);
follow("alerts", () => {
  alerts.clear();
  showAlerts();
  return client.watchAlerts({ minSeverity: Severity.INFO });
}, onAlertEvent, true);
follow("report", () => client.watchReport({ intervalMs: 1000 }), showReport);
