"""libtorch's `linear` over the decoder's weight shapes (musicgen-small: 24 layers, hidden 1024, FFN
4096), per dtype and number of input rows, on 2 threads. Shows why decoding steps use Maestro's own
kernel (csrc/cpu_kernels.cpp) instead: libtorch's f16 linear streams at less than half of f32's
bandwidth on this CPU, and its f32 linear becomes compute-bound at 8 rows (4 guided requests).

    source scripts/env.sh && python3 scripts/bench_linear.py
"""

import time

import torch

torch.set_num_threads(2)
torch.set_grad_enabled(False)
D, F, LAYERS = 1024, 4096, 24
SHAPES = [(F, D)] * LAYERS + [(D, F)] * LAYERS + [(D, D)] * (LAYERS * 8)


def best_of(weights, rows, repeats=3):
    inputs = {w.shape: torch.randn(rows, w.shape[1]).to(w.dtype) for w in weights}
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for w in weights:
            torch.nn.functional.linear(inputs[w.shape], w)
        best = min(best, time.perf_counter() - start)
    return best


def main():
    base = [torch.randn(*shape) for shape in SHAPES]
    print("| dtype | bytes read | rows 1 ms | rows 2 ms | rows 8 ms | rows 16 ms | GB/s at 2 rows |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, dtype in [("f32", torch.float32), ("f16", torch.float16), ("bf16", torch.bfloat16)]:
        weights = [w.to(dtype) for w in base]
        gb = sum(w.numel() * w.element_size() for w in weights) / 1e9
        times = {rows: best_of(weights, rows) for rows in (1, 2, 8, 16)}
        cells = " | ".join(f"{times[r] * 1e3:.1f}" for r in (1, 2, 8, 16))
        print(f"| {name} | {gb:.2f} GB | {cells} | {gb / times[2]:.1f} |")


if __name__ == "__main__":
    main()
