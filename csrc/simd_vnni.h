// The VNNI vector types: Avx512 and Avx2 plus the byte dot products of AVX-512 VNNI (EVEX
// `vpdpbusd`) and AVX-VNNI (its VEX form); included by simd.h. Every f32 operation is the base
// type's; only the int8 matrix-vector product differs (`cpu_kernels.cpp`, `gemv_vnni`): it
// quantises the activation rows to bytes and sums u8 × s8 products in int32 lanes, four bytes per
// lane per instruction.
//
// The instruction multiplies *unsigned* bytes by signed ones. Each activation row is quantised to
// u8 with its own scale and zero point (x ≈ scale · (u − zero)); the kernel then takes zero · Σ w
// (each weight row's sum, computed at load) from every row's total, the offset trick oneDNN and
// llama.cpp use. Weight tails load masked (or through a zeroed buffer), so padding lanes multiply
// zeros whatever the activation buffer holds there.
#pragma once

namespace maestro {

struct Avx512Vnni : Avx512 {
  static constexpr bool kVnni = true;
  using I = __m512i;
  // Bytes one dot-product instruction takes per operand.
  static constexpr int64_t QN = 64;

  MAESTRO_AVX512_VNNI static I qzero() { return _mm512_setzero_si512(); }
  MAESTRO_AVX512_VNNI static I qload(const uint8_t* p) { return _mm512_loadu_si512(p); }
  MAESTRO_AVX512_VNNI static I wload(const int8_t* p) { return _mm512_loadu_si512(p); }
  // The first `count` (< QN) weight bytes of `p`, the others zero.
  MAESTRO_AVX512_VNNI static I wload_part(const int8_t* p, int64_t count) {
    return _mm512_maskz_loadu_epi8((static_cast<__mmask64>(1) << count) - 1, p);
  }
  // acc + Σ u · w over each lane's four bytes.
  MAESTRO_AVX512_VNNI static I dot(I acc, I u, I w) { return _mm512_dpbusd_epi32(acc, u, w); }
  MAESTRO_AVX512_VNNI static I q4dot(I acc, I u, I s) { return _mm512_dpbusd_epi32(acc, u, s); }
  MAESTRO_AVX512_VNNI static int32_t qreduce(I acc) { return _mm512_reduce_add_epi32(acc); }
};

struct Avx2Vnni : Avx2 {
  static constexpr bool kVnni = true;
  using I = __m256i;
  static constexpr int64_t QN = 32;

  MAESTRO_AVX2_VNNI static I qzero() { return _mm256_setzero_si256(); }
  MAESTRO_AVX2_VNNI static I qload(const uint8_t* p) { return _mm256_loadu_si256(reinterpret_cast<const I*>(p)); }
  MAESTRO_AVX2_VNNI static I wload(const int8_t* p) { return _mm256_loadu_si256(reinterpret_cast<const I*>(p)); }
  // AVX2 has no masked byte load: the tail goes through a zeroed buffer.
  MAESTRO_AVX2_VNNI static I wload_part(const int8_t* p, int64_t count) {
    alignas(32) int8_t buf[32] = {};
    std::memcpy(buf, p, static_cast<size_t>(count));
    return _mm256_load_si256(reinterpret_cast<const I*>(buf));
  }
  MAESTRO_AVX2_VNNI static I dot(I acc, I u, I w) { return _mm256_dpbusd_avx_epi32(acc, u, w); }
  MAESTRO_AVX2_VNNI static I q4dot(I acc, I u, I s) { return _mm256_dpbusd_avx_epi32(acc, u, s); }
  MAESTRO_AVX2_VNNI static int32_t qreduce(I acc) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(acc), _mm256_extracti128_si256(acc, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
    return _mm_cvtsi128_si32(s);
  }
};

}  // namespace maestro
