// One LSTM layer's recurrence for EnCodec's decoder, frame by frame, as a single native call.
//
// The codec's LSTM runs once per frame: a product of the hidden state with the hidden-to-hidden
// weights (4·dim × dim: 16 MB in f32 for the 32 kHz model, 8 MB in the f16 the CPU loader keeps),
// then a dozen elementwise gate ops. Through libtorch each of those ops is a dispatch and an
// allocation, about a sixth of the frame's time next to the product; here the gates are one loop
// over f32 scratch, and the product is `gemv_f32`, which widens f16 or bf16 weights in registers.
// The caller computes the input projections of all frames beforehand in one GEMM.
// Written once over `V` and compiled per path (foreach_isa.h).

#include <algorithm>
#include <vector>

#include "simd.h"

#ifdef MAESTRO_PASS

namespace maestro {
namespace MAESTRO_NS {
namespace {

#include "vmath.h"

inline V::F sigmoid(V::F x) {
  const V::F one = V::set1(1.0f);
  return V::div(one, V::add(one, vexp(V::sub(V::zero(), x))));
}

// tanh(x) = 1 − 2 / (e^{2x} + 1): exact at ±1 for large |x| (vexp clamps), absolute error a few
// f32 ulps near 0.
inline V::F vtanh(V::F x) {
  const V::F one = V::set1(1.0f), two = V::set1(2.0f);
  return V::sub(one, V::div(two, V::add(vexp(V::mul(two, x)), one)));
}

// The cell update of one row from its gate pre-activations `g` (input, forget, cell, output:
// torch's order, `dim` each): c = f·c + i·g̃, h = o·tanh(c).
void cell(const float* g, int64_t dim, float* h, float* c) {
  for (int64_t j = 0; j < dim; j += V::N) {
    const int64_t n = dim - j;
    const V::F in = sigmoid(V::load_part(g + j, n));
    const V::F forget = sigmoid(V::load_part(g + dim + j, n));
    const V::F cand = vtanh(V::load_part(g + 2 * dim + j, n));
    const V::F out = sigmoid(V::load_part(g + 3 * dim + j, n));
    const V::F cn = V::fmadd(forget, V::load_part(c + j, n), V::mul(in, cand));
    V::store_part(c + j, cn, n);
    V::store_part(h + j, V::mul(out, vtanh(cn)), n);
  }
}

// acc += in over `count` values.
void add_into(float* acc, const float* in, int64_t count) {
  for (int64_t i = 0; i < count; i += V::N)
    V::store_part(acc + i, V::add(V::load_part(acc + i, count - i), V::load_part(in + i, count - i)), count - i);
}

}  // namespace

// The layer on this path; the caller has checked the sizes.
int32_t lstm_layer(const float* gates_in, int64_t steps, int64_t batch, int64_t dim, const void* w_hh,
                   int32_t dtype, float* h, float* c, float* out) {
  thread_local std::vector<float> gates;
  const int64_t width = 4 * dim;
  gates.resize(static_cast<size_t>(batch * width));
  for (int64_t t = 0; t < steps; ++t) {
    gemv_f32(h, batch, w_hh, nullptr, width, dim, dtype, gates.data(), false);
    add_into(gates.data(), gates_in + t * batch * width, batch * width);
    for (int64_t b = 0; b < batch; ++b) cell(gates.data() + b * width, dim, h + b * dim, c + b * dim);
    std::copy(h, h + batch * dim, out + t * batch * dim);
  }
  return 0;
}

}  // namespace MAESTRO_NS
}  // namespace maestro

#else  // the entry point, compiled once

#define MAESTRO_SELF "lstm.cpp"
#include "foreach_isa.h"

using namespace maestro;

extern "C" {

// Runs `steps` frames of one LSTM layer for `batch` (1..=kMaxStepRows) rows on kernel path `isa`,
// row-major, contiguous: `gates_in` (steps, batch, 4·dim) f32 holds each frame's
// x·W_ihᵀ + b_ih + b_hh; `w_hh` is (4·dim, dim) in `dtype` (F32, F16 or BF16); `h` and `c`
// (batch, dim) f32 hold the state in and out; `out` (steps, batch, dim) f32 receives every frame's
// h. Returns 0, or -1 (nothing written) outside what it handles.
int32_t maestro_lstm_layer(int32_t isa, const float* gates_in, int64_t steps, int64_t batch, int64_t dim,
                           const void* w_hh, int32_t dtype, float* h, float* c, float* out) {
  if (steps < 0 || batch < 1 || batch > kMaxStepRows || dim < 1 || !isa_supported(isa)) return -1;
  if (dtype != F32 && dtype != F16 && dtype != BF16) return -1;
  MAESTRO_DISPATCH(isa, lstm_layer(gates_in, steps, batch, dim, w_hh, dtype, h, c, out))
}

}  // extern "C"

#endif  // MAESTRO_PASS
