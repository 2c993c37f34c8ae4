#!/usr/bin/env node
// Follows the server's resource snapshots: one ResourceService.WatchSnapshots stream, one line per
// snapshot (when it was sampled, host memory used of total, host CPU). With --count N it cancels the
// stream after N snapshots and exits 0; Ctrl-C does the same. Errors exit as the `maestro` CLI does.

import { connect, EXIT, fail, failCall, numberFlag, parseCommandLine } from "./connect.mjs";

const USAGE = `usage: node watch-snapshots.mjs [--interval-ms 1000] [--count N] [--addr host:port] [--token TOKEN]
  --interval-ms  milliseconds between snapshots (default 1000; the server's sample interval at least)
  --count        stop after N snapshots (default 0: until Ctrl-C)
  --addr         the server, host:port (default $MAESTRO_ADDR or 127.0.0.1:50051)
  --token        sent as "authorization: Bearer TOKEN" (default $MAESTRO_TOKEN)`;

const flags = parseCommandLine(USAGE, {
  "interval-ms": { type: "string", default: "1000" },
  count: { type: "string", default: "0" },
});
const intervalMs = numberFlag("interval-ms", flags["interval-ms"], { integer: true });
const count = numberFlag("count", flags.count, { integer: true });
if (intervalMs < 0 || count < 0) {
  fail(EXIT.USAGE, "--interval-ms and --count take values of 0 or more");
}

const GIB = 1024 ** 3;

/** `2025-01-31T12:00:00.123Z  host memory 12.34 / 31.25 GiB (39.5 %)  cpu 7.5 %`. */
function line(snapshot) {
  const at = snapshot.sampled_at;
  const sampled = new Date(Number(at.seconds) * 1000 + Math.floor(at.nanos / 1e6)).toISOString();
  const host = snapshot.host;
  const used = Number(host.memory_used_bytes) / GIB;
  const total = Number(host.memory_total_bytes) / GIB;
  return (
    `${sampled}  host memory ${used.toFixed(2)} / ${total.toFixed(2)} GiB ` +
    `(${host.memory_used_percent.toFixed(1)} %)  cpu ${host.cpu_percent.toFixed(1)} %`
  );
}

const { resources, metadata } = connect(flags);
const call = resources.WatchSnapshots({ interval_ms: intervalMs }, metadata);
let stopped = false;
const stop = () => {
  stopped = true;
  call.cancel();
};
process.once("SIGINT", stop);

let seen = 0;
try {
  for await (const snapshot of call) {
    console.log(line(snapshot));
    seen += 1;
    if (count > 0 && seen >= count) {
      stop();
      break;
    }
  }
} catch (err) {
  // The cancellation this process asked for ends the stream with CANCELLED: not an error.
  if (!stopped) {
    failCall(err);
  }
} finally {
  resources.close();
}
