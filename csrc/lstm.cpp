// One LSTM layer's recurrence for EnCodec's decoder, frame by frame, as a single native call.
//
// The codec's LSTM runs once per frame: a product of the hidden state with the hidden-to-hidden
// weights (4·dim × dim, 16 MB in f32 for the 32 kHz model), then a dozen elementwise gate ops.
// Through libtorch each of those ops is a dispatch and an allocation, about a sixth of the frame's
// time next to the product; here the gates are one loop over f32 scratch, and the product is
// `gemv_f32`. The caller computes the input projections of all frames beforehand in one GEMM.

#include <algorithm>
#include <vector>

#include "simd.h"

namespace maestro {
namespace {

MAESTRO_SIMD inline __m512 sigmoid16(__m512 x) {
  const __m512 one = _mm512_set1_ps(1.0f);
  return _mm512_div_ps(one, _mm512_add_ps(one, exp16(_mm512_sub_ps(_mm512_setzero_ps(), x))));
}

// tanh(x) = 1 − 2 / (e^{2x} + 1): exact at ±1 for large |x| (exp16 clamps), absolute error a few
// f32 ulps near 0.
MAESTRO_SIMD inline __m512 tanh16(__m512 x) {
  const __m512 one = _mm512_set1_ps(1.0f), two = _mm512_set1_ps(2.0f);
  return _mm512_sub_ps(one, _mm512_div_ps(two, _mm512_add_ps(exp16(_mm512_mul_ps(two, x)), one)));
}

// The cell update of one row from its gate pre-activations `g` (input, forget, cell, output:
// torch's order, `dim` each): c = f·c + i·g̃, h = o·tanh(c).
MAESTRO_SIMD void cell(const float* g, int64_t dim, float* h, float* c) {
  for (int64_t j = 0; j < dim; j += 16) {
    const __mmask16 mask = tail_mask(dim - j);
    const __m512 in = sigmoid16(_mm512_maskz_loadu_ps(mask, g + j));
    const __m512 forget = sigmoid16(_mm512_maskz_loadu_ps(mask, g + dim + j));
    const __m512 cand = tanh16(_mm512_maskz_loadu_ps(mask, g + 2 * dim + j));
    const __m512 out = sigmoid16(_mm512_maskz_loadu_ps(mask, g + 3 * dim + j));
    const __m512 cn = _mm512_fmadd_ps(forget, _mm512_maskz_loadu_ps(mask, c + j), _mm512_mul_ps(in, cand));
    _mm512_mask_storeu_ps(c + j, mask, cn);
    _mm512_mask_storeu_ps(h + j, mask, _mm512_mul_ps(out, tanh16(cn)));
  }
}

// acc += in over `count` values.
MAESTRO_SIMD void add_into(float* acc, const float* in, int64_t count) {
  for (int64_t i = 0; i < count; i += 16) {
    const __mmask16 mask = tail_mask(count - i);
    const __m512 sum = _mm512_add_ps(_mm512_maskz_loadu_ps(mask, acc + i), _mm512_maskz_loadu_ps(mask, in + i));
    _mm512_mask_storeu_ps(acc + i, mask, sum);
  }
}

}  // namespace
}  // namespace maestro

using namespace maestro;

extern "C" {

// Runs `steps` frames of one LSTM layer for `batch` (1..=kMaxStepRows) rows, all f32, row-major, contiguous:
// `gates_in` (steps, batch, 4·dim) holds each frame's x·W_ihᵀ + b_ih + b_hh; `w_hh` is (4·dim, dim);
// `h` and `c` (batch, dim) hold the state in and out; `out` (steps, batch, dim) receives every
// frame's h. Returns 0, or -1 (nothing written) outside what it handles.
int32_t maestro_lstm_layer(const float* gates_in, int64_t steps, int64_t batch, int64_t dim, const float* w_hh,
                           float* h, float* c, float* out) {
  if (steps < 0 || batch < 1 || batch > kMaxStepRows || dim < 1 || !simd_supported()) return -1;
  thread_local std::vector<float> gates;
  const int64_t width = 4 * dim;
  gates.resize(static_cast<size_t>(batch * width));
  for (int64_t t = 0; t < steps; ++t) {
    gemv_f32(h, batch, w_hh, width, dim, F32, gates.data(), false);
    add_into(gates.data(), gates_in + t * batch * width, batch * width);
    for (int64_t b = 0; b < batch; ++b) cell(gates.data() + b * width, dim, h + b * dim, c + b * dim);
    std::copy(h, h + batch * dim, out + t * batch * dim);
  }
  return 0;
}

}  // extern "C"
