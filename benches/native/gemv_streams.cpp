// Row order of the matrix-vector product, in isolation: the kernel's old order (8 adjacent weight
// rows at once, prefetching the next 8) against the page walk it uses now (each of 8 slots walks a
// whole 4 KiB page, one row per phase), for f32 and f16 weights, 2 activation rows, 2 threads.
// No libtorch: `make bench-streams` builds and runs it. Arguments: MB of f16 weights (700, about
// musicgen-small's f16 decoder), then the byte offset of the weights from a page boundary (libtorch's
// allocator leaves 64 to 320).
#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#define SIMD __attribute__((target("avx512f,avx512bw,avx512vl,f16c,fma")))

namespace {

constexpr int kSlots = 8;

template <int Bytes>
SIMD inline __m512 load(const void* p, int64_t i) {
  if (Bytes == 4) return _mm512_loadu_ps(static_cast<const float*>(p) + i);
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(static_cast<const uint16_t*>(p) + i)));
}

// Slot a reads row first + stride·a and prefetches row next + stride·a.
template <int Bytes>
SIMD void slots(const float* x, const char* w, int64_t k, int64_t first, int64_t next, int64_t stride, float* y,
                int64_t n) {
  __m512 acc[kSlots][2];
  for (auto& a : acc) a[0] = a[1] = _mm512_setzero_ps();
  for (int64_t i = 0; i < k; i += 16)
    for (int a = 0; a < kSlots; ++a) {
      _mm_prefetch(w + ((next + stride * a) * k + i) * Bytes, _MM_HINT_T0);
      const __m512 v = load<Bytes>(w, (first + stride * a) * k + i);
      acc[a][0] = _mm512_fmadd_ps(v, _mm512_loadu_ps(x + i), acc[a][0]);
      acc[a][1] = _mm512_fmadd_ps(v, _mm512_loadu_ps(x + k + i), acc[a][1]);
    }
  for (int a = 0; a < kSlots; ++a)
    for (int r = 0; r < 2; ++r) y[r * n + first + stride * a] = _mm512_reduce_add_ps(acc[a][r]);
}

template <int Bytes>
void adjacent(const float* x, const char* w, int64_t k, int64_t begin, int64_t end, float* y, int64_t n) {
  for (int64_t o = begin; o + kSlots <= end; o += kSlots) slots<Bytes>(x, w, k, o, o + kSlots, 1, y, n);
}

template <int Bytes>
void page_walk(const float* x, const char* w, int64_t k, int64_t begin, int64_t end, float* y, int64_t n) {
  const int64_t s = std::max<int64_t>(1, 4096 / (k * Bytes));
  for (int64_t o = begin; o + kSlots * s <= end; o += kSlots * s)
    for (int64_t p = 0; p < s; ++p) slots<Bytes>(x, w, k, o + p, p + 1 < s ? o + p + 1 : o + kSlots * s, s, y, n);
}

}  // namespace

int main(int argc, char** argv) {
  const int64_t k = 1024, mb = argc > 1 ? std::atol(argv[1]) : 700, offset = argc > 2 ? std::atol(argv[2]) : 64;
  int64_t n = mb * 1000000 / (k * 2);
  n -= n % 256;
  const size_t bytes = static_cast<size_t>(n * k * 4) + 65536;
  char* base = static_cast<char*>(std::aligned_alloc(4096, bytes));
  std::memset(base, 0x3c, bytes);
  const char* w = base + offset;
  std::vector<float> x(2 * k, 0.01f), y(2 * n);
  omp_set_num_threads(2);
  using Fn = void (*)(const float*, const char*, int64_t, int64_t, int64_t, float*, int64_t);
  auto gbps = [&](Fn fn, int elt) {
    double best = 1e9;
    for (int rep = 0; rep < 5; ++rep) {
      const auto start = std::chrono::steady_clock::now();
#pragma omp parallel
      {
        const int t = omp_get_thread_num();
        const int64_t half = (n / 2) & ~int64_t{255};
        fn(x.data(), w, k, t ? half : 0, t ? n : half, y.data(), n);
      }
      best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    }
    return static_cast<double>(n * k * elt) / best / 1e9;
  };
  std::printf("| round | f32 adjacent | f32 page walk | f16 adjacent | f16 page walk |\n|---:|---:|---:|---:|---:|\n");
  for (int round = 1; round <= 3; ++round)
    std::printf("| %d | %.1f | %.1f | %.1f | %.1f |\n", round, gbps(adjacent<4>, 4), gbps(page_walk<4>, 4),
                gbps(adjacent<2>, 2), gbps(page_walk<2>, 2));
  std::printf("\nGB/s, %ld MB of f16 weights (twice that in f32), rows of %ld, weights %ld bytes past a page.\n",
              static_cast<long>(mb), static_cast<long>(k), static_cast<long>(offset));
  std::free(base);
}
