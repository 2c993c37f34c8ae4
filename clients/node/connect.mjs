// What both examples share: the protos loaded from the repository's proto/, the connection flags
// (--addr, --token), clients of the two services, and the CLI's exit codes and one-line errors.

import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

import grpc from "@grpc/grpc-js";
import protoLoader from "@grpc/proto-loader";

/** proto/ of the repository this file lives in. */
const PROTO_ROOT = fileURLToPath(new URL("../../proto/", import.meta.url));

/** Exit codes, as the `maestro` CLI uses them (clients/README.md, "Exit codes"). */
export const EXIT = {
  SUCCESS: 0,
  GENERAL: 1,
  USAGE: 2,
  UNAVAILABLE: 3,
  INVALID: 4,
  REFUSED: 5,
  UNIMPLEMENTED: 6,
  NOT_ALLOWED: 7,
  INTERRUPTED: 130,
};

const EXIT_OF_STATUS = {
  [grpc.status.UNAVAILABLE]: EXIT.UNAVAILABLE,
  [grpc.status.DEADLINE_EXCEEDED]: EXIT.UNAVAILABLE,
  [grpc.status.INVALID_ARGUMENT]: EXIT.INVALID,
  [grpc.status.NOT_FOUND]: EXIT.INVALID,
  [grpc.status.OUT_OF_RANGE]: EXIT.INVALID,
  [grpc.status.ALREADY_EXISTS]: EXIT.INVALID,
  [grpc.status.RESOURCE_EXHAUSTED]: EXIT.REFUSED,
  [grpc.status.FAILED_PRECONDITION]: EXIT.REFUSED,
  [grpc.status.UNIMPLEMENTED]: EXIT.UNIMPLEMENTED,
  [grpc.status.UNAUTHENTICATED]: EXIT.NOT_ALLOWED,
  [grpc.status.PERMISSION_DENIED]: EXIT.NOT_ALLOWED,
  [grpc.status.CANCELLED]: EXIT.INTERRUPTED,
};

/** Prints `maestro: MESSAGE` on stderr, flattened onto one line, and exits with `code`. */
export function fail(code, message) {
  process.stderr.write(`maestro: ${String(message).split(/\s+/).join(" ").trim()}\n`);
  process.exit(code);
}

/**
 * Exits as the CLI does for a failed call (`maestro: NOT_FOUND: unknown model ...`); anything else
 * thrown, such as a file that cannot be written, exits 1 with its message.
 */
export function failCall(err) {
  if (typeof err.code !== "number") {
    fail(EXIT.GENERAL, err.message);
  }
  const name = grpc.status[err.code] ?? `CODE_${err.code}`;
  fail(EXIT_OF_STATUS[err.code] ?? EXIT.GENERAL, err.details ? `${name}: ${err.details}` : name);
}

/** Options both examples take, in `util.parseArgs` form. */
const CONNECTION_OPTIONS = {
  addr: { type: "string", default: process.env.MAESTRO_ADDR || "127.0.0.1:50051" },
  token: { type: "string", default: process.env.MAESTRO_TOKEN || "" },
  help: { type: "boolean", short: "h" },
};

/**
 * Parses the command line with `options` plus the connection flags; prints `usage` and exits 0 for
 * --help, exits 2 (usage) for an unknown flag or a value that does not parse.
 */
export function parseCommandLine(usage, options) {
  let values;
  try {
    ({ values } = parseArgs({ options: { ...options, ...CONNECTION_OPTIONS }, strict: true }));
  } catch (err) {
    process.stderr.write(`maestro: ${err.message}\n${usage}\n`);
    process.exit(EXIT.USAGE);
  }
  if (values.help) {
    process.stdout.write(`${usage}\n`);
    process.exit(EXIT.SUCCESS);
  }
  return values;
}

/** A number from flag `name`'s text; exits 2 when it is not one. */
export function numberFlag(name, text, { integer = false } = {}) {
  const value = Number(text);
  if (text === "" || !Number.isFinite(value) || (integer && !Number.isInteger(value))) {
    fail(EXIT.USAGE, `--${name}: not ${integer ? "an integer" : "a number"}: ${JSON.stringify(text)}`);
  }
  return value;
}

/** `host:port` from --addr (an `http://` prefix is accepted, as the CLI does; TLS is not). */
function target(addr) {
  if (addr.startsWith("https://")) {
    fail(EXIT.USAGE, `--addr ${addr}: these examples speak plaintext only`);
  }
  const bare = addr.replace(/^http:\/\//, "").replace(/\/$/, "");
  if (!/^[^\s/]+:\d+$/.test(bare)) {
    fail(EXIT.USAGE, `--addr ${addr}: expected host:port`);
  }
  return bare;
}

/** The maestro.v1 package, loaded from proto/ (field names as in the .proto files). */
function loadMaestro() {
  const files = ["maestro/v1/resources.proto", "maestro/v1/generation.proto"];
  const definition = protoLoader.loadSync(files, {
    includeDirs: [PROTO_ROOT],
    keepCase: true,
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  return grpc.loadPackageDefinition(definition).maestro.v1;
}

/**
 * Clients of both services for the parsed flags, and the metadata every call carries
 * (`authorization: Bearer <token>` when --token or MAESTRO_TOKEN is set).
 */
export function connect(values) {
  const maestro = loadMaestro();
  const address = target(values.addr);
  const credentials = grpc.credentials.createInsecure();
  const resources = new maestro.ResourceService(address, credentials);
  const generation = new maestro.GenerationService(address, credentials, {
    channelOverride: resources.getChannel(),
  });
  const metadata = new grpc.Metadata();
  if (values.token) {
    metadata.set("authorization", `Bearer ${values.token}`);
  }
  return { resources, generation, metadata };
}
