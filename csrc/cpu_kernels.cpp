// CPU kernels for the decoder's one-token steps, over libtorch's own thread pool.
//
// A decoding step multiplies one or two activation rows by every weight matrix: a matrix-vector
// product bound by how fast the weights stream from memory. libtorch 2.13 hands f16 weights to a
// kernel that streams about 9 GB/s on this CPU (f32 gets 22 GB/s), so an f16 decoder was slower
// than f32 although it reads half the bytes. `maestro_gemv` reads each weight once for all rows,
// widens f16 / bf16 to f32 in registers and accumulates in f32; `at::parallel_for` splits the
// output rows over the same OpenMP threads every other libtorch op uses, so no second thread pool
// competes with them for the cores.
//
// `maestro_inference_mode_*` exposes c10::InferenceMode, which tch does not: inside it tensors
// carry no autograd view or version tracking, which trims every op's dispatch cost.

#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>

#include <algorithm>
#include <vector>

#include "simd.h"

namespace maestro {
namespace {

// Output rows per task: weight rows are read in groups, and a task of 64 keeps the split even.
constexpr int64_t kGrain = 64;

// One 16-lane slice i..i+16 of weight row `o` times the M activation rows, into acc. `Tail` reads
// only the lanes in `mask`, for a `k` that is not a multiple of 16.
template <int32_t DT, int64_t M, bool Tail>
MAESTRO_SIMD inline void fma_slice(const float* x, const void* w, int64_t k, int64_t o, int64_t i,
                                   __mmask16 mask, __m512* acc) {
  __m512 wv = Tail ? load16_masked(w, o * k + i, DT, mask) : load16(w, o * k + i, DT);
  for (int64_t r = 0; r < M; ++r) {
    __m512 xv = Tail ? _mm512_maskz_loadu_ps(mask, x + r * k + i) : _mm512_loadu_ps(x + r * k + i);
    acc[r] = _mm512_fmadd_ps(wv, xv, acc[r]);
  }
}

MAESTRO_SIMD inline void put(float* y, __m512 acc, bool accumulate) {
  const float v = _mm512_reduce_add_ps(acc);
  *y = accumulate ? *y + v : v;
}

// Rows of `k` elements of `dtype` that fill one 4 KiB page (1 when a row is a page or longer).
inline int64_t rows_per_page(int64_t k, int32_t dtype) {
  return std::max<int64_t>(1, 4096 / (k * elt_size(dtype)));
}

// Weight rows read together (slots): more streams in flight hide memory latency, within 32
// registers of accumulators.
constexpr int slots(int64_t m) { return m <= 2 ? 8 : (m <= 4 ? 4 : (m <= 12 ? 2 : 1)); }

// G weight rows at once, slot a reading row `first + stride·a` and prefetching the row it reads
// next, `next + stride·a`: y[r][row] (+)= sum_i x[r][i] * w[row][i].
template <int32_t DT, int64_t M, int G>
MAESTRO_SIMD void slot_rows(const float* x, const void* w, int64_t k, int64_t first, int64_t next, int64_t stride,
                            float* y, int64_t n, bool accumulate) {
  const int64_t body = k & ~int64_t{15};
  const __mmask16 mask = tail_mask(k - body);
  __m512 acc[G][M];
  for (int a = 0; a < G; ++a)
    for (int64_t r = 0; r < M; ++r) acc[a][r] = _mm512_setzero_ps();
  for (int64_t i = 0; i < body; i += 16) {
    for (int a = 0; a < G; ++a) {
      _mm_prefetch(static_cast<const char*>(w) + ((next + stride * a) * k + i) * elt_size(DT), _MM_HINT_T0);
      fma_slice<DT, M, false>(x, w, k, first + stride * a, i, mask, acc[a]);
    }
  }
  if (body < k)
    for (int a = 0; a < G; ++a) fma_slice<DT, M, true>(x, w, k, first + stride * a, body, mask, acc[a]);
  for (int a = 0; a < G; ++a)
    for (int64_t r = 0; r < M; ++r) put(y + r * n + first + stride * a, acc[a][r], accumulate);
}

// y[r][o] (+)= sum_i x[r][i] * w[o][i] for o in [begin, end); x and y are f32.
//
// The L2 streamer follows one stream per 4 KiB page. With 16-bit weights a row of 1024 is half a
// page, so G adjacent rows would put two streams in every page, which it follows badly: f16
// streamed about 20 % fewer bytes per second than f32. So each slot walks a whole page, S
// consecutive rows, one row per phase (phase p: rows o + p + S·a), prefetching the row it reads in
// the next phase. In isolation f16 then streams as fast as f32 (BENCHMARKS.md, "Streams, codec and
// prompt"); f32 rows of 1024 are whole pages (S = 1), read as before. Rows left over go G adjacent
// rows at a time, then one by one.
template <int32_t DT, int64_t M>
MAESTRO_SIMD void rows_avx512(const float* x, const void* w, int64_t k, int64_t begin, int64_t end, float* y,
                              int64_t n, bool accumulate) {
  constexpr int G = slots(M);
  const int64_t S = rows_per_page(k, DT);
  int64_t o = begin;
  for (; o + G * S <= end; o += G * S)
    for (int64_t p = 0; p < S; ++p)
      slot_rows<DT, M, G>(x, w, k, o + p, p + 1 < S ? o + p + 1 : o + G * S, S, y, n, accumulate);
  for (; o + G <= end; o += G) slot_rows<DT, M, G>(x, w, k, o, o + G, 1, y, n, accumulate);
  for (; o < end; ++o) slot_rows<DT, M, 1>(x, w, k, o, o + 1, 1, y, n, accumulate);
}

// `count` f16 / bf16 values as f32.
MAESTRO_SIMD void widen(const void* src, int32_t dtype, int64_t count, float* dst) {
  int64_t i = 0;
  for (; i + 16 <= count; i += 16) _mm512_storeu_ps(dst + i, load16(src, i, dtype));
  if (i < count) _mm512_mask_storeu_ps(dst + i, tail_mask(count - i), load16_masked(src, i, dtype, tail_mask(count - i)));
}

using RowsFn = void (*)(const float*, const void*, int64_t, int64_t, int64_t, float*, int64_t, bool);

template <int32_t DT>
RowsFn pick_rows(int64_t m) {
  switch (m) {
    case 1: return rows_avx512<DT, 1>;
    case 2: return rows_avx512<DT, 2>;
    case 3: return rows_avx512<DT, 3>;
    case 4: return rows_avx512<DT, 4>;
    case 5: return rows_avx512<DT, 5>;
    case 6: return rows_avx512<DT, 6>;
    case 7: return rows_avx512<DT, 7>;
    case 8: return rows_avx512<DT, 8>;
    case 9: return rows_avx512<DT, 9>;
    case 10: return rows_avx512<DT, 10>;
    case 11: return rows_avx512<DT, 11>;
    case 12: return rows_avx512<DT, 12>;
    case 13: return rows_avx512<DT, 13>;
    case 14: return rows_avx512<DT, 14>;
    case 15: return rows_avx512<DT, 15>;
    default: return rows_avx512<DT, 16>;
  }
}

RowsFn pick(int32_t dtype, int64_t m) {
  switch (dtype) {
    case F16: return pick_rows<F16>(m);
    case BF16: return pick_rows<BF16>(m);
    default: return pick_rows<F32>(m);
  }
}

}  // namespace

void gemv_f32(const float* x, int64_t m, const void* w, int64_t n, int64_t k, int32_t dtype, float* y,
              bool accumulate) {
  RowsFn rows = pick(dtype, m);
  at::parallel_for(0, n, kGrain, [&](int64_t begin, int64_t end) { rows(x, w, k, begin, end, y, n, accumulate); });
}

}  // namespace maestro

using namespace maestro;

extern "C" {

// 1 when this CPU runs the kernels (AVX-512 F/BW/VL, F16C, FMA), 0 when callers must fall back.
int32_t maestro_gemv_supported() { return simd_supported(); }

// y (m × n, element type `dtype`) = x (m × k, `dtype`) · wᵀ (w: n × k, `dtype`), accumulated in f32.
// All row-major and contiguous. Returns 0, or -1 when the arguments are outside what it handles
// (m not in 1..=16, k or n not positive, an unknown dtype, an unsupported CPU).
int32_t maestro_gemv(const void* x, int64_t m, const void* w, int64_t n, int64_t k, int32_t dtype, void* y) {
  if (m < 1 || m > kMaxPassRows || k < 1 || n < 1 || dtype < F32 || dtype > BF16 || !simd_supported()) {
    return -1;
  }
  if (dtype == F32) {
    gemv_f32(static_cast<const float*>(x), m, w, n, k, dtype, static_cast<float*>(y), false);
    return 0;
  }
  // Per-thread scratch: activations widened to f32 once, and f32 results before narrowing. A
  // decoding step calls this ~170 times, so no allocation per call.
  thread_local std::vector<float> xf, yf;
  xf.resize(static_cast<size_t>(m * k));
  widen(x, dtype, m * k, xf.data());
  yf.resize(static_cast<size_t>(m * n));
  gemv_f32(xf.data(), m, w, n, k, dtype, yf.data(), false);
  narrow(yf.data(), m * n, dtype, y);
  return 0;
}

// A c10::InferenceMode guard for the calling thread, released by `maestro_inference_mode_exit`.
void* maestro_inference_mode_enter() {
  return new c10::InferenceMode();
}

void maestro_inference_mode_exit(void* guard) {
  delete static_cast<c10::InferenceMode*>(guard);
}

}  // extern "C"
