// CPU kernels for the decoder's one-token steps, over libtorch's own thread pool.
//
// A decoding step multiplies one or two activation rows by every weight matrix: a matrix-vector
// product bound by how fast the weights stream from memory. libtorch 2.13 hands f16 weights to a
// kernel that streams about 9 GB/s on this CPU (f32 gets 22 GB/s), so an f16 decoder was slower
// than f32 although it reads half the bytes. `maestro_gemv` reads each weight once for all rows,
// widens f16 / bf16 / int8 to f32 in registers and accumulates in f32; the calling thread's team
// (team.h) splits the output rows in chunks claimed by whichever of its threads runs, so a thread
// that loses its core to a neighbour holds up one chunk, not the product. Written once over `V`
// and compiled per path
// (foreach_isa.h); the entry points at the end take the path to run.
//
// `maestro_inference_mode_*` exposes c10::InferenceMode, which tch does not: inside it tensors
// carry no autograd view or version tracking, which trims every op's dispatch cost.

#include <c10/core/InferenceMode.h>

#include <algorithm>
#include <utility>
#include <vector>

#include "simd.h"
#include "team.h"

#ifdef MAESTRO_PASS

namespace maestro {
namespace MAESTRO_NS {
namespace {

// Output rows per task: weight rows are read in groups, and a task of 64 keeps the split even.
constexpr int64_t kGrain = 64;

// One V::N-lane slice i.. of weight row `o` times the M activation rows, into acc. `Tail` reads
// only the first `count` lanes, for a `k` that is not a multiple of V::N.
template <int32_t DT, int64_t M, bool Tail>
inline void fma_slice(const float* x, const void* w, int64_t k, int64_t o, int64_t i, int64_t count, V::F* acc) {
  const V::F wv = Tail ? V::load_dt_part(w, o * k + i, DT, count) : V::load_dt(w, o * k + i, DT);
  for (int64_t r = 0; r < M; ++r) {
    const V::F xv = Tail ? V::load_part(x + r * k + i, count) : V::load(x + r * k + i);
    acc[r] = V::fmadd(wv, xv, acc[r]);
  }
}

inline void put(float* y, V::F acc, float scale, bool accumulate) {
  const float v = V::reduce_add(acc) * scale;
  *y = accumulate ? *y + v : v;
}

// Rows of `k` elements of `dtype` that fill one 4 KiB page (1 when a row is a page or longer).
inline int64_t rows_per_page(int64_t k, int32_t dtype) {
  return std::max<int64_t>(1, 4096 / row_bytes(k, dtype));
}

// G weight rows at once, slot a reading row `first + stride·a` and prefetching the row it reads
// next, `next + stride·a`: y[r][row] (+)= scale[row] · sum_i x[r][i] * w[row][i].
template <int32_t DT, int64_t M, int G>
void slot_rows(const float* x, const void* w, const float* scale, int64_t k, int64_t first, int64_t next,
               int64_t stride, float* y, int64_t n, bool accumulate) {
  const int64_t body = k - k % V::N;
  V::F acc[G][M];
  for (int a = 0; a < G; ++a)
    for (int64_t r = 0; r < M; ++r) acc[a][r] = V::zero();
  for (int64_t i = 0; i < body; i += V::N) {
    for (int a = 0; a < G; ++a) {
      __builtin_prefetch(static_cast<const char*>(w) + ((next + stride * a) * k + i) * elt_size(DT), 0, 3);
      fma_slice<DT, M, false>(x, w, k, first + stride * a, i, V::N, acc[a]);
    }
  }
  if (body < k)
    for (int a = 0; a < G; ++a) fma_slice<DT, M, true>(x, w, k, first + stride * a, body, k - body, acc[a]);
  for (int a = 0; a < G; ++a) {
    const int64_t row = first + stride * a;
    for (int64_t r = 0; r < M; ++r) put(y + r * n + row, acc[a][r], DT == I8 ? scale[row] : 1.f, accumulate);
  }
}

// One int4 group `g` (inputs i = 32g..) of each of G weight rows against the M rows of x: the
// codes widen to f32 once for all M rows. `Tail` is the row's last, padded group: x is read only
// up to k (the padding codes are zeros anyway).
template <int64_t M, int G, bool Tail>
__attribute__((always_inline)) inline void q4_group(const float* x, const uint8_t* w, int64_t k, int64_t g, int64_t first, int64_t next,
                     int64_t stride, V::F (&acc)[G][M]) {
  constexpr int64_t NV = kQ4Group / V::N;
  const int64_t groups = q4_groups(k), rb = q4_row_bytes(k), i = g * kQ4Group;
#pragma GCC unroll 16
  for (int a = 0; a < G; ++a) {
    const uint8_t* row = w + (first + stride * a) * rb;
    const uint8_t* ahead = w + (next + stride * a) * rb;
    // A cache line holds four groups' codes and 32 groups' scales.
    if (g % 4 == 0) __builtin_prefetch(ahead + g * (kQ4Group / 2), 0, 3);
    if (g % 32 == 0) __builtin_prefetch(ahead + groups * (kQ4Group / 2) + g * 2, 0, 3);
    uint16_t bits;
    std::memcpy(&bits, row + groups * (kQ4Group / 2) + g * 2, sizeof bits);
    V::F wv[NV];
    V::q4_widen(row + g * (kQ4Group / 2), half_to_float(bits), wv);
    for (int64_t j = 0; j < NV; ++j) {
      const int64_t at = i + j * V::N;
      for (int64_t r = 0; r < M; ++r) {
        const V::F xv = Tail ? V::load_part(x + r * k + at, std::max<int64_t>(0, k - at)) : V::load(x + r * k + at);
        acc[a][r] = V::fmadd(wv[j], xv, acc[a][r]);
      }
    }
  }
}

// `slot_rows` for int4 rows (isa.h), with f32 activations on every path: G rows from `first`,
// `stride` apart, prefetching the rows from `next`.
template <int64_t M, int G>
void slot_rows_q4(const float* x, const uint8_t* w, int64_t k, int64_t first, int64_t next, int64_t stride, float* y,
                  int64_t n, bool accumulate) {
  V::F acc[G][M];
  for (int a = 0; a < G; ++a)
    for (int64_t r = 0; r < M; ++r) acc[a][r] = V::zero();
  const int64_t full = k / kQ4Group;
  for (int64_t g = 0; g < full; ++g) q4_group<M, G, false>(x, w, k, g, first, next, stride, acc);
  if (full < q4_groups(k)) q4_group<M, G, true>(x, w, k, full, first, next, stride, acc);
  for (int a = 0; a < G; ++a)
    for (int64_t r = 0; r < M; ++r) put(y + r * n + first + stride * a, acc[a][r], 1.f, accumulate);
}

// The weight rows `first + stride·a` (a < G) against x, for `dtype` DT.
template <int32_t DT, int64_t M, int G>
inline void slot(const float* x, const void* w, const float* scale, int64_t k, int64_t first, int64_t next,
                 int64_t stride, float* y, int64_t n, bool accumulate) {
  if constexpr (DT == I4)
    slot_rows_q4<M, G>(x, static_cast<const uint8_t*>(w), k, first, next, stride, y, n, accumulate);
  else
    slot_rows<DT, M, G>(x, w, scale, k, first, next, stride, y, n, accumulate);
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
void rows(const float* x, const void* w, const float* scale, int64_t k, int64_t begin, int64_t end, float* y,
          int64_t n, bool accumulate) {
  constexpr int G = V::slots(M);
  const int64_t S = rows_per_page(k, DT);
  int64_t o = begin;
  for (; o + G * S <= end; o += G * S)
    for (int64_t p = 0; p < S; ++p)
      slot<DT, M, G>(x, w, scale, k, o + p, p + 1 < S ? o + p + 1 : o + G * S, S, y, n, accumulate);
  for (; o + G <= end; o += G) slot<DT, M, G>(x, w, scale, k, o, o + G, 1, y, n, accumulate);
  for (; o < end; ++o) slot<DT, M, 1>(x, w, scale, k, o, o + 1, 1, y, n, accumulate);
}

using RowsFn = void (*)(const float*, const void*, const float*, int64_t, int64_t, int64_t, float*, int64_t, bool);

template <int32_t DT, int64_t... M>
RowsFn pick_rows(int64_t m, std::integer_sequence<int64_t, M...>) {
  constexpr RowsFn table[] = {rows<DT, M + 1>...};
  return table[std::min<int64_t>(m, kMaxPassRows) - 1];
}

RowsFn pick(int32_t dtype, int64_t m) {
  const auto all = std::make_integer_sequence<int64_t, kMaxPassRows>{};
  switch (dtype) {
    case F16: return pick_rows<F16>(m, all);
    case BF16: return pick_rows<BF16>(m, all);
    case I8: return pick_rows<I8>(m, all);
    case I4: return pick_rows<I4>(m, all);
    default: return pick_rows<F32>(m, all);
  }
}

// ---- int8 on the VNNI paths (simd_vnni.h): activations quantised per row, products in int32 ----

// A quantised activation row: x ≈ scale · (u − zero) for its bytes u.
struct RowQuant {
  float scale;
  int32_t zero;
};

// One f32 row of `k` as bytes `out`, asymmetric: the range [min(x, 0), max(x, 0)] in 255 steps,
// zero point `zero` (0..255), so a row skewed to one side (GELU's output) keeps all 256 levels; the
// kernel takes zero · Σ w back out with the weight rows' sums. A row holding an infinity or NaN
// gets a NaN scale, so the product is not finite either (as the f32 paths' would not be).
RowQuant quantise_row(const float* x, int64_t k, uint8_t* out) {
  V::F hi = V::zero(), neg_lo = V::zero(), bad = V::zero();
  for (int64_t i = 0; i < k; i += V::N) {
    const V::F v = V::load_part(x + i, k - i);  // padding lanes read 0, inside the range anyway
    hi = V::max(hi, v);
    neg_lo = V::max(neg_lo, V::sub(V::zero(), v));
    bad = V::add(bad, V::mul(v, V::zero()));  // NaN in a lane once any value was not finite
  }
  const float range = V::reduce_max(hi) + V::reduce_max(neg_lo), poison = V::reduce_add(bad);
  if (!(range > 0.f) || poison != 0.f) {
    std::memset(out, 0, static_cast<size_t>(k));
    return {poison != 0.f ? poison : 0.f, 0};
  }
  const float inv = 255.f / range;
  const int32_t zero = static_cast<int32_t>(std::nearbyint(V::reduce_max(neg_lo) * inv));
  const V::F scale = V::set1(inv);
  alignas(64) float q[V::N];
  for (int64_t i = 0; i < k; i += V::N) {
    V::store(q, V::round(V::mul(V::load_part(x + i, k - i), scale)));
    const int64_t count = std::min<int64_t>(V::N, k - i);
    for (int64_t j = 0; j < count; ++j)
      out[i + j] = static_cast<uint8_t>(std::clamp(static_cast<int32_t>(q[j]) + zero, 0, 255));
  }
  return {range / 255.f, zero};
}

// As `slot_rows` for int8 weights against M quantised rows `xq` (`kq` bytes apart, `xs` their
// scales and zero points): Q::QN bytes of every row per instruction, the tail of `k` read masked.
// `scale` holds the n row scales then the n rows' weight sums, whose zero · Σ w takes each
// activation row's zero point back out.
template <class Q, int64_t M, int G>
void slot_rows_q(const uint8_t* xq, int64_t kq, const RowQuant* xs, const int8_t* w, const float* scale, int64_t k,
                 int64_t first, int64_t next, int64_t stride, float* y, int64_t n, bool accumulate) {
  const int64_t body = k - k % Q::QN;
  typename Q::I acc[G][M];
  for (int a = 0; a < G; ++a)
    for (int64_t r = 0; r < M; ++r) acc[a][r] = Q::qzero();
  for (int64_t i = 0; i < body; i += Q::QN) {
    for (int a = 0; a < G; ++a) {
      __builtin_prefetch(w + (next + stride * a) * k + i, 0, 3);
      const typename Q::I wv = Q::wload(w + (first + stride * a) * k + i);
      for (int64_t r = 0; r < M; ++r) acc[a][r] = Q::dot(acc[a][r], Q::qload(xq + r * kq + i), wv);
    }
  }
  if (body < k)
    for (int a = 0; a < G; ++a) {
      const typename Q::I wv = Q::wload_part(w + (first + stride * a) * k + body, k - body);
      for (int64_t r = 0; r < M; ++r) acc[a][r] = Q::dot(acc[a][r], Q::qload(xq + r * kq + body), wv);
    }
  for (int a = 0; a < G; ++a) {
    const int64_t row = first + stride * a;
    const int32_t sum = static_cast<int32_t>(scale[n + row]);
    for (int64_t r = 0; r < M; ++r) {
      const int32_t dot = Q::qreduce(acc[a][r]) - xs[r].zero * sum;
      const float v = static_cast<float>(dot) * (xs[r].scale * scale[row]);
      y[r * n + row] = accumulate ? y[r * n + row] + v : v;
    }
  }
}

// `rows` for the quantised product: the same page walk, so int8 weights stream alike on every path.
template <class Q, int64_t M>
void rows_q(const uint8_t* xq, int64_t kq, const RowQuant* xs, const int8_t* w, const float* scale, int64_t k,
            int64_t begin, int64_t end, float* y, int64_t n, bool accumulate) {
  constexpr int G = Q::slots(M);
  const int64_t S = rows_per_page(k, I8);
  int64_t o = begin;
  for (; o + G * S <= end; o += G * S)
    for (int64_t p = 0; p < S; ++p)
      slot_rows_q<Q, M, G>(xq, kq, xs, w, scale, k, o + p, p + 1 < S ? o + p + 1 : o + G * S, S, y, n, accumulate);
  for (; o + G <= end; o += G) slot_rows_q<Q, M, G>(xq, kq, xs, w, scale, k, o, o + G, 1, y, n, accumulate);
  for (; o < end; ++o) slot_rows_q<Q, M, 1>(xq, kq, xs, w, scale, k, o, o + 1, 1, y, n, accumulate);
}

using RowsQFn = void (*)(const uint8_t*, int64_t, const RowQuant*, const int8_t*, const float*, int64_t, int64_t,
                         int64_t, float*, int64_t, bool);

template <class Q, int64_t... M>
RowsQFn pick_rows_q(int64_t m, std::integer_sequence<int64_t, M...>) {
  constexpr RowsQFn table[] = {rows_q<Q, M + 1>...};
  return table[std::min<int64_t>(m, kMaxPassRows) - 1];
}

// The int8 product on a VNNI path: the rows quantised once here, on the calling thread, then the
// output rows split over libtorch's threads as for every other dtype.
template <class Q>
void gemv_vnni(const float* x, int64_t m, const int8_t* w, const float* scale, int64_t n, int64_t k, float* y,
               bool accumulate) {
  const int64_t kq = (k + Q::QN - 1) / Q::QN * Q::QN;
  thread_local std::vector<uint8_t> quantised;
  thread_local std::vector<RowQuant> scales;
  quantised.assign(static_cast<size_t>(m * kq), 0);
  scales.resize(static_cast<size_t>(m));
  for (int64_t r = 0; r < m; ++r) scales[r] = quantise_row(x + r * k, k, quantised.data() + r * kq);
  // The workers read this thread's buffers: pass pointers, not the thread_local names.
  const uint8_t* xq = quantised.data();
  const RowQuant* xs = scales.data();
  RowsQFn fn = pick_rows_q<Q>(m, std::make_integer_sequence<int64_t, kMaxPassRows>{});
  parallel(n, kGrain, [&](int64_t begin, int64_t end) { fn(xq, kq, xs, w, scale, k, begin, end, y, n, accumulate); });
}

// ---- int4 against 8-bit activations (every path but generic): bytes multiplied into int32 ----
//
// Widening int4 codes to f32 makes the product bound by arithmetic at a third of int8's speed. So,
// as llama.cpp does, each activation row is quantised to signed bytes (symmetric, its own scale)
// and multiplied with the codes as bytes: u8 codes × s8 activations summed in int32 lanes
// (vpdpbusd on the VNNI paths, vpmaddubsw + vpmaddwd elsewhere), Σ (q − 8) · x being Σ q · x less
// 8 · Σ x, whose per-group sums are the accumulator's starting value. One step takes QN code bytes
// (QN / 16 groups): their low nibbles are each group's first 16 inputs, their high nibbles its last
// 16, so each row's bytes are laid out the same way once per product (`Q4Rows`), and every group's
// products land in four int32 lanes, which its f32 scale then multiplies.

// The activation rows of one int4 product, quantised and laid out for `V::QN`-byte steps.
struct Q4Rows {
  std::vector<int8_t> lo, hi;  // per row, per group: its first 16 inputs, then (in `hi`) its last 16
  std::vector<int32_t> base;   // per row, per group, four lanes of −2 · Σ the group's 32 values
  std::vector<float> scale;    // per row: x ≈ scale · value
  int64_t groups = 0;          // per row, rounded up to whole steps
};

// `m` rows of `k` inputs into `out`. A row holding an infinity or NaN gets a NaN scale, so its
// products are not finite either (as the f32 paths' would not be).
// Rounds to the nearest integer, ties to even (nearbyint in the default rounding mode), by adding
// and taking away 1.5·2²³: the compiler vectorises this where nearbyint stays a call per value.
// Exact for |v| < 2²²; the callers' values are within ±127.
inline int32_t round_even(float v) {
  constexpr float kShift = 12582912.f;
  return static_cast<int32_t>((v + kShift) - kShift);
}

template <class Q>
void quantise_q4_rows(const float* x, int64_t m, int64_t k, Q4Rows& out) {
  constexpr int64_t step_groups = Q::QN / 16;
  out.groups = (q4_groups(k) + step_groups - 1) / step_groups * step_groups;
  const int64_t bytes = out.groups * 16;
  out.lo.assign(static_cast<size_t>(m * bytes), 0);
  out.hi.assign(static_cast<size_t>(m * bytes), 0);
  out.base.assign(static_cast<size_t>(m * out.groups * 4), 0);
  out.scale.assign(static_cast<size_t>(m), 0.f);
  for (int64_t r = 0; r < m; ++r) {
    const float* row = x + r * k;
    typename Q::F peak = Q::zero(), bad = Q::zero();
    for (int64_t i = 0; i < k; i += Q::N) {
      const typename Q::F v = Q::load_part(row + i, k - i);
      peak = Q::max(peak, Q::abs(v));
      bad = Q::add(bad, Q::mul(v, Q::zero()));  // NaN in a lane once any value was not finite
    }
    const float amax = Q::reduce_max(peak), poison = Q::reduce_add(bad);
    if (poison != 0.f) out.scale[r] = poison;
    if (!(amax > 0.f) || poison != 0.f) continue;
    const float inv = 127.f / amax;
    int8_t* lo = out.lo.data() + r * bytes;
    int8_t* hi = out.hi.data() + r * bytes;
    int32_t* base = out.base.data() + r * out.groups * 4;
    // A last group shorter than 32 inputs is read from a zero-padded copy, so every group runs the
    // same fixed-length loops, which the compiler unrolls and vectorises.
    float tail[kQ4Group] = {};
    for (int64_t g = 0; g * kQ4Group < k; ++g) {
      const float* src = row + g * kQ4Group;
      if (k - g * kQ4Group < kQ4Group) {
        std::copy(src, row + k, tail);
        src = tail;
      }
      int32_t sum = 0;
      for (int64_t t = 0; t < 16; ++t) {
        const int32_t q = round_even(std::clamp(src[t] * inv, -127.f, 127.f));
        lo[g * 16 + t] = static_cast<int8_t>(q);
        sum += q;
      }
      for (int64_t t = 0; t < 16; ++t) {
        const int32_t q = round_even(std::clamp(src[16 + t] * inv, -127.f, 127.f));
        hi[g * 16 + t] = static_cast<int8_t>(q);
        sum += q;
      }
      for (int j = 0; j < 4; ++j) base[g * 4 + j] = -2 * sum;
    }
    out.scale[r] = amax / 127.f;
  }
}

// One step (groups g.. g + left) of G int4 weight rows against the M quantised rows of `xq`.
// Always inlined and unrolled, so the accumulators stay in registers.
template <class Q, int64_t M, int G>
__attribute__((always_inline)) inline void q4i_step(const Q4Rows& xq, const uint8_t* w, int64_t k, int64_t g,
                                                    int64_t left, int64_t first, int64_t next, int64_t stride,
                                                    typename Q::F (&acc)[G][M]) {
  const int64_t groups = q4_groups(k), rb = q4_row_bytes(k), codes = groups * (kQ4Group / 2);
  const int64_t xbytes = xq.groups * 16, xbase = xq.groups * 4;
#pragma GCC unroll 16
  for (int a = 0; a < G; ++a) {
    const uint8_t* row = w + (first + stride * a) * rb;
    const uint8_t* ahead = w + (next + stride * a) * rb;
    __builtin_prefetch(ahead + g * 16, 0, 3);
    if (g % 32 == 0) __builtin_prefetch(ahead + codes + g * 2, 0, 3);
    typename Q::I hi;
    const typename Q::I lo = Q::q4_codes(row + g * 16, left * 16, hi);
    const typename Q::F d = Q::q4_scales(row + codes + g * 2, left);
#pragma GCC unroll 16
    for (int64_t r = 0; r < M; ++r) {
      typename Q::I dot = Q::iload(xq.base.data() + r * xbase + g * 4);
      dot = Q::q4dot(dot, lo, Q::iload(xq.lo.data() + r * xbytes + g * 16));
      dot = Q::q4dot(dot, hi, Q::iload(xq.hi.data() + r * xbytes + g * 16));
      acc[a][r] = Q::fmadd(Q::to_float(dot), d, acc[a][r]);
    }
  }
}

// As `slot_rows` for int4 rows against the M quantised rows of `xq`: whole steps, then the last.
template <class Q, int64_t M, int G>
void slot_rows_q4i(const Q4Rows& xq, const uint8_t* w, int64_t k, int64_t first, int64_t next, int64_t stride,
                   float* y, int64_t n, bool accumulate) {
  constexpr int64_t step_groups = Q::QN / 16;
  const int64_t groups = q4_groups(k), whole = groups / step_groups * step_groups;
  typename Q::F acc[G][M];
  for (int a = 0; a < G; ++a)
    for (int64_t r = 0; r < M; ++r) acc[a][r] = Q::zero();
  for (int64_t g = 0; g < whole; g += step_groups)
    q4i_step<Q, M, G>(xq, w, k, g, step_groups, first, next, stride, acc);
  if (whole < groups) q4i_step<Q, M, G>(xq, w, k, whole, groups - whole, first, next, stride, acc);
  for (int a = 0; a < G; ++a)
    for (int64_t r = 0; r < M; ++r) put(y + r * n + first + stride * a, acc[a][r], xq.scale[r], accumulate);
}

// `rows` for the quantised int4 product: the same page walk.
template <class Q, int64_t M>
void rows_q4i(const Q4Rows& xq, const uint8_t* w, int64_t k, int64_t begin, int64_t end, float* y, int64_t n,
              bool accumulate) {
  constexpr int G = Q::slots(M);
  const int64_t S = rows_per_page(k, I4);
  int64_t o = begin;
  for (; o + G * S <= end; o += G * S)
    for (int64_t p = 0; p < S; ++p)
      slot_rows_q4i<Q, M, G>(xq, w, k, o + p, p + 1 < S ? o + p + 1 : o + G * S, S, y, n, accumulate);
  for (; o + G <= end; o += G) slot_rows_q4i<Q, M, G>(xq, w, k, o, o + G, 1, y, n, accumulate);
  for (; o < end; ++o) slot_rows_q4i<Q, M, 1>(xq, w, k, o, o + 1, 1, y, n, accumulate);
}

using RowsQ4Fn = void (*)(const Q4Rows&, const uint8_t*, int64_t, int64_t, int64_t, float*, int64_t, bool);

template <class Q, int64_t... M>
RowsQ4Fn pick_rows_q4i(int64_t m, std::integer_sequence<int64_t, M...>) {
  constexpr RowsQ4Fn table[] = {rows_q4i<Q, M + 1>...};
  return table[std::min<int64_t>(m, kMaxPassRows) - 1];
}

// The int4 product: the rows quantised once here, on the calling thread, then the output rows split
// over the team.
template <class Q>
void gemv_q4(const float* x, int64_t m, const uint8_t* w, int64_t n, int64_t k, float* y, bool accumulate) {
  thread_local Q4Rows quantised;
  quantise_q4_rows<Q>(x, m, k, quantised);
  // The workers read this thread's buffers: pass a reference, not the thread_local name.
  const Q4Rows& xq = quantised;
  RowsQ4Fn fn = pick_rows_q4i<Q>(m, std::make_integer_sequence<int64_t, kMaxPassRows>{});
  parallel(n, kGrain, [&](int64_t begin, int64_t end) { fn(xq, w, k, begin, end, y, n, accumulate); });
}

}  // namespace

void gemv_f32(const float* x, int64_t m, const void* w, const float* scale, int64_t n, int64_t k, int32_t dtype,
              float* y, bool accumulate) {
  if constexpr (V::kVnni) {
    if (dtype == I8 && m > kQuantiseAboveRows)
      return gemv_vnni<V>(x, m, static_cast<const int8_t*>(w), scale, n, k, y, accumulate);
  }
  if constexpr (V::kQ4Dot) {
    if (dtype == I4) return gemv_q4<V>(x, m, static_cast<const uint8_t*>(w), n, k, y, accumulate);
  }
  RowsFn fn = pick(dtype, m);
  parallel(n, kGrain, [&](int64_t begin, int64_t end) { fn(x, w, scale, k, begin, end, y, n, accumulate); });
}

// `count` values of `dtype` as f32.
void widen(const void* src, int32_t dtype, int64_t count, float* dst) {
  for (int64_t i = 0; i < count; i += V::N) V::store_part(dst + i, V::load_dt_part(src, i, dtype, count - i), count - i);
}

// `count` f32 values into `dst` (element type `dtype`, not I8).
void narrow(const float* src, int64_t count, int32_t dtype, void* dst) {
  if (dtype == F32) {
    std::memcpy(dst, src, static_cast<size_t>(count) * sizeof(float));
    return;
  }
  for (int64_t i = 0; i < count; i += V::N) V::store_dt_part(dst, i, dtype, V::load_part(src + i, count - i), count - i);
}

}  // namespace MAESTRO_NS
}  // namespace maestro

#else  // the entry points, compiled once

#define MAESTRO_SELF "cpu_kernels.cpp"
#include "foreach_isa.h"

using namespace maestro;

extern "C" {

// 1 when this CPU runs kernel path `isa` (`Isa` in isa.h), else 0.
int32_t maestro_isa_supported(int32_t isa) { return isa_supported(isa); }

// y (m × n, element type `dtype`) = x (m × k, `dtype`) · wᵀ (w: n × k, `dtype`), accumulated in f32,
// on path `isa`. All row-major and contiguous. Returns 0, or -1 when the arguments are outside what
// it handles (m not in 1..=16, k or n not positive, an unknown dtype, a path this CPU lacks).
int32_t maestro_gemv(int32_t isa, const void* x, int64_t m, const void* w, int64_t n, int64_t k, int32_t dtype,
                     void* y) {
  if (m < 1 || m > kMaxPassRows || k < 1 || n < 1 || dtype < F32 || dtype > BF16 || !isa_supported(isa)) {
    return -1;
  }
  const auto run = [&](const float* xf, float* yf) { MAESTRO_DISPATCH(isa, gemv_f32(xf, m, w, nullptr, n, k, dtype, yf, false)) };
  if (dtype == F32) {
    run(static_cast<const float*>(x), static_cast<float*>(y));
    return 0;
  }
  // Per-thread scratch: activations widened to f32 once, and f32 results before narrowing. A
  // decoding step calls this ~170 times, so no allocation per call.
  thread_local std::vector<float> xf, yf;
  xf.resize(static_cast<size_t>(m * k));
  yf.resize(static_cast<size_t>(m * n));
  const auto convert = [&]() { MAESTRO_DISPATCH(isa, widen(x, dtype, m * k, xf.data())) };
  convert();
  run(xf.data(), yf.data());
  const auto back = [&]() { MAESTRO_DISPATCH(isa, narrow(yf.data(), m * n, dtype, y)) };
  back();
  return 0;
}

// y (m × n, f32) = x (m × k, f32) · (scale ⊙ w)ᵀ for int8 weights `w` (n × k) on path `isa`.
// `scale` holds 2n floats: one f32 scale per row, then each row's sum of its int8 weights. The
// VNNI paths quantise each row of x to 8 bits and multiply in int32 (the sums undo the unsigned
// offset, simd_vnni.h); the others widen the weights to f32 in registers and keep x in f32.
// Returns 0, or -1 outside what it handles (as `maestro_gemv`).
int32_t maestro_gemv_i8(int32_t isa, const float* x, int64_t m, const int8_t* w, const float* scale, int64_t n,
                        int64_t k, float* y) {
  if (m < 1 || m > kMaxPassRows || k < 1 || n < 1 || scale == nullptr || !isa_supported(isa)) return -1;
  const auto run = [&]() { MAESTRO_DISPATCH(isa, gemv_f32(x, m, w, scale, n, k, I8, y, false)) };
  run();
  return 0;
}

// y (m × n, f32) = x (m × k, f32) · wᵀ for int4 weights `w`: n rows of `q4_row_bytes(k)` bytes,
// each its codes then its f16 group scales (isa.h). Every path widens the codes to f32 in
// registers and keeps x in f32. Returns 0, or -1 outside what it handles (as `maestro_gemv`).
int32_t maestro_gemv_i4(int32_t isa, const float* x, int64_t m, const uint8_t* w, int64_t n, int64_t k, float* y) {
  if (m < 1 || m > kMaxPassRows || k < 1 || n < 1 || !isa_supported(isa)) return -1;
  const auto run = [&]() { MAESTRO_DISPATCH(isa, gemv_f32(x, m, w, nullptr, n, k, I4, y, false)) };
  run();
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

#endif  // MAESTRO_PASS
