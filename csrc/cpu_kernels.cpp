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
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>
#include <immintrin.h>

#include <cstdint>
#include <vector>

namespace {

enum Dtype : int32_t { F32 = 0, F16 = 1, BF16 = 2 };

constexpr int64_t kMaxRows = 8;
// Output rows per task: 4 weight rows are read together, and a task of 64 keeps the split even.
constexpr int64_t kGrain = 64;

// Rounds to nearest even, as libtorch's own conversions do.
void store_scalar(void* p, int64_t i, int32_t dtype, float v) {
  switch (dtype) {
    case F16: static_cast<c10::Half*>(p)[i] = c10::Half(v); break;
    case BF16: static_cast<c10::BFloat16*>(p)[i] = c10::BFloat16(v); break;
    default: static_cast<float*>(p)[i] = v;
  }
}

__attribute__((target("avx512f,f16c,fma"))) inline __m512 load16(const void* w, int64_t i, int32_t dtype) {
  switch (dtype) {
    case F16:
      return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(static_cast<const uint16_t*>(w) + i)));
    case BF16: {
      __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(static_cast<const uint16_t*>(w) + i));
      return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(raw), 16));
    }
    default:
      return _mm512_loadu_ps(static_cast<const float*>(w) + i);
  }
}

template <int32_t DT>
constexpr int64_t kElt = DT == F32 ? 4 : 2;

// y[r][o] = sum_i x[r][i] * w[o][i] for o in [begin, end); x is f32 here, `k` a multiple of 16.
template <int32_t DT, int64_t M>
__attribute__((target("avx512f,f16c,fma"))) void rows_avx512(
    const float* x, const void* w, int64_t k, int64_t begin, int64_t end, float* y, int64_t n) {
  // Weight rows read together: more streams in flight hide memory latency, within 32 registers.
  constexpr int G = M <= 2 ? 8 : (M <= 4 ? 4 : 2);
  int64_t o = begin;
  for (; o + G <= end; o += G) {
    __m512 acc[G][M];
    for (int a = 0; a < G; ++a)
      for (int64_t r = 0; r < M; ++r) acc[a][r] = _mm512_setzero_ps();
    for (int64_t i = 0; i < k; i += 16) {
      __m512 xs[M];
      for (int64_t r = 0; r < M; ++r) xs[r] = _mm512_loadu_ps(x + r * k + i);
      for (int a = 0; a < G; ++a) {
        // The next group's bytes at the same offset: one stream the prefetcher need not find.
        _mm_prefetch(static_cast<const char*>(w) + ((o + G + a) * k + i) * kElt<DT>, _MM_HINT_T0);
        __m512 wv = load16(w, (o + a) * k + i, DT);
        for (int64_t r = 0; r < M; ++r) acc[a][r] = _mm512_fmadd_ps(wv, xs[r], acc[a][r]);
      }
    }
    for (int a = 0; a < G; ++a)
      for (int64_t r = 0; r < M; ++r) y[r * n + o + a] = _mm512_reduce_add_ps(acc[a][r]);
  }
  for (; o < end; ++o) {
    __m512 acc[M];
    for (int64_t r = 0; r < M; ++r) acc[r] = _mm512_setzero_ps();
    for (int64_t i = 0; i < k; i += 16) {
      __m512 wv = load16(w, o * k + i, DT);
      for (int64_t r = 0; r < M; ++r) acc[r] = _mm512_fmadd_ps(wv, _mm512_loadu_ps(x + r * k + i), acc[r]);
    }
    for (int64_t r = 0; r < M; ++r) y[r * n + o] = _mm512_reduce_add_ps(acc[r]);
  }
}

// `count` (a multiple of 16) f16 / bf16 values as f32.
__attribute__((target("avx512f,f16c,fma"))) void widen(const void* src, int32_t dtype, int64_t count, float* dst) {
  for (int64_t i = 0; i < count; i += 16) _mm512_storeu_ps(dst + i, load16(src, i, dtype));
}

// `count` f32 values as f16 / bf16, rounded to nearest even like libtorch's own conversions.
__attribute__((target("avx512f,f16c,fma"))) void narrow(const float* src, int64_t count, int32_t dtype, uint16_t* dst) {
  int64_t i = 0;
  if (dtype == F16) {
    for (; i + 16 <= count; i += 16) {
      __m256i h = _mm512_cvtps_ph(_mm512_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i), h);
    }
  }
  for (; i < count; ++i) store_scalar(dst, i, dtype, src[i]);
}

using RowsFn = void (*)(const float*, const void*, int64_t, int64_t, int64_t, float*, int64_t);

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
    default: return rows_avx512<DT, 8>;
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

extern "C" {

// 1 when this CPU runs `maestro_gemv` (AVX-512F with F16C and FMA), 0 when callers must fall back.
int32_t maestro_gemv_supported() {
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("f16c") && __builtin_cpu_supports("fma");
}

// y (m × n, element type `dtype`) = x (m × k, `dtype`) · wᵀ (w: n × k, `dtype`), accumulated in f32.
// All row-major and contiguous. Returns 0, or -1 when the arguments are outside what it handles
// (m not in 1..=8, k not a positive multiple of 16, an unknown dtype, an unsupported CPU).
int32_t maestro_gemv(const void* x, int64_t m, const void* w, int64_t n, int64_t k, int32_t dtype, void* y) {
  if (m < 1 || m > kMaxRows || k < 16 || k % 16 != 0 || n < 1 || dtype < F32 || dtype > BF16 ||
      !maestro_gemv_supported()) {
    return -1;
  }
  // Per-thread scratch: activations widened to f32 once, and f32 results before narrowing. A
  // decoding step calls this ~170 times, so no allocation per call.
  thread_local std::vector<float> xf, yf;
  const float* xs = static_cast<const float*>(x);
  float* out = static_cast<float*>(y);
  if (dtype != F32) {
    xf.resize(static_cast<size_t>(m * k));
    widen(x, dtype, m * k, xf.data());
    xs = xf.data();
    yf.resize(static_cast<size_t>(m * n));
    out = yf.data();
  }
  RowsFn rows = pick(dtype, m);
  at::parallel_for(0, n, kGrain, [&](int64_t begin, int64_t end) {
    rows(xs, w, k, begin, end, out, n);
    if (dtype != F32) {
      for (int64_t r = 0; r < m; ++r) narrow(out + r * n + begin, end - begin, dtype, static_cast<uint16_t*>(y) + r * n + begin);
    }
  });
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
