# syntax=docker/dockerfile:1
# Maestro's container image: `docker build -t maestro:0.1.0 .` at the repository root.
# Not built in CI (it downloads torch and a Rust toolchain image); checked by reading, see
# deploy/kubernetes/README.md. Two stages:
#   build    compiles maestro-server and the maestro CLI against the libtorch of the pinned PyPI torch
#            wheel (scripts/requirements.txt, the same libtorch `make test` uses) and Debian's
#            libopus (scripts/provision-build.sh installs the same for `make`);
#   runtime  a slim Debian with only what the binaries load at run time: libtorch's shared libraries
#            (and the CUDA libraries the wheel depends on), non-root, read-only friendly, the tiny test
#            model baked in for a smoke run, a HEALTHCHECK through `maestro health`.

# The toolchain `make test` is run with (rustc 1.95).
FROM rust:1.95-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3-venv pkg-config libopus-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# torch (libtorch) and the CUDA headers the allocator shim compiles against, pinned as for `make test`;
# the rest of scripts/requirements.txt (transformers, grpcio, pytest) only builds and checks fixtures.
COPY scripts/requirements.txt scripts/requirements.txt
RUN python3 -m venv /opt/venv \
 && grep -E '^(torch|nvidia-cuda-crt)==' scripts/requirements.txt > /tmp/torch.txt \
 && /opt/venv/bin/pip install --no-cache-dir -r /tmp/torch.txt
ENV PATH=/opt/venv/bin:$PATH LIBTORCH_USE_PYTORCH=1
COPY . .
RUN cargo build --release --locked -p maestro --bin maestro-server \
 && cargo build --release --locked -p maestro-cli --bin maestro \
 && mkdir -p /out/bin /out/lib \
 && cp target/release/maestro-server target/release/maestro /out/bin/ \
 # libtorch and every shared library the wheel ships beside it (CUDA runtime, cuBLAS, cuDNN, NCCL...):
 # the runtime image has no Python, only these.
 && site=$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])') \
 && cp -a "$site"/torch/lib/*.so* /out/lib/ \
 && (cp -a "$site"/nvidia/*/lib/*.so* /out/lib/ 2>/dev/null || true)

FROM debian:bookworm-slim AS runtime
# libgomp1: libtorch's OpenMP runtime; libopus0: the Ogg Opus encoder (src/audio_out). LAME (MP3)
# is linked in statically: its LGPL notice (LICENSES/LAME.txt) goes to /usr/share/doc/maestro.
# ca-certificates: none needed (no outbound TLS), left out.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgomp1 libopus0 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 maestro \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin maestro
COPY --from=build /out/lib/ /opt/maestro/lib/
COPY --from=build /out/bin/ /usr/local/bin/
COPY LICENSES/ /usr/share/doc/maestro/licenses/
# The tiny random-weight test model (noise, not music): `Generate` works at once for a smoke run.
COPY models/maestro/musicgen-tiny/ /opt/maestro/models/maestro/musicgen-tiny/
ENV LD_LIBRARY_PATH=/opt/maestro/lib \
    MAESTRO_MODEL_ROOT=/opt/maestro/models \
    MAESTRO_LISTEN=0.0.0.0:50051 \
    MAESTRO_METRICS_LISTEN=0.0.0.0:9464 \
    MAESTRO_LOG_FORMAT=json \
    # Where `maestro health` (the HEALTHCHECK) connects. With TLS on the main port, point it at the
    # plaintext --health-listen port instead (e.g. http://127.0.0.1:50052).
    MAESTRO_ADDR=http://127.0.0.1:50051
USER 10001:10001
# gRPC, /metrics, the optional plaintext health port (--health-listen).
EXPOSE 50051 9464 50052
HEALTHCHECK --interval=10s --timeout=6s --start-period=30s --retries=3 CMD ["maestro", "health"]
ENTRYPOINT ["maestro-server"]
