// One MusicGen decoding step (one new token per row) as a single native call.
//
// Through libtorch a step is ~20 small ops per layer (norms, head splits, cache writes, attention,
// residual adds), each with its own dispatch and OpenMP fork; on two cores that costs as much as a
// fifth of the weight streaming the step is bound by. Here the activations stay in f32 scratch for
// the whole step: norms, GELU, cache writes and residual adds are plain loops, the projections
// are `gemv_f32` (weights read once for all rows) and attention is one loop of the thread team
// (team.h) over (row, head) pairs. The projections and LM heads have the element type
// `weight_dtype` (int8 with per-row f32 scales, int4 rows with their group scales, or the decoder's
// own; int4 products everywhere but the generic path, and int8 products on a VNNI path, quantise
// their input rows: isa.h, cpu_kernels.cpp); everything else keeps `dtype`. Written once over `V`
// and compiled per path
// (foreach_isa.h); `maestro_decoder_step` takes the path to run.
//
// The arithmetic follows the libtorch path op for op (sums may associate differently), except that
// f16 / bf16 activations are not rounded between ops: those runs come out closer to f32, not further.

#include <algorithm>
#include <cmath>
#include <vector>

#include "simd.h"
#include "team.h"

#ifndef MAESTRO_DECODER_STEP_TYPES
#define MAESTRO_DECODER_STEP_TYPES
extern "C" {

// Pointers into one layer's weights (row-major, contiguous) and caches. The six projections have
// the step's `weight_dtype`, and with int8 each has one f32 scale per output row followed by each
// row's sum of its int8 weights (`*_scale`, 2 · rows floats, else null; isa.h); int4 rows carry
// their own scales (isa.h). The rest has the step's `dtype`.
struct MaestroDecoderLayer {
  const void* self_norm_weight;
  const void* self_norm_bias;
  const void* qkv;       // (3 · hidden, hidden): q, k, v projections stacked
  const void* self_out;  // (hidden, hidden)
  const void* cross_norm_weight;
  const void* cross_norm_bias;
  const void* cross_q;    // (hidden, hidden)
  const void* cross_out;  // (hidden, hidden)
  const void* ffn_norm_weight;
  const void* ffn_norm_bias;
  const void* fc1;      // (ffn, hidden)
  const void* fc2;      // (hidden, ffn)
  void* self_k;         // (batch, heads, capacity, head_dim), the step's `cache_dtype`
  void* self_v;         // (batch, heads, capacity, head_dim), the step's `cache_dtype`
  const void* cross_k;  // (batch, heads, encoder_len, head_dim)
  const void* cross_v;  // (batch, heads, encoder_len, head_dim)
  const float* qkv_scale;
  const float* self_out_scale;
  const float* cross_q_scale;
  const float* cross_out_scale;
  const float* fc1_scale;
  const float* fc2_scale;
};

// Everything one step reads and writes.
struct MaestroDecoderStep {
  int64_t batch, hidden, heads, ffn, layers, codebooks, vocab, capacity, position, encoder_len;
  int32_t dtype;
  int32_t weight_dtype;
  float eps;
  // The self-attention caches' element type: `dtype`, or F16 beside int8 weights (half the bytes a
  // late step reads from them).
  int32_t cache_dtype;
  const MaestroDecoderLayer* layer;
  const void* embed;      // (codebooks · (vocab + 1), hidden)
  const void* positions;  // (≥ capacity, hidden) sinusoids
  const void* final_norm_weight;
  const void* final_norm_bias;
  const void* lm_heads;        // (codebooks · vocab, hidden), `weight_dtype`
  const float* lm_heads_scale;  // (2, codebooks · vocab) with int8 weights, else null
  const int64_t* codes;        // (batch, codebooks), each in 0..=vocab
  const float* cross_mask;     // (batch, encoder_len), additive
  void* logits;                // out: (batch, codebooks · vocab), element type `dtype`
};

}  // extern "C"

namespace maestro {
// A step's f32 activations, kept per calling thread so a step allocates nothing once warm.
struct Scratch {
  std::vector<float> h, x, qkv, attn, ffn, scores, logits;
};
}  // namespace maestro
#endif  // MAESTRO_DECODER_STEP_TYPES

#ifdef MAESTRO_PASS
namespace maestro {
namespace MAESTRO_NS {
namespace {

#include "vmath.h"

// nn.LayerNorm over each of `rows` rows of `h` (biased variance, two passes, f32) into `out`.
void layer_norm(const float* h, int64_t rows, int64_t dim, const void* weight, const void* bias, int32_t dtype,
                float eps, float* out) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* x = h + r * dim;
    V::F sum = V::zero(), sq = V::zero();
    for (int64_t i = 0; i < dim; i += V::N) sum = V::add(sum, V::load_part(x + i, dim - i));
    const float m = V::reduce_add(sum) / static_cast<float>(dim);
    const V::F mean = V::set1(m);
    for (int64_t i = 0; i < dim; i += V::N) {
      // Padding lanes read the mean, so they add nothing.
      const V::F d = V::sub(V::load_part(x + i, dim - i, m), mean);
      sq = V::fmadd(d, d, sq);
    }
    const float var = V::reduce_add(sq) / static_cast<float>(dim);
    const V::F rstd = V::set1(1.f / std::sqrt(var + eps));
    for (int64_t i = 0; i < dim; i += V::N) {
      const V::F d = V::mul(V::sub(V::load_part(x + i, dim - i), mean), rstd);
      const V::F y = V::fmadd(d, V::load_dt_part(weight, i, dtype, dim - i), V::load_dt_part(bias, i, dtype, dim - i));
      V::store_part(out + r * dim + i, y, dim - i);
    }
  }
}

// Exact (erf) GELU in place.
void gelu(float* x, int64_t count) {
  const V::F half = V::set1(0.5f), one = V::set1(1.0f), rsqrt2 = V::set1(0.70710678118654752f);
  for (int64_t i = 0; i < count; i += V::N) {
    const V::F v = V::load_part(x + i, count - i);
    V::store_part(x + i, V::mul(V::mul(v, half), V::add(one, verf(V::mul(v, rsqrt2)))), count - i);
  }
}

float dot(const float* q, const void* k, int64_t len, int32_t dtype) {
  V::F acc = V::zero();
  for (int64_t i = 0; i < len; i += V::N)
    acc = V::fmadd(V::load_part(q + i, len - i), V::load_dt_part(k, i, dtype, len - i), acc);
  return V::reduce_add(acc);
}

// out += p · v over `len` elements.
void axpy(float p, const void* v, int64_t len, int32_t dtype, float* out) {
  const V::F pv = V::set1(p);
  for (int64_t i = 0; i < len; i += V::N)
    V::store_part(out + i, V::fmadd(pv, V::load_dt_part(v, i, dtype, len - i), V::load_part(out + i, len - i)), len - i);
}

// exp(s − max s) in place over `len` values; returns their sum, by which the caller divides.
float softmax_unnormalised(float* s, int64_t len) {
  V::F mv = V::set1(-INFINITY);
  for (int64_t t = 0; t < len; t += V::N) mv = V::max(mv, V::load_part(s + t, len - t, -INFINITY));
  const V::F m = V::set1(V::reduce_max(mv));
  V::F sum = V::zero();
  for (int64_t t = 0; t < len; t += V::N) {
    V::store_part(s + t, vexp(V::sub(V::load_part(s + t, len - t), m)), len - t);
    sum = V::add(sum, V::load_part(s + t, len - t));
  }
  return V::reduce_add(sum);
}

// Cached positions ahead of the one being scored whose keys `attend` prefetches: 4 KB of f16 keys
// at head size 64, about a memory latency's worth of streaming; 8 measured 2 % slower a step.
constexpr int64_t kPrefetchAhead = 32;

// One query per (row, head) against `len` cached keys / values laid out (batch, heads, stride,
// head_dim): out[b][h·hd + d] = softmax(q·kᵀ·scale + mask)·v. `q` rows are `q_stride` apart;
// `scores` holds batch · heads · len floats; keys and values have element type `dtype`.
void attend(const float* q, int64_t q_stride, const void* keys, const void* values, int32_t dtype, int64_t stride,
            int64_t len, const float* mask, const MaestroDecoderStep& s, float* scores, float* out) {
  const int64_t hd = s.hidden / s.heads, bytes = elt_size(dtype);
  const float scale = 1.f / std::sqrt(static_cast<float>(hd));
  parallel(s.batch * s.heads, 1, [&](int64_t begin, int64_t end) {
    for (int64_t bh = begin; bh < end; ++bh) {
      const int64_t b = bh / s.heads, head = bh % s.heads;
      const float* qv = q + b * q_stride + head * hd;
      const char* k = static_cast<const char*>(keys) + bh * stride * hd * bytes;
      const char* v = static_cast<const char*>(values) + bh * stride * hd * bytes;
      float* sc = scores + bh * len;
      const int64_t row = hd * bytes;
      for (int64_t t = 0; t < len; ++t) {
        // The cache was written steps ago and the weights streamed since have evicted it: a pair's
        // keys and values are a few kilobytes, too short for the hardware prefetcher to ramp up.
        // Fetch keys a few positions ahead and this position's values, which the sum below reads.
        const int64_t ahead = std::min(t + kPrefetchAhead, len - 1);
        for (int64_t line = 0; line < row; line += 64) {
          __builtin_prefetch(k + ahead * row + line, 0, 3);
          __builtin_prefetch(v + t * row + line, 0, 3);
        }
        sc[t] = dot(qv, k + t * row, hd, dtype) * scale + (mask ? mask[b * len + t] : 0.f);
      }
      const float sum = softmax_unnormalised(sc, len);
      float* o = out + b * s.hidden + head * hd;
      std::fill(o, o + hd, 0.f);
      for (int64_t t = 0; t < len; ++t) axpy(sc[t] / sum, v + t * row, hd, dtype, o);
    }
  });
}

// Writes this step's keys and values (from the fused qkv rows) into the layer's cache.
void store_kv(const float* qkv, const MaestroDecoderLayer& l, const MaestroDecoderStep& s) {
  const int64_t hd = s.hidden / s.heads, bytes = elt_size(s.cache_dtype);
  for (int64_t b = 0; b < s.batch; ++b)
    for (int64_t head = 0; head < s.heads; ++head) {
      const int64_t at = ((b * s.heads + head) * s.capacity + s.position) * hd * bytes;
      const float* row = qkv + b * 3 * s.hidden + head * hd;
      narrow(row + s.hidden, hd, s.cache_dtype, static_cast<char*>(l.self_k) + at);
      narrow(row + 2 * s.hidden, hd, s.cache_dtype, static_cast<char*>(l.self_v) + at);
    }
}

// The summed codebook embeddings of each row's codes plus the position's sinusoid.
void embed(const MaestroDecoderStep& s, float* h) {
  const int64_t dim = s.hidden;
  for (int64_t b = 0; b < s.batch; ++b)
    for (int64_t i = 0; i < dim; i += V::N) {
      V::F sum = V::zero();
      for (int64_t c = 0; c < s.codebooks; ++c) {
        const int64_t row = c * (s.vocab + 1) + s.codes[b * s.codebooks + c];
        sum = V::add(sum, V::load_dt_part(s.embed, row * dim + i, s.dtype, dim - i));
      }
      sum = V::add(sum, V::load_dt_part(s.positions, s.position * dim + i, s.dtype, dim - i));
      V::store_part(h + b * dim + i, sum, dim - i);
    }
}

void layer_step(const MaestroDecoderLayer& l, const MaestroDecoderStep& s, Scratch& w) {
  const int64_t b = s.batch, dim = s.hidden;
  const int32_t wt = s.weight_dtype;
  layer_norm(w.h.data(), b, dim, l.self_norm_weight, l.self_norm_bias, s.dtype, s.eps, w.x.data());
  gemv_f32(w.x.data(), b, l.qkv, l.qkv_scale, 3 * dim, dim, wt, w.qkv.data(), false);
  store_kv(w.qkv.data(), l, s);
  const int64_t len = s.position + 1;
  attend(w.qkv.data(), 3 * dim, l.self_k, l.self_v, s.cache_dtype, s.capacity, len, nullptr, s, w.scores.data(),
         w.attn.data());
  gemv_f32(w.attn.data(), b, l.self_out, l.self_out_scale, dim, dim, wt, w.h.data(), true);

  layer_norm(w.h.data(), b, dim, l.cross_norm_weight, l.cross_norm_bias, s.dtype, s.eps, w.x.data());
  gemv_f32(w.x.data(), b, l.cross_q, l.cross_q_scale, dim, dim, wt, w.qkv.data(), false);
  attend(w.qkv.data(), dim, l.cross_k, l.cross_v, s.dtype, s.encoder_len, s.encoder_len, s.cross_mask, s,
         w.scores.data(), w.attn.data());
  gemv_f32(w.attn.data(), b, l.cross_out, l.cross_out_scale, dim, dim, wt, w.h.data(), true);

  layer_norm(w.h.data(), b, dim, l.ffn_norm_weight, l.ffn_norm_bias, s.dtype, s.eps, w.x.data());
  gemv_f32(w.x.data(), b, l.fc1, l.fc1_scale, s.ffn, dim, wt, w.ffn.data(), false);
  gelu(w.ffn.data(), b * s.ffn);
  gemv_f32(w.ffn.data(), b, l.fc2, l.fc2_scale, dim, s.ffn, wt, w.h.data(), true);
}

}  // namespace

// The whole step on this path; the caller has checked `s`.
int32_t decoder_step(const MaestroDecoderStep& s) {
  thread_local Scratch w;
  const int64_t b = s.batch, dim = s.hidden, out = s.codebooks * s.vocab;
  w.h.resize(b * dim);
  w.x.resize(b * dim);
  w.attn.resize(b * dim);
  w.qkv.resize(b * 3 * dim);
  w.ffn.resize(b * s.ffn);
  w.scores.resize(b * s.heads * std::max(s.position + 1, s.encoder_len));
  w.logits.resize(b * out);
  embed(s, w.h.data());
  for (int64_t i = 0; i < s.layers; ++i) layer_step(s.layer[i], s, w);
  layer_norm(w.h.data(), b, dim, s.final_norm_weight, s.final_norm_bias, s.dtype, s.eps, w.x.data());
  gemv_f32(w.x.data(), b, s.lm_heads, s.lm_heads_scale, out, dim, s.weight_dtype, w.logits.data(), false);
  narrow(w.logits.data(), b * out, s.dtype, s.logits);
  return 0;
}

}  // namespace MAESTRO_NS
}  // namespace maestro
#else  // the entry point, compiled once

#define MAESTRO_SELF "decoder_step.cpp"
#include "foreach_isa.h"

namespace maestro {
namespace {

bool valid(const MaestroDecoderStep& s) {
  const bool dtypes = s.dtype >= F32 && s.dtype <= BF16 &&
                      (s.weight_dtype == s.dtype || (s.weight_dtype == I8 && s.lm_heads_scale != nullptr) ||
                       s.weight_dtype == I4) &&
                      (s.cache_dtype == s.dtype || ((s.weight_dtype == I8 || s.weight_dtype == I4) && s.cache_dtype == F16));
  const bool sizes = s.batch >= 1 && s.batch <= kMaxStepRows && s.hidden >= 1 && s.heads >= 1 && s.hidden % s.heads == 0 &&
                     s.ffn >= 1 && s.layers >= 0 && s.codebooks >= 1 && s.vocab >= 1 && s.encoder_len >= 1 &&
                     s.position >= 0 && s.position < s.capacity;
  if (!sizes || !dtypes) return false;
  for (int64_t i = 0; i < s.layers && s.weight_dtype == I8; ++i) {
    const MaestroDecoderLayer& l = s.layer[i];
    for (const float* scale : {l.qkv_scale, l.self_out_scale, l.cross_q_scale, l.cross_out_scale, l.fc1_scale, l.fc2_scale})
      if (scale == nullptr) return false;
  }
  for (int64_t i = 0; i < s.batch * s.codebooks; ++i)
    if (s.codes[i] < 0 || s.codes[i] > s.vocab) return false;
  return true;
}

}  // namespace
}  // namespace maestro

using namespace maestro;

extern "C" {

// Runs every layer for one new token per row at `position` on kernel path `isa`, writes that
// position's keys and values into the caches and the logits of every codebook. Returns 0, or -1
// (nothing written) when the arguments are outside what it handles: more than 8 rows, a code out
// of range, a full cache, an unknown dtype, int8 weights without scales, a cache dtype other than
// `dtype` (or F16 beside int8 or int4 weights), a path this CPU lacks.
int32_t maestro_decoder_step(int32_t isa, const MaestroDecoderStep* step) {
  if (!isa_supported(isa) || !valid(*step)) return -1;
  MAESTRO_DISPATCH(isa, decoder_step(*step))
}

}  // extern "C"

#endif  // MAESTRO_PASS
