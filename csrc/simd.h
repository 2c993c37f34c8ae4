// AVX-512 helpers shared by the CPU kernels: 16-lane loads that widen f16 / bf16 to f32 (with a
// masked form for lengths that are not a multiple of 16), stores that round back, and the exp and
// erf approximations the decoder step needs. Every function is compiled for AVX-512 (`MAESTRO_SIMD`)
// and only called after `maestro_kernels_supported()` said yes.
#pragma once

#include <immintrin.h>

#include <climits>
#include <cstdint>
#include <cstring>

#define MAESTRO_SIMD __attribute__((target("avx512f,avx512bw,avx512vl,f16c,fma")))

namespace maestro {

enum Dtype : int32_t { F32 = 0, F16 = 1, BF16 = 2 };

// Activation rows one decoding step or LSTM frame takes (four guided requests); `gemv_f32` takes
// up to kMaxPassRows in one pass over the weights (a short prompt's tokens). Rust mirrors both as
// `kernels::MAX_ROWS` and `kernels::MAX_PASS_ROWS`.
constexpr int64_t kMaxStepRows = 8;
constexpr int64_t kMaxPassRows = 16;

// Bytes per element of `dtype`.
constexpr int64_t elt_size(int32_t dtype) { return dtype == F32 ? 4 : 2; }

// The lanes of a 16-wide tail of `count` elements (1..=16).
inline __mmask16 tail_mask(int64_t count) {
  return count >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << count) - 1u);
}

MAESTRO_SIMD inline __m512 widen_bits(__m256i raw, int32_t dtype) {
  if (dtype == F16) return _mm512_cvtph_ps(raw);
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(raw), 16));
}

// Elements i..i+16 of `p` (element type `dtype`) as f32.
MAESTRO_SIMD inline __m512 load16(const void* p, int64_t i, int32_t dtype) {
  if (dtype == F32) return _mm512_loadu_ps(static_cast<const float*>(p) + i);
  auto raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(static_cast<const uint16_t*>(p) + i));
  return widen_bits(raw, dtype);
}

// As `load16`, reading only the lanes in `mask` (the others are zero).
MAESTRO_SIMD inline __m512 load16_masked(const void* p, int64_t i, int32_t dtype, __mmask16 mask) {
  if (dtype == F32) return _mm512_maskz_loadu_ps(mask, static_cast<const float*>(p) + i);
  return widen_bits(_mm256_maskz_loadu_epi16(mask, static_cast<const uint16_t*>(p) + i), dtype);
}

// f32 lanes rounded to bf16 bits (nearest even; NaN stays a quiet NaN), as c10::BFloat16 does.
MAESTRO_SIMD inline __m256i to_bf16_bits(__m512 v) {
  const __m512i bits = _mm512_castps_si512(v);
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(bits, 16), _mm512_set1_epi32(1));
  __m512i rounded = _mm512_srli_epi32(_mm512_add_epi32(_mm512_add_epi32(bits, _mm512_set1_epi32(0x7FFF)), lsb), 16);
  rounded = _mm512_mask_mov_epi32(rounded, _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q), _mm512_set1_epi32(0x7FC0));
  return _mm512_cvtepi32_epi16(rounded);
}

// `count` f32 values into `dst` (element type `dtype`).
MAESTRO_SIMD inline void narrow(const float* src, int64_t count, int32_t dtype, void* dst) {
  if (dtype == F32) {
    std::memcpy(dst, src, static_cast<size_t>(count) * sizeof(float));
    return;
  }
  auto* out = static_cast<uint16_t*>(dst);
  for (int64_t i = 0; i < count; i += 16) {
    const __mmask16 mask = tail_mask(count - i);
    const __m512 v = _mm512_maskz_loadu_ps(mask, src + i);
    const __m256i h = dtype == F16 ? _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC) : to_bf16_bits(v);
    _mm256_mask_storeu_epi16(out + i, mask, h);
  }
}

// exp(x) as 2^n · p(r) with |r| ≤ ln2 / 2 and a degree-6 polynomial: within 2 ulp over the range
// that matters here; below about -87 it returns 0, which softmax wants for masked scores.
MAESTRO_SIMD inline __m512 exp16(__m512 x) {
  const __m512 log2e = _mm512_set1_ps(1.44269504088896341f);
  const __m512 ln2_hi = _mm512_set1_ps(0.693359375f);
  const __m512 ln2_lo = _mm512_set1_ps(-2.12194440e-4f);
  x = _mm512_max_ps(_mm512_min_ps(x, _mm512_set1_ps(88.0f)), _mm512_set1_ps(-104.0f));
  __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, log2e), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, ln2_hi, x);
  r = _mm512_fnmadd_ps(n, ln2_lo, r);
  __m512 p = _mm512_set1_ps(1.0f / 720);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(p, n);
}

// erf(x) by Abramowitz & Stegun 7.1.26 (absolute error ≤ 1.5e-7): the formula libtorch's own
// AVX-512 GELU uses, so both decoder paths round alike.
MAESTRO_SIMD inline __m512 erf16(__m512 x) {
  const __m512 one = _mm512_set1_ps(1.0f);
  const __m512i sign = _mm512_and_si512(_mm512_castps_si512(x), _mm512_set1_epi32(INT32_MIN));
  const __m512 ax = _mm512_abs_ps(x);
  const __m512 t = _mm512_div_ps(one, _mm512_fmadd_ps(_mm512_set1_ps(0.3275911f), ax, one));
  __m512 r = _mm512_fmadd_ps(_mm512_set1_ps(1.061405429f), t, _mm512_set1_ps(-1.453152027f));
  r = _mm512_fmadd_ps(r, t, _mm512_set1_ps(1.421413741f));
  r = _mm512_fmadd_ps(r, t, _mm512_set1_ps(-0.284496736f));
  r = _mm512_fmadd_ps(r, t, _mm512_set1_ps(0.254829592f));
  const __m512 e = exp16(_mm512_sub_ps(_mm512_setzero_ps(), _mm512_mul_ps(ax, ax)));
  const __m512 y = _mm512_fnmadd_ps(_mm512_mul_ps(r, t), e, one);
  return _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(y), sign));
}

// Whether this CPU runs the kernels: AVX-512 F/BW/VL with F16C and FMA.
inline bool simd_supported() {
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("f16c") && __builtin_cpu_supports("fma");
}

// y[r][o] (+)= Σ_i x[r][i] · w[o][i] for `m` (1..=kMaxPassRows) f32 rows `x` (m × k), weights `w` (n × k, `dtype`)
// and f32 `y` (m × n), over libtorch's threads. With `accumulate` the products are added to `y`.
void gemv_f32(const float* x, int64_t m, const void* w, int64_t n, int64_t k, int32_t dtype, float* y,
              bool accumulate);

}  // namespace maestro
