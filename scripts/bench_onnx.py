#!/usr/bin/env python3
"""The ONNX Runtime anchor of `make bench`: MusicGen's decoder loop alone, fp32 and int8, in ONNX Runtime.

    scripts/bench_onnx.py MODEL_DIR [--steps 503] [--threads 2] [--runs 3]

Runs in the venv scripts/provision-onnx.sh makes (optimum, optimum-onnx, onnxruntime, pinned). Exports
MODEL_DIR (a checkpoint in the Hugging Face layout, e.g. the musicgen-small-shaped random one that
`scripts/make_reference.py --small-shape` writes) with optimum's `text-to-audio` task, once per
checkpoint (cached beside it), quantises the decoder with past keys by `quantize_dynamic` (per channel,
QInt8: what MusicGPT ships as its quantised small), and times the decoder loop: the prefill through
`decoder_model.onnx`, then STEPS single-token steps through `decoder_with_past_model.onnx`, batch 2
(classifier-free guidance's two rows) × the codebooks, greedy. The text encoder, sampling and EnCodec
are not in the loop: Maestro's figures include them, these do not.

Prints one line per engine with steps per second (best and every run), and the logits' agreement of
int8 with fp32 on the same teacher-forced steps (mean correlation, mean KL(fp32 ‖ int8), top-1);
`--json FILE` also writes the figures for the goals benchmark, which runs this script.

With `--forced DIR` it only compares int8 with fp32, guided, on the codes and text-encoder states
Maestro's small-shape quality test wrote there, so both engines are measured on the same steps.
"""

import argparse
import hashlib
import json
import os
import platform
import sys
import time

import numpy as np


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def checkpoint_key(model_dir):
    """A short hash of the checkpoint's files (names and sizes), naming its export."""
    h = hashlib.sha256()
    for name in sorted(os.listdir(model_dir)):
        path = os.path.join(model_dir, name)
        if os.path.isfile(path):
            h.update(f"{name}:{os.path.getsize(path)}".encode())
    return h.hexdigest()[:16]


def export(model_dir, out_dir):
    """optimum's export and the int8 decoder, once."""
    done = os.path.join(out_dir, ".done")
    if os.path.exists(done):
        return
    from optimum.exporters.onnx import main_export
    from onnxruntime.quantization import QuantType, quantize_dynamic

    print(f"exporting {model_dir} to {out_dir} (once)", file=sys.stderr)
    main_export(model_dir, output=out_dir, task="text-to-audio", device="cpu")
    quantize_dynamic(
        os.path.join(out_dir, "decoder_with_past_model.onnx"),
        os.path.join(out_dir, "decoder_with_past_model.int8.onnx"),
        per_channel=True,
        weight_type=QuantType.QInt8,
    )
    open(done, "w").close()


def session(path, threads):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def zeros_for(arg, dims):
    """An input of `arg`'s element type with `dims` for its symbolic dimensions."""
    kinds = {"tensor(float)": np.float32, "tensor(int64)": np.int64, "tensor(bool)": np.bool_}
    return np.zeros(dims, dtype=kinds.get(arg.type, np.float32))


class Loop:
    """The decoder loop over two sessions (prefill, and steps with past keys)."""

    def __init__(self, first, step, config, encoder=None):
        """`encoder`: (states, mask) of the text encoder for every row, else random states for two."""
        self.first, self.step = first, step
        decoder = config["decoder"]
        self.codebooks = decoder["num_codebooks"]
        if encoder is None:
            hidden, text_len = config["text_encoder"]["d_model"], 12
            rng = np.random.default_rng(7)
            encoder = (
                rng.standard_normal((2, text_len, hidden)).astype(np.float32),
                np.ones((2, text_len), dtype=np.int64),
            )
        self.encoder_states, self.encoder_mask = encoder
        self.rows = self.encoder_states.shape[0] * self.codebooks
        self.start = decoder.get("decoder_start_token_id", 2048)

    def feeds(self, sess, ids, past):
        feed = {}
        for arg in sess.get_inputs():
            if arg.name == "input_ids":
                feed[arg.name] = ids
            elif arg.name == "encoder_hidden_states":
                feed[arg.name] = self.encoder_states
            elif arg.name == "encoder_attention_mask":
                feed[arg.name] = self.encoder_mask
            elif arg.name.startswith("past_key_values"):
                feed[arg.name] = past[arg.name.replace("past_key_values", "present")]
            elif arg.name == "use_cache_branch":
                feed[arg.name] = np.array([True])
            else:
                raise SystemExit(f"unexpected decoder input {arg.name} {arg.shape}")
        return feed

    def run(self, steps, forced=None):
        """Steps/s over `steps` steps after the prefill, and each step's logits when `forced` (codes
        fed back instead of the argmax, so two engines see the same sequence)."""
        ids = np.full((self.rows, 1), self.start, dtype=np.int64)
        names = [o.name for o in self.first.get_outputs()]
        outputs = self.first.run(None, self.feeds(self.first, ids, {}))
        past = {n: v for n, v in zip(names, outputs) if n.startswith("present")}
        step_names = [o.name for o in self.step.get_outputs()]
        logits_seen, fed = [], []
        began = time.perf_counter()
        for i in range(steps):
            logits = outputs[names.index("logits")] if i == 0 else out[step_names.index("logits")]
            last = logits[:, -1, :]
            if forced is not None:
                logits_seen.append(last.copy())
                codes = forced[i]
            else:
                codes = last.argmax(axis=-1)
                fed.append(codes)
            ids = codes.reshape(self.rows, 1).astype(np.int64)
            out = self.step.run(None, self.feeds(self.step, ids, past))
            for n, v in zip(step_names, out):
                if n.startswith("present") and ".encoder." not in n:
                    past[n] = v
        elapsed = time.perf_counter() - began
        return steps / elapsed, logits_seen, fed


    def forced_logits(self, codes):
        """Each step's logits (rows x vocab) with `codes[t]` (batch x codebooks) fed at position t:
        step 0 through the prefill session, the rest through the session with past keys."""
        names = [o.name for o in self.first.get_outputs()]
        ids = codes[0].reshape(self.rows, 1).astype(np.int64)
        outputs = self.first.run(None, self.feeds(self.first, ids, {}))
        past = {n: v for n, v in zip(names, outputs) if n.startswith("present")}
        seen = [outputs[names.index("logits")][:, -1, :].copy()]
        step_names = [o.name for o in self.step.get_outputs()]
        for t in range(1, len(codes)):
            ids = codes[t].reshape(self.rows, 1).astype(np.int64)
            out = self.step.run(None, self.feeds(self.step, ids, past))
            for n, v in zip(step_names, out):
                if n.startswith("present") and ".encoder." not in n:
                    past[n] = v
            seen.append(out[step_names.index("logits")][:, -1, :].copy())
        return seen


def guided(logits, codebooks, scale):
    """Classifier-free guidance over rows (batch x codebooks): conditional rows first, as Maestro's."""
    x = logits.reshape(-1, codebooks, logits.shape[-1])
    half = x.shape[0] // 2
    return (x[half:] + (x[:half] - x[half:]) * scale).reshape(-1, logits.shape[-1])


def forced(args, out_dir, config):
    """int8 against fp32 on the teacher-forced steps Maestro's quality test wrote to `args.forced`:
    codes.npy (steps x batch x codebooks), states.npy and mask.npy (the text encoder's output for
    every row, unconditional rows last), guided logits from step 1 on (step 0 runs the prefill
    session, which the int8 export leaves in fp32)."""
    load = lambda name: np.load(os.path.join(args.forced, name))
    encoder = (load("states.npy").astype(np.float32), load("mask.npy").astype(np.int64))
    codes = load("codes.npy")
    first = session(os.path.join(out_dir, "decoder_model.onnx"), args.threads)
    logits = {}
    for name, file in [("fp32", "decoder_with_past_model.onnx"), ("int8", "decoder_with_past_model.int8.onnx")]:
        loop = Loop(first, session(os.path.join(out_dir, file), args.threads), config, encoder)
        logits[name] = [guided(l, loop.codebooks, args.guidance) for l in loop.forced_logits(codes)[1:]]
    corr, kl, top1 = agreement(logits["fp32"], logits["int8"])
    print(
        f"onnxruntime int8 vs fp32 on Maestro's teacher-forced steps 1..{len(codes) - 1}, guided logits: "
        f"correlation {corr:.6f}, KL {kl:.6f} nats, top-1 {100 * top1:.1f} %"
    )


def agreement(reference, other):
    """Mean Pearson correlation, mean KL(reference ‖ other) in nats and top-1 agreement of two lists of
    (rows × vocab) logits."""
    corr, kl, top1, n = 0.0, 0.0, 0, 0
    for a, b in zip(reference, other):
        for x, y in zip(a.astype(np.float64), b.astype(np.float64)):
            corr += np.corrcoef(x, y)[0, 1]
            p = np.exp(x - x.max())
            p /= p.sum()
            log_p, log_q = np.log(p), y - y.max() - np.log(np.exp(y - y.max()).sum())
            kl += float((p * (log_p - log_q)).sum())
            top1 += int(x.argmax() == y.argmax())
            n += 1
    return corr / n, kl / n, top1 / n


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir")
    parser.add_argument("--steps", type=int, default=503, help="decoder steps (503 = 10 s of audio)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quality-steps", type=int, default=50)
    parser.add_argument("--forced", help="a directory of codes.npy, states.npy, mask.npy: only compare int8 with "
                        "fp32 on those teacher-forced steps (written by Maestro's small-shape quality test)")
    parser.add_argument("--guidance", type=float, default=3.0)
    parser.add_argument("--json", help="also write the figures to this file, for a benchmark that runs this one")
    args = parser.parse_args()

    import onnxruntime

    out_dir = os.path.join(os.path.dirname(os.path.abspath(args.model_dir)), "onnx-" + checkpoint_key(args.model_dir))
    export(args.model_dir, out_dir)
    with open(os.path.join(args.model_dir, "config.json")) as f:
        config = json.load(f)
    if args.forced:
        forced(args, out_dir, config)
        return
    first = session(os.path.join(out_dir, "decoder_model.onnx"), args.threads)
    engines = {
        "fp32": Loop(first, session(os.path.join(out_dir, "decoder_with_past_model.onnx"), args.threads), config),
        "int8": Loop(first, session(os.path.join(out_dir, "decoder_with_past_model.int8.onnx"), args.threads), config),
    }
    load = os.getloadavg()[0]
    print(
        f"ONNX Runtime {onnxruntime.__version__}, decoder loop only, {args.steps} steps, batch 2 x "
        f"{config['decoder']['num_codebooks']} codebooks, {args.threads} threads, {cpu_model()}, load {load:.1f}"
    )
    figures = {"version": onnxruntime.__version__}
    for name, loop in engines.items():
        rates = [loop.run(args.steps)[0] for _ in range(args.runs)]
        runs = ", ".join(f"{r:.1f}" for r in rates)
        print(f"onnxruntime {name}: {max(rates):.1f} steps/s (runs: {runs})", flush=True)
        figures[name] = rates
    # Teacher forcing: both engines fed fp32's greedy codes.
    _, _, codes = engines["fp32"].run(args.quality_steps)
    _, reference, _ = engines["fp32"].run(args.quality_steps, forced=codes)
    _, quantised, _ = engines["int8"].run(args.quality_steps, forced=codes)
    corr, kl, top1 = agreement(reference, quantised)
    print(
        f"onnxruntime int8 vs fp32 ({args.quality_steps} teacher-forced steps): mean correlation {corr:.5f}, "
        f"mean KL {kl:.5f} nats, top-1 agreement {100 * top1:.1f} %"
    )
    figures["int8_vs_fp32"] = {"correlation": corr, "kl": kl, "top1": top1}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f)


if __name__ == "__main__":
    main()
