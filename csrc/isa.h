// What every kernel source and its callers share: element types, row limits, the instruction-set
// paths and each path's entry points (defined once per path by `foreach_isa.h`).
#pragma once

#include <cstdint>

namespace maestro {

// Element types: I8 and I4 only for weights. I8 rows have per-row f32 scales beside them; an I4
// row carries its own scales (`q4_row_bytes`).
enum Dtype : int32_t { F32 = 0, F16 = 1, BF16 = 2, I8 = 3, I4 = 4 };

// int4 weights, llama.cpp's Q4_0 arithmetic: each group of kQ4Group inputs of a row has one f16
// scale d and 4-bit codes q (0..15) for the values (q − 8) · d. A row of k inputs is padded with
// zeros (code 8) to whole groups and stored as its codes, two per byte, then its scales: group g's
// byte j holds input 32g + j in the low nibble and 32g + 16 + j in the high one, so one 16-byte
// load widens to the group's two halves in order; the f16 scales follow the row's last code byte.
// One stream per row, nothing beside it.
constexpr int64_t kQ4Group = 32;
constexpr int64_t q4_groups(int64_t k) { return (k + kQ4Group - 1) / kQ4Group; }
constexpr int64_t q4_row_bytes(int64_t k) { return q4_groups(k) * (kQ4Group / 2 + 2); }

// The kernel paths (numbers, not ranks). Rust's `kernels::Path` mirrors them. The VNNI paths are
// their width's path whose int8 products quantise the activations and multiply in int32.
enum Isa : int32_t { kGeneric = 0, kAvx2 = 1, kAvx512 = 2, kAvx2Vnni = 3, kAvx512Vnni = 4 };

// Activation rows one decoding step or LSTM frame takes (four guided requests); `gemv_f32` takes
// up to kMaxPassRows in one pass over the weights (a short prompt's tokens). Rust mirrors both as
// `kernels::MAX_ROWS` and `kernels::MAX_PASS_ROWS`.
constexpr int64_t kMaxStepRows = 8;
constexpr int64_t kMaxPassRows = 16;

// A VNNI path quantises an int8 product's activations only above this many rows. At one guided
// request (2 rows) the f32-activation kernel streams the weights as fast as the int32 dot products
// (both bound by memory; BENCHMARKS.md, "Quantised activations above two rows") and adds half the
// KL; at 8 rows VNNI is twice as fast. Rust mirrors it as `kernels::QUANTISE_ABOVE_ROWS`.
constexpr int64_t kQuantiseAboveRows = 2;

// Bytes per element of `dtype` (not I4, whose rows `q4_row_bytes` sizes).
constexpr int64_t elt_size(int32_t dtype) { return dtype == F32 ? 4 : (dtype == I8 ? 1 : 2); }

// Bytes of one weight row of `k` elements of `dtype`.
constexpr int64_t row_bytes(int64_t k, int32_t dtype) { return dtype == I4 ? q4_row_bytes(k) : k * elt_size(dtype); }

// Whether this CPU runs path `isa`: AVX-512 F/BW/VL/DQ with F16C and FMA (and AVX-512 VNNI);
// AVX2 with F16C and FMA (and AVX-VNNI); the generic path everywhere.
inline bool isa_supported(int32_t isa) {
  switch (isa) {
    case kAvx512Vnni: return isa_supported(kAvx512) && __builtin_cpu_supports("avx512vnni");
    case kAvx2Vnni: return isa_supported(kAvx2) && __builtin_cpu_supports("avxvnni");
    case kGeneric: return true;
    case kAvx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
    case kAvx512:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
             __builtin_cpu_supports("f16c") && __builtin_cpu_supports("fma");
    default: return false;
  }
}

// y[r][o] (+)= scale[o] · Σ_i x[r][i] · w[o][i] for `m` (1..=kMaxPassRows) f32 rows `x` (m × k),
// weights `w` (n rows of `row_bytes(k, dtype)`), per-row `scale` (only for I8, else null) and f32
// `y` (m × n), over libtorch's threads. With `accumulate` the products are added to `y`. For I8, `scale` holds 2n
// floats: the n row scales, then the n rows' sums of their int8 weights (for the VNNI paths).
#define MAESTRO_DECLARE_PATH(ns)                                                                        \
  namespace ns {                                                                                        \
  void gemv_f32(const float* x, int64_t m, const void* w, const float* scale, int64_t n, int64_t k,    \
                int32_t dtype, float* y, bool accumulate);                                              \
  void widen(const void* src, int32_t dtype, int64_t count, float* dst);                                \
  void narrow(const float* src, int64_t count, int32_t dtype, void* dst);                               \
  }

MAESTRO_DECLARE_PATH(avx512_vnni)
MAESTRO_DECLARE_PATH(avx512)
MAESTRO_DECLARE_PATH(avx2_vnni)
MAESTRO_DECLARE_PATH(avx2)
MAESTRO_DECLARE_PATH(generic)

}  // namespace maestro

// `return <path>::call` for path `isa` (the generic path for any unknown number).
#define MAESTRO_DISPATCH(isa, call)    \
  switch (isa) {                       \
    case ::maestro::kAvx512Vnni:       \
      return ::maestro::avx512_vnni::call; \
    case ::maestro::kAvx2Vnni:         \
      return ::maestro::avx2_vnni::call; \
    case ::maestro::kAvx512:           \
      return ::maestro::avx512::call;  \
    case ::maestro::kAvx2:             \
      return ::maestro::avx2::call;    \
    default:                           \
      return ::maestro::generic::call; \
  }
