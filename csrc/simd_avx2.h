// The AVX2 vector type (8 f32 lanes, with FMA and F16C: x86-64-v3); included by simd.h. AVX2 has
// no masked 16-bit loads, so tails go through a zeroed stack buffer.
#pragma once

namespace maestro {

struct Avx2 {
  using F = __m256;
  static constexpr int64_t N = 8;
  // Whether int8 products quantise the activations (simd_vnni.h's types); here they stay f32.
  static constexpr bool kVnni = false;

  // Weight rows a matrix-vector pass streams at once for `m` activation rows, within 16 registers.
  static constexpr int slots(int64_t m) { return m <= 1 ? 8 : (m <= 2 ? 4 : (m <= 5 ? 2 : 1)); }

  MAESTRO_AVX2 static F zero() { return _mm256_setzero_ps(); }
  MAESTRO_AVX2 static F set1(float v) { return _mm256_set1_ps(v); }
  MAESTRO_AVX2 static F load(const float* p) { return _mm256_loadu_ps(p); }
  MAESTRO_AVX2 static void store(float* p, F v) { _mm256_storeu_ps(p, v); }
  // Lanes below `count` set (all for N or more).
  MAESTRO_AVX2 static __m256i mask(int64_t count) {
    const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(count < N ? count : N)), lanes);
  }
  // The first `count` lanes of `p` (any count: N or more is a full load), the others `fill`.
  MAESTRO_AVX2 static F load_part(const float* p, int64_t count, float fill = 0.f) {
    if (count >= N) return _mm256_loadu_ps(p);
    const __m256i m = mask(count);
    return _mm256_blendv_ps(_mm256_set1_ps(fill), _mm256_maskload_ps(p, m), _mm256_castsi256_ps(m));
  }
  MAESTRO_AVX2 static void store_part(float* p, F v, int64_t count) {
    if (count >= N) return _mm256_storeu_ps(p, v);
    _mm256_maskstore_ps(p, mask(count), v);
  }

  // Elements i..i+8 of `p` (element type `dtype`) as f32.
  MAESTRO_AVX2 static F load_dt(const void* p, int64_t i, int32_t dtype) {
    switch (dtype) {
      case F32: return _mm256_loadu_ps(static_cast<const float*>(p) + i);
      case I8: {
        const __m128i raw = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(static_cast<const int8_t*>(p) + i));
        return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(raw));
      }
      default: {
        const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(p) + i));
        if (dtype == F16) return _mm256_cvtph_ps(raw);
        return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(raw), 16));
      }
    }
  }
  // ---- int4 against 8-bit activations (cpu_kernels.cpp, `gemv_q4`) ----
  static constexpr bool kQ4Dot = true;
  using I = __m256i;
  // Code bytes one step of the int4 product takes: 2 groups, 64 inputs.
  static constexpr int64_t QN = 32;
  MAESTRO_AVX2 static I iload(const void* p) { return _mm256_loadu_si256(static_cast<const I*>(p)); }
  MAESTRO_AVX2 static F to_float(I v) { return _mm256_cvtepi32_ps(v); }
  // `bytes` (≤ QN) code bytes of `p`, the rest zero, split into their low nibbles (returned) and
  // high nibbles (`hi`). AVX2 has no masked byte load: a short step goes through a zeroed buffer.
  MAESTRO_AVX2 static I q4_codes(const uint8_t* p, int64_t bytes, I& hi) {
    alignas(32) uint8_t buf[32] = {};
    if (bytes < QN) std::memcpy(buf, p, static_cast<size_t>(bytes));
    const I raw = bytes >= QN ? _mm256_loadu_si256(reinterpret_cast<const I*>(p)) : _mm256_load_si256(reinterpret_cast<const I*>(buf));
    const I low = _mm256_set1_epi8(0x0F);
    hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), low);
    return _mm256_and_si256(raw, low);
  }
  // `count` (≤ 2) f16 group scales at `p` as f32, each in the four lanes its group's products land in.
  MAESTRO_AVX2 static F q4_scales(const uint8_t* p, int64_t count) {
    uint32_t bits = 0;
    std::memcpy(&bits, p, static_cast<size_t>(count < 2 ? count : 2) * 2);
    const __m128 d = _mm_cvtph_ps(_mm_cvtsi32_si128(static_cast<int>(bits)));
    return _mm256_permutevar8x32_ps(_mm256_castps128_ps256(d), _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1));
  }
  // acc + Σ u · s over each int32 lane's four byte pairs, u unsigned and at most 15 (so the 16-bit
  // pair sums of vpmaddubsw cannot saturate), s signed; the VNNI type does it in one instruction.
  MAESTRO_AVX2 static I q4dot(I acc, I u, I s) {
    return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)));
  }

  // One int4 group (isa.h: 16 code bytes at `p`, scale `d`) as f32 (q − 8) · d, inputs in order.
  MAESTRO_AVX2 static void q4_widen(const uint8_t* p, float d, F* out) {
    const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    const __m128i low = _mm_set1_epi8(0x0F), eight = _mm_set1_epi8(8);
    const __m128i lo = _mm_sub_epi8(_mm_and_si128(bytes, low), eight);
    const __m128i hi = _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(bytes, 4), low), eight);
    const F dv = _mm256_set1_ps(d);
    out[0] = times(lo, dv);
    out[1] = times(_mm_srli_si128(lo, 8), dv);
    out[2] = times(hi, dv);
    out[3] = times(_mm_srli_si128(hi, 8), dv);
  }
  // The low 8 signed bytes of `v` as f32, times `d`.
  MAESTRO_AVX2 static F times(__m128i v, F d) { return _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v)), d); }
  // As `load_dt`, the first `count` lanes (the others zero).
  MAESTRO_AVX2 static F load_dt_part(const void* p, int64_t i, int32_t dtype, int64_t count) {
    if (count >= N) return load_dt(p, i, dtype);
    alignas(32) unsigned char buf[32] = {};
    std::memcpy(buf, static_cast<const char*>(p) + i * elt_size(dtype), count * elt_size(dtype));
    return load_dt(buf, 0, dtype);
  }
  // The first `count` lanes of `v` as elements i.. of `p` (element type `dtype`, not I8).
  MAESTRO_AVX2 static void store_dt_part(void* p, int64_t i, int32_t dtype, F v, int64_t count) {
    const int64_t n = count < N ? count : N;
    if (dtype == F32) return store_part(static_cast<float*>(p) + i, v, n);
    alignas(32) uint16_t bits[8];
    if (dtype == F16) {
      _mm_store_si128(reinterpret_cast<__m128i*>(bits), _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    } else {
      alignas(32) float f[8];
      _mm256_store_ps(f, v);
      for (int j = 0; j < 8; ++j) bits[j] = float_to_bf16(f[j]);
    }
    std::memcpy(static_cast<uint16_t*>(p) + i, bits, n * sizeof(uint16_t));
  }

  MAESTRO_AVX2 static F add(F a, F b) { return _mm256_add_ps(a, b); }
  MAESTRO_AVX2 static F sub(F a, F b) { return _mm256_sub_ps(a, b); }
  MAESTRO_AVX2 static F mul(F a, F b) { return _mm256_mul_ps(a, b); }
  MAESTRO_AVX2 static F div(F a, F b) { return _mm256_div_ps(a, b); }
  MAESTRO_AVX2 static F min(F a, F b) { return _mm256_min_ps(a, b); }
  MAESTRO_AVX2 static F max(F a, F b) { return _mm256_max_ps(a, b); }
  MAESTRO_AVX2 static F abs(F a) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), a); }
  MAESTRO_AVX2 static F fmadd(F a, F b, F c) { return _mm256_fmadd_ps(a, b, c); }
  MAESTRO_AVX2 static F fnmadd(F a, F b, F c) { return _mm256_fnmadd_ps(a, b, c); }
  MAESTRO_AVX2 static F round(F a) { return _mm256_round_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
  // p · 2^n for whole-valued n in [-150, 128], in two factors so each is a normal power of two
  // (what AVX-512's scalef does in one).
  MAESTRO_AVX2 static F scale2(F p, F n) {
    const __m256i ni = _mm256_cvtps_epi32(n);
    const __m256i half = _mm256_srai_epi32(ni, 1);
    const __m256i rest = _mm256_sub_epi32(ni, half);
    return _mm256_mul_ps(_mm256_mul_ps(p, pow2(half)), pow2(rest));
  }
  MAESTRO_AVX2 static F pow2(__m256i e) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(e, _mm256_set1_epi32(127)), 23));
  }
  MAESTRO_AVX2 static F copysign(F mag, F sign) {
    const __m256 s = _mm256_set1_ps(-0.0f);
    return _mm256_or_ps(_mm256_andnot_ps(s, mag), _mm256_and_ps(s, sign));
  }
  MAESTRO_AVX2 static float reduce_add(F a) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  MAESTRO_AVX2 static float reduce_max(F a) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
};

}  // namespace maestro
