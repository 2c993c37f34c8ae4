#!/usr/bin/env python3
"""transformers' MusicGen generate() timing, the baseline `cargo bench --bench musicgen` compares against.

Usage: python3 scripts/bench_transformers.py MODEL_DIR --steps N [--threads 2] [--prompt TEXT]
Prints one JSON line: {"steps": N, "seconds": S, "steps_per_s": R}. Sampling with top-k 250 (clamped to
the codebook size, as transformers does) and guidance 3, on the CPU.
"""

import argparse
import json
import time

import torch
from tokenizers import Tokenizer
from transformers import MusicgenForConditionalGeneration


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--prompt", default="80s pop track with bassy drums and synth")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    tok = Tokenizer.from_file(f"{args.model}/tokenizer.json")
    ids = torch.tensor([tok.encode(args.prompt).ids])
    mask = torch.ones_like(ids)
    model = MusicgenForConditionalGeneration.from_pretrained(args.model).eval()
    kwargs = dict(input_ids=ids, attention_mask=mask, do_sample=True, top_k=250, guidance_scale=3.0)
    with torch.inference_mode():
        model.generate(**kwargs, max_new_tokens=8)
        start = time.perf_counter()
        model.generate(**kwargs, max_new_tokens=args.steps)
        seconds = time.perf_counter() - start
    print(json.dumps({"steps": args.steps, "seconds": seconds, "steps_per_s": args.steps / seconds}))


if __name__ == "__main__":
    main()
