// The AVX-512 vector type (16 f32 lanes); included by simd.h. Tails use AVX-512 masks.
#pragma once

namespace maestro {

struct Avx512 {
  using F = __m512;
  static constexpr int64_t N = 16;
  // Whether int8 products quantise the activations (simd_vnni.h's types); here they stay f32.
  static constexpr bool kVnni = false;

  // Weight rows a matrix-vector pass streams at once for `m` activation rows, within 32 registers
  // of accumulators.
  static constexpr int slots(int64_t m) { return m <= 2 ? 8 : (m <= 4 ? 4 : (m <= 12 ? 2 : 1)); }

  MAESTRO_AVX512 static __mmask16 mask(int64_t count) {
    return count >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << count) - 1u);
  }
  MAESTRO_AVX512 static F zero() { return _mm512_setzero_ps(); }
  MAESTRO_AVX512 static F set1(float v) { return _mm512_set1_ps(v); }
  MAESTRO_AVX512 static F load(const float* p) { return _mm512_loadu_ps(p); }
  MAESTRO_AVX512 static void store(float* p, F v) { _mm512_storeu_ps(p, v); }
  // The first `count` lanes of `p` (any count: N or more is a full load), the others `fill`.
  MAESTRO_AVX512 static F load_part(const float* p, int64_t count, float fill = 0.f) {
    return _mm512_mask_loadu_ps(_mm512_set1_ps(fill), mask(count), p);
  }
  MAESTRO_AVX512 static void store_part(float* p, F v, int64_t count) { _mm512_mask_storeu_ps(p, mask(count), v); }

  MAESTRO_AVX512 static F widen_bits(__m256i raw, int32_t dtype) {
    if (dtype == F16) return _mm512_cvtph_ps(raw);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(raw), 16));
  }
  // Elements i..i+16 of `p` (element type `dtype`) as f32.
  MAESTRO_AVX512 static F load_dt(const void* p, int64_t i, int32_t dtype) {
    if (dtype == F32) return _mm512_loadu_ps(static_cast<const float*>(p) + i);
    if (dtype == I8)
      return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(
          reinterpret_cast<const __m128i*>(static_cast<const int8_t*>(p) + i))));
    return widen_bits(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(static_cast<const uint16_t*>(p) + i)), dtype);
  }
  // ---- int4 against 8-bit activations (cpu_kernels.cpp, `gemv_q4`) ----
  static constexpr bool kQ4Dot = true;
  using I = __m512i;
  // Code bytes one step of the int4 product takes: 4 groups, 128 inputs.
  static constexpr int64_t QN = 64;
  MAESTRO_AVX512 static I iload(const void* p) { return _mm512_loadu_si512(p); }
  MAESTRO_AVX512 static F to_float(I v) { return _mm512_cvtepi32_ps(v); }
  // `bytes` (≤ QN) code bytes of `p`, the rest zero, split into their low nibbles (returned) and
  // high nibbles (`hi`).
  MAESTRO_AVX512 static I q4_codes(const uint8_t* p, int64_t bytes, I& hi) {
    const I raw = bytes >= QN ? _mm512_loadu_si512(p) : _mm512_maskz_loadu_epi8((1ull << bytes) - 1, p);
    const I low = _mm512_set1_epi8(0x0F);
    hi = _mm512_and_si512(_mm512_srli_epi16(raw, 4), low);
    return _mm512_and_si512(raw, low);
  }
  // `count` (≤ 4) f16 group scales at `p` as f32, each in the four lanes its group's products land in.
  MAESTRO_AVX512 static F q4_scales(const uint8_t* p, int64_t count) {
    const __m128i raw =
        count >= 4 ? _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)) : _mm_maskz_loadu_epi16((1u << count) - 1, p);
    const __m512i spread = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
    return _mm512_permutexvar_ps(spread, _mm512_castps128_ps512(_mm_cvtph_ps(raw)));
  }
  // acc + Σ u · s over each int32 lane's four byte pairs, u unsigned and at most 15 (so the 16-bit
  // pair sums of vpmaddubsw cannot saturate), s signed; the VNNI types do it in one instruction.
  MAESTRO_AVX512 static I q4dot(I acc, I u, I s) {
    return _mm512_add_epi32(acc, _mm512_madd_epi16(_mm512_maddubs_epi16(u, s), _mm512_set1_epi16(1)));
  }

  // One int4 group (isa.h: 16 code bytes at `p`, scale `d`) as f32 (q − 8) · d, inputs in order.
  MAESTRO_AVX512 static void q4_widen(const uint8_t* p, float d, F* out) {
    const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    const __m128i low = _mm_set1_epi8(0x0F), eight = _mm_set1_epi8(8);
    const __m128i lo = _mm_sub_epi8(_mm_and_si128(bytes, low), eight);
    const __m128i hi = _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(bytes, 4), low), eight);
    const F dv = _mm512_set1_ps(d);
    out[0] = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(lo)), dv);
    out[1] = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(hi)), dv);
  }
  // As `load_dt`, the first `count` lanes (the others zero).
  MAESTRO_AVX512 static F load_dt_part(const void* p, int64_t i, int32_t dtype, int64_t count) {
    const __mmask16 m = mask(count);
    if (dtype == F32) return _mm512_maskz_loadu_ps(m, static_cast<const float*>(p) + i);
    if (dtype == I8)
      return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(m, static_cast<const int8_t*>(p) + i)));
    return widen_bits(_mm256_maskz_loadu_epi16(m, static_cast<const uint16_t*>(p) + i), dtype);
  }
  // The first `count` lanes of `v` as elements i.. of `p` (element type `dtype`, not I8).
  MAESTRO_AVX512 static void store_dt_part(void* p, int64_t i, int32_t dtype, F v, int64_t count) {
    const __mmask16 m = mask(count);
    if (dtype == F32) return _mm512_mask_storeu_ps(static_cast<float*>(p) + i, m, v);
    const __m256i h = dtype == F16 ? _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC) : to_bf16(v);
    _mm256_mask_storeu_epi16(static_cast<uint16_t*>(p) + i, m, h);
  }
  MAESTRO_AVX512 static __m256i to_bf16(F v) {
    const __m512i bits = _mm512_castps_si512(v);
    const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(bits, 16), _mm512_set1_epi32(1));
    __m512i rounded = _mm512_srli_epi32(_mm512_add_epi32(_mm512_add_epi32(bits, _mm512_set1_epi32(0x7FFF)), lsb), 16);
    rounded = _mm512_mask_mov_epi32(rounded, _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q), _mm512_set1_epi32(0x7FC0));
    return _mm512_cvtepi32_epi16(rounded);
  }

  MAESTRO_AVX512 static F add(F a, F b) { return _mm512_add_ps(a, b); }
  MAESTRO_AVX512 static F sub(F a, F b) { return _mm512_sub_ps(a, b); }
  MAESTRO_AVX512 static F mul(F a, F b) { return _mm512_mul_ps(a, b); }
  MAESTRO_AVX512 static F div(F a, F b) { return _mm512_div_ps(a, b); }
  MAESTRO_AVX512 static F min(F a, F b) { return _mm512_min_ps(a, b); }
  MAESTRO_AVX512 static F max(F a, F b) { return _mm512_max_ps(a, b); }
  MAESTRO_AVX512 static F abs(F a) { return _mm512_abs_ps(a); }
  // a · b + c and c − a · b, fused.
  MAESTRO_AVX512 static F fmadd(F a, F b, F c) { return _mm512_fmadd_ps(a, b, c); }
  MAESTRO_AVX512 static F fnmadd(F a, F b, F c) { return _mm512_fnmadd_ps(a, b, c); }
  MAESTRO_AVX512 static F round(F a) { return _mm512_roundscale_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
  // p · 2^n for whole-valued n.
  MAESTRO_AVX512 static F scale2(F p, F n) { return _mm512_scalef_ps(p, n); }
  // |mag| with the sign of `sign`.
  MAESTRO_AVX512 static F copysign(F mag, F sign) {
    const __m512i s = _mm512_and_si512(_mm512_castps_si512(sign), _mm512_set1_epi32(INT32_MIN));
    return _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(_mm512_abs_ps(mag)), s));
  }
  MAESTRO_AVX512 static float reduce_add(F a) { return _mm512_reduce_add_ps(a); }
  MAESTRO_AVX512 static float reduce_max(F a) { return _mm512_reduce_max_ps(a); }
};

}  // namespace maestro
