// The vector types every CPU kernel is written against, one per instruction-set path:
//
//   Avx512  16 f32 lanes, AVX-512 F/BW/VL with F16C and FMA
//   Avx2     8 f32 lanes, AVX2 with FMA and F16C (x86-64-v3)
//   Generic  8 f32 lanes as a plain array: baseline x86-64, vectorised by the compiler
//   Avx512Vnni, Avx2Vnni  the two widths with int8 dot products (simd_vnni.h)
//
// Each kernel source (`cpu_kernels.cpp`, `decoder_step.cpp`, `lstm.cpp`) is written once in
// terms of `V`, one of these types, and compiled once per path by `foreach_isa.h`, which includes
// the source again inside `#pragma GCC target(...)` and a namespace of the path's name. The
// `extern "C"` entry points take the path to run and dispatch to that namespace; Rust picks the
// path at run time (the best this CPU has, under `--cpu-isa`). Why this and not Highway or Rust's
// `pulp`/`multiversion`: see README.md, "CPU kernels".
#pragma once

#include <immintrin.h>

#include <climits>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "isa.h"

#define MAESTRO_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,f16c,fma"), always_inline))
#define MAESTRO_AVX2 __attribute__((target("avx2,f16c,fma"), always_inline))
#define MAESTRO_AVX512_VNNI \
  __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,f16c,fma,avx512vnni"), always_inline))
#define MAESTRO_AVX2_VNNI __attribute__((target("avx2,f16c,fma,avxvnni"), always_inline))

namespace maestro {

// f16 bits as f32, subnormals, infinities and NaN included.
inline float half_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t magnitude = h & 0x7FFFu;
  if (magnitude >= 0x0400u && magnitude < 0x7C00u) {  // normal: rebias the exponent, the common case
    const uint32_t bits = sign | ((magnitude << 13) + 0x38000000u);
    float out;
    std::memcpy(&out, &bits, 4);
    return out;
  }
  const uint32_t exp = (h >> 10) & 0x1Fu, man = h & 0x3FFu;
  uint32_t bits;
  if (exp == 0x1F) {
    bits = sign | 0x7F800000u | (man << 13);
  } else if (exp != 0) {
    bits = sign | ((exp + 112) << 23) | (man << 13);
  } else {
    float v = std::ldexp(static_cast<float>(man), -24);
    std::memcpy(&bits, &v, 4);
    bits |= sign;
  }
  float out;
  std::memcpy(&out, &bits, 4);
  return out;
}

// f32 rounded to the nearest f16 (ties to even; overflow to infinity), as F16C's vcvtps2ph does.
inline uint16_t float_to_half(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
  const uint32_t ax = x & 0x7FFFFFFFu;
  if (ax >= 0x7F800000u) return sign | 0x7C00u | (ax > 0x7F800000u ? 0x200u : 0u);
  if (ax >= 0x477FF000u) return sign | 0x7C00u;  // rounds past 65504
  if (ax < 0x38800000u) {  // below 2^-14: a subnormal, computed exactly in f32 then rounded
    float mag;
    std::memcpy(&mag, &ax, 4);
    return sign | static_cast<uint16_t>(std::nearbyint(mag * 16777216.0f));
  }
  const uint32_t lsb = (ax >> 13) & 1u;
  return sign | static_cast<uint16_t>((ax - 0x38000000u + 0xFFFu + lsb) >> 13);
}

// f32 rounded to bf16 bits (nearest even; NaN stays a quiet NaN), as c10::BFloat16 does.
inline uint16_t float_to_bf16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  if (f != f) return 0x7FC0;
  return static_cast<uint16_t>((x + 0x7FFFu + ((x >> 16) & 1u)) >> 16);
}

// Element `i` of `p` (element type `dtype`) as f32.
inline float scalar_at(const void* p, int64_t i, int32_t dtype) {
  switch (dtype) {
    case F16: return half_to_float(static_cast<const uint16_t*>(p)[i]);
    case BF16: {
      const uint32_t bits = static_cast<uint32_t>(static_cast<const uint16_t*>(p)[i]) << 16;
      float out;
      std::memcpy(&out, &bits, 4);
      return out;
    }
    case I8: return static_cast<float>(static_cast<const int8_t*>(p)[i]);
    default: return static_cast<const float*>(p)[i];
  }
}

// `v` stored as element `i` of `p` (element type `dtype`; never I8, which only weights use).
inline void scalar_put(void* p, int64_t i, int32_t dtype, float v) {
  if (dtype == F32) static_cast<float*>(p)[i] = v;
  else static_cast<uint16_t*>(p)[i] = dtype == F16 ? float_to_half(v) : float_to_bf16(v);
}

}  // namespace maestro

#include "simd_avx512.h"
#include "simd_avx2.h"
#include "simd_generic.h"
#include "simd_vnni.h"
