// The portable vector type: 8 f32 lanes as a plain array, compiled for baseline x86-64 (SSE2),
// which the compiler vectorises; f16 and bf16 convert in software. Included by simd.h.
#pragma once

namespace maestro {

struct Generic {
  struct F {
    float v[8];
  };
  static constexpr int64_t N = 8;
  // Whether int8 products quantise the activations (simd_vnni.h's types); here they stay f32.
  static constexpr bool kVnni = false;

  static constexpr int slots(int64_t m) { return m <= 1 ? 4 : (m <= 2 ? 2 : 1); }

  template <class Op>
  static F map(F a, Op op) {
    for (float& x : a.v) x = op(x);
    return a;
  }
  template <class Op>
  static F zip(F a, F b, Op op) {
    for (int j = 0; j < 8; ++j) a.v[j] = op(a.v[j], b.v[j]);
    return a;
  }

  static F zero() { return set1(0.f); }
  static F set1(float x) {
    F r;
    for (float& v : r.v) v = x;
    return r;
  }
  static F load(const float* p) {
    F r;
    std::memcpy(r.v, p, sizeof r.v);
    return r;
  }
  static void store(float* p, F v) { std::memcpy(p, v.v, sizeof v.v); }
  static F load_part(const float* p, int64_t count, float fill = 0.f) {
    F r = set1(fill);
    std::memcpy(r.v, p, (count < N ? count : N) * sizeof(float));
    return r;
  }
  static void store_part(float* p, F v, int64_t count) { std::memcpy(p, v.v, (count < N ? count : N) * sizeof(float)); }
  static F load_dt(const void* p, int64_t i, int32_t dtype) { return load_dt_part(p, i, dtype, N); }
  // Whether int4 products quantise the activations (`gemv_q4`); here the codes widen to f32.
  static constexpr bool kQ4Dot = false;

  // One int4 group (isa.h: 16 code bytes at `p`, scale `d`) as f32 (q − 8) · d, inputs in order.
  static void q4_widen(const uint8_t* p, float d, F* out) {
    for (int j = 0; j < 16; ++j) {
      out[j / 8].v[j % 8] = static_cast<float>((p[j] & 0x0F) - 8) * d;
      out[2 + j / 8].v[j % 8] = static_cast<float>((p[j] >> 4) - 8) * d;
    }
  }
  // One loop per element type, so the full-width int8 and bf16 loops vectorise.
  static F load_dt_part(const void* p, int64_t i, int32_t dtype, int64_t count) {
    const int64_t n = count < N ? count : N;
    F r = zero();
    switch (dtype) {
      case F32: return load_part(static_cast<const float*>(p) + i, count);
      case I8: {
        const int8_t* s = static_cast<const int8_t*>(p) + i;
        for (int64_t j = 0; j < n; ++j) r.v[j] = static_cast<float>(s[j]);
        return r;
      }
      case BF16: {
        const uint16_t* s = static_cast<const uint16_t*>(p) + i;
        uint32_t bits[8] = {};
        for (int64_t j = 0; j < n; ++j) bits[j] = static_cast<uint32_t>(s[j]) << 16;
        std::memcpy(r.v, bits, sizeof bits);
        return r;
      }
      default: {
        const uint16_t* s = static_cast<const uint16_t*>(p) + i;
        for (int64_t j = 0; j < n; ++j) r.v[j] = half_to_float(s[j]);
        return r;
      }
    }
  }
  static void store_dt_part(void* p, int64_t i, int32_t dtype, F v, int64_t count) {
    for (int64_t j = 0; j < count && j < N; ++j) scalar_put(p, i + j, dtype, v.v[j]);
  }

  static F add(F a, F b) { return zip(a, b, [](float x, float y) { return x + y; }); }
  static F sub(F a, F b) { return zip(a, b, [](float x, float y) { return x - y; }); }
  static F mul(F a, F b) { return zip(a, b, [](float x, float y) { return x * y; }); }
  static F div(F a, F b) { return zip(a, b, [](float x, float y) { return x / y; }); }
  static F min(F a, F b) { return zip(a, b, [](float x, float y) { return x < y ? x : y; }); }
  static F max(F a, F b) { return zip(a, b, [](float x, float y) { return x > y ? x : y; }); }
  static F abs(F a) { return map(a, [](float x) { return std::fabs(x); }); }
  // Not fused: baseline x86-64 has no FMA instruction, and std::fma would be a library call.
  static F fmadd(F a, F b, F c) {
    for (int j = 0; j < 8; ++j) c.v[j] += a.v[j] * b.v[j];
    return c;
  }
  static F fnmadd(F a, F b, F c) {
    for (int j = 0; j < 8; ++j) c.v[j] -= a.v[j] * b.v[j];
    return c;
  }
  static F round(F a) { return map(a, [](float x) { return std::nearbyint(x); }); }
  static F scale2(F p, F n) { return zip(p, n, [](float x, float e) { return std::ldexp(x, static_cast<int>(e)); }); }
  static F copysign(F mag, F sign) { return zip(mag, sign, [](float m, float s) { return std::copysign(m, s); }); }
  static float reduce_add(F a) {
    // Pairwise, as the vector paths add their lanes.
    float s[4];
    for (int j = 0; j < 4; ++j) s[j] = a.v[j] + a.v[j + 4];
    return (s[0] + s[2]) + (s[1] + s[3]);
  }
  static float reduce_max(F a) {
    float m = a.v[0];
    for (float x : a.v) m = x > m ? x : m;
    return m;
  }
};

}  // namespace maestro
