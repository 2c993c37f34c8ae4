// One MusicGen decoding step (one new token per row) as a single native call.
//
// Through libtorch a step is ~20 small ops per layer (norms, head splits, cache writes, attention,
// residual adds), each with its own dispatch and OpenMP fork; on two cores that costs as much as a
// fifth of the weight streaming the step is bound by. Here the activations stay in f32 scratch for
// the whole step: norms, GELU, cache writes and residual adds are plain loops, the projections
// are `gemv_f32` (weights read once for all rows) and attention is one `at::parallel_for` over
// (row, head) pairs. The weights and caches keep the decoder's element type.
//
// The arithmetic follows the libtorch path op for op (sums may associate differently), except that
// f16 / bf16 activations are not rounded between ops: those runs come out closer to f32, not further.

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "simd.h"

extern "C" {

// Pointers into one layer's weights (element type `dtype`, row-major, contiguous) and caches.
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
  void* self_k;         // (batch, heads, capacity, head_dim)
  void* self_v;         // (batch, heads, capacity, head_dim)
  const void* cross_k;  // (batch, heads, encoder_len, head_dim)
  const void* cross_v;  // (batch, heads, encoder_len, head_dim)
};

// Everything one step reads and writes.
struct MaestroDecoderStep {
  int64_t batch, hidden, heads, ffn, layers, codebooks, vocab, capacity, position, encoder_len;
  int32_t dtype;
  float eps;
  const MaestroDecoderLayer* layer;
  const void* embed;      // (codebooks · (vocab + 1), hidden)
  const void* positions;  // (≥ capacity, hidden) sinusoids
  const void* final_norm_weight;
  const void* final_norm_bias;
  const void* lm_heads;     // (codebooks · vocab, hidden)
  const int64_t* codes;     // (batch, codebooks), each in 0..=vocab
  const float* cross_mask;  // (batch, encoder_len), additive
  void* logits;             // out: (batch, codebooks · vocab), element type `dtype`
};

}  // extern "C"

namespace maestro {
namespace {

// A step's f32 activations, kept per calling thread so a step allocates nothing once warm.
struct Scratch {
  std::vector<float> h, x, qkv, attn, ffn, scores, logits;
};

// nn.LayerNorm over each of `rows` rows of `h` (biased variance, two passes, f32) into `out`.
MAESTRO_SIMD void layer_norm(const float* h, int64_t rows, int64_t dim, const void* weight, const void* bias,
                             int32_t dtype, float eps, float* out) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* x = h + r * dim;
    __m512 sum = _mm512_setzero_ps(), sq = _mm512_setzero_ps();
    for (int64_t i = 0; i < dim; i += 16) sum = _mm512_add_ps(sum, _mm512_maskz_loadu_ps(tail_mask(dim - i), x + i));
    const __m512 mean = _mm512_set1_ps(_mm512_reduce_add_ps(sum) / static_cast<float>(dim));
    for (int64_t i = 0; i < dim; i += 16) {
      const __mmask16 mask = tail_mask(dim - i);
      const __m512 d = _mm512_maskz_sub_ps(mask, _mm512_maskz_loadu_ps(mask, x + i), mean);
      sq = _mm512_fmadd_ps(d, d, sq);
    }
    const float var = _mm512_reduce_add_ps(sq) / static_cast<float>(dim);
    const __m512 rstd = _mm512_set1_ps(1.f / std::sqrt(var + eps));
    for (int64_t i = 0; i < dim; i += 16) {
      const __mmask16 mask = tail_mask(dim - i);
      const __m512 d = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(mask, x + i), mean), rstd);
      const __m512 y = _mm512_fmadd_ps(d, load16_masked(weight, i, dtype, mask), load16_masked(bias, i, dtype, mask));
      _mm512_mask_storeu_ps(out + r * dim + i, mask, y);
    }
  }
}

// Exact (erf) GELU in place.
MAESTRO_SIMD void gelu(float* x, int64_t count) {
  const __m512 half = _mm512_set1_ps(0.5f), one = _mm512_set1_ps(1.0f), rsqrt2 = _mm512_set1_ps(0.70710678118654752f);
  for (int64_t i = 0; i < count; i += 16) {
    const __mmask16 mask = tail_mask(count - i);
    __m512 v = _mm512_maskz_loadu_ps(mask, x + i);
    __m512 y = _mm512_mul_ps(_mm512_mul_ps(v, half), _mm512_add_ps(one, erf16(_mm512_mul_ps(v, rsqrt2))));
    _mm512_mask_storeu_ps(x + i, mask, y);
  }
}

MAESTRO_SIMD float dot(const float* q, const void* k, int64_t len, int32_t dtype) {
  __m512 acc = _mm512_setzero_ps();
  for (int64_t i = 0; i < len; i += 16) {
    const __mmask16 mask = tail_mask(len - i);
    acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mask, q + i), load16_masked(k, i, dtype, mask), acc);
  }
  return _mm512_reduce_add_ps(acc);
}

// out += p · v over `len` elements.
MAESTRO_SIMD void axpy(float p, const void* v, int64_t len, int32_t dtype, float* out) {
  const __m512 pv = _mm512_set1_ps(p);
  for (int64_t i = 0; i < len; i += 16) {
    const __mmask16 mask = tail_mask(len - i);
    __m512 o = _mm512_maskz_loadu_ps(mask, out + i);
    _mm512_mask_storeu_ps(out + i, mask, _mm512_fmadd_ps(pv, load16_masked(v, i, dtype, mask), o));
  }
}

// exp(s − max s) in place over `len` values; returns their sum, by which the caller divides.
MAESTRO_SIMD float softmax_unnormalised(float* s, int64_t len) {
  __m512 mv = _mm512_set1_ps(-INFINITY);
  for (int64_t t = 0; t < len; t += 16) mv = _mm512_mask_max_ps(mv, tail_mask(len - t), mv, _mm512_maskz_loadu_ps(tail_mask(len - t), s + t));
  const __m512 m = _mm512_set1_ps(_mm512_reduce_max_ps(mv));
  __m512 sum = _mm512_setzero_ps();
  for (int64_t t = 0; t < len; t += 16) {
    const __mmask16 mask = tail_mask(len - t);
    __m512 e = _mm512_maskz_mov_ps(mask, exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(mask, s + t), m)));
    _mm512_mask_storeu_ps(s + t, mask, e);
    sum = _mm512_add_ps(sum, e);
  }
  return _mm512_reduce_add_ps(sum);
}

// Cached positions ahead of the one being scored whose keys `attend` prefetches.
constexpr int64_t kPrefetchAhead = 8;

// One query per (row, head) against `len` cached keys / values laid out (batch, heads, stride,
// head_dim): out[b][h·hd + d] = softmax(q·kᵀ·scale + mask)·v. `q` rows are `q_stride` apart;
// `scores` holds batch · heads · len floats.
void attend(const float* q, int64_t q_stride, const void* keys, const void* values, int64_t stride, int64_t len,
            const float* mask, const MaestroDecoderStep& s, float* scores, float* out) {
  const int64_t hd = s.hidden / s.heads, bytes = elt_size(s.dtype);
  const float scale = 1.f / std::sqrt(static_cast<float>(hd));
  at::parallel_for(0, s.batch * s.heads, 1, [&](int64_t begin, int64_t end) {
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
          _mm_prefetch(k + ahead * row + line, _MM_HINT_T0);
          _mm_prefetch(v + t * row + line, _MM_HINT_T0);
        }
        sc[t] = dot(qv, k + t * row, hd, s.dtype) * scale + (mask ? mask[b * len + t] : 0.f);
      }
      const float sum = softmax_unnormalised(sc, len);
      float* o = out + b * s.hidden + head * hd;
      std::fill(o, o + hd, 0.f);
      for (int64_t t = 0; t < len; ++t) axpy(sc[t] / sum, v + t * row, hd, s.dtype, o);
    }
  });
}

// Writes this step's keys and values (from the fused qkv rows) into the layer's cache.
void store_kv(const float* qkv, const MaestroDecoderLayer& l, const MaestroDecoderStep& s) {
  const int64_t hd = s.hidden / s.heads, bytes = elt_size(s.dtype);
  for (int64_t b = 0; b < s.batch; ++b)
    for (int64_t head = 0; head < s.heads; ++head) {
      const int64_t at = ((b * s.heads + head) * s.capacity + s.position) * hd * bytes;
      const float* row = qkv + b * 3 * s.hidden + head * hd;
      narrow(row + s.hidden, hd, s.dtype, static_cast<char*>(l.self_k) + at);
      narrow(row + 2 * s.hidden, hd, s.dtype, static_cast<char*>(l.self_v) + at);
    }
}

// The summed codebook embeddings of each row's codes plus the position's sinusoid.
MAESTRO_SIMD void embed(const MaestroDecoderStep& s, float* h) {
  const int64_t dim = s.hidden;
  for (int64_t b = 0; b < s.batch; ++b)
    for (int64_t i = 0; i < dim; i += 16) {
      const __mmask16 mask = tail_mask(dim - i);
      __m512 sum = _mm512_setzero_ps();
      for (int64_t c = 0; c < s.codebooks; ++c) {
        const int64_t row = c * (s.vocab + 1) + s.codes[b * s.codebooks + c];
        sum = _mm512_add_ps(sum, load16_masked(s.embed, row * dim + i, s.dtype, mask));
      }
      sum = _mm512_add_ps(sum, load16_masked(s.positions, s.position * dim + i, s.dtype, mask));
      _mm512_mask_storeu_ps(h + b * dim + i, mask, sum);
    }
}

void layer_step(const MaestroDecoderLayer& l, const MaestroDecoderStep& s, Scratch& w) {
  const int64_t b = s.batch, dim = s.hidden;
  layer_norm(w.h.data(), b, dim, l.self_norm_weight, l.self_norm_bias, s.dtype, s.eps, w.x.data());
  gemv_f32(w.x.data(), b, l.qkv, 3 * dim, dim, s.dtype, w.qkv.data(), false);
  store_kv(w.qkv.data(), l, s);
  const int64_t len = s.position + 1;
  attend(w.qkv.data(), 3 * dim, l.self_k, l.self_v, s.capacity, len, nullptr, s, w.scores.data(), w.attn.data());
  gemv_f32(w.attn.data(), b, l.self_out, dim, dim, s.dtype, w.h.data(), true);

  layer_norm(w.h.data(), b, dim, l.cross_norm_weight, l.cross_norm_bias, s.dtype, s.eps, w.x.data());
  gemv_f32(w.x.data(), b, l.cross_q, dim, dim, s.dtype, w.qkv.data(), false);
  attend(w.qkv.data(), dim, l.cross_k, l.cross_v, s.encoder_len, s.encoder_len, s.cross_mask, s, w.scores.data(),
         w.attn.data());
  gemv_f32(w.attn.data(), b, l.cross_out, dim, dim, s.dtype, w.h.data(), true);

  layer_norm(w.h.data(), b, dim, l.ffn_norm_weight, l.ffn_norm_bias, s.dtype, s.eps, w.x.data());
  gemv_f32(w.x.data(), b, l.fc1, s.ffn, dim, s.dtype, w.ffn.data(), false);
  gelu(w.ffn.data(), b * s.ffn);
  gemv_f32(w.ffn.data(), b, l.fc2, dim, s.ffn, s.dtype, w.h.data(), true);
}

bool valid(const MaestroDecoderStep& s) {
  const bool sizes = s.batch >= 1 && s.batch <= kMaxStepRows && s.hidden >= 1 && s.heads >= 1 && s.hidden % s.heads == 0 &&
                     s.ffn >= 1 && s.layers >= 0 && s.codebooks >= 1 && s.vocab >= 1 && s.encoder_len >= 1 &&
                     s.position >= 0 && s.position < s.capacity && s.dtype >= F32 && s.dtype <= BF16;
  if (!sizes || !simd_supported()) return false;
  for (int64_t i = 0; i < s.batch * s.codebooks; ++i)
    if (s.codes[i] < 0 || s.codes[i] > s.vocab) return false;
  return true;
}

}  // namespace
}  // namespace maestro

using namespace maestro;

extern "C" {

// Runs every layer for one new token per row at `position`, writes that position's keys and values
// into the caches and the logits of every codebook. Returns 0, or -1 (nothing written) when the
// arguments are outside what it handles: more than 8 rows, a code out of range, a full cache, an
// unknown dtype, a CPU without the kernels' instructions.
int32_t maestro_decoder_step(const MaestroDecoderStep* step) {
  const MaestroDecoderStep& s = *step;
  if (!valid(s)) return -1;
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
  gemv_f32(w.x.data(), b, s.lm_heads, out, dim, s.dtype, w.logits.data(), false);
  narrow(w.logits.data(), b * out, s.dtype, s.logits);
  return 0;
}

}  // extern "C"
