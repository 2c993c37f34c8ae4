// The decoder step's thread team (team.h): chunk claiming, brief spinning, sleeping helpers.

#include "team.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <chrono>
#include <memory>

namespace maestro {

std::atomic<bool> g_thread_team{true};

namespace {

// How long a helper spins for the next loop before it sleeps: a step's loops come microseconds
// apart, steps themselves a sampling and a chunk of EnCodec apart. Measured at 50, 200 and 1000 µs
// (BENCHMARKS.md): longer spins took cores from libtorch's threads between steps.
constexpr auto kSpin = std::chrono::microseconds(50);

// Chunks per thread. The claim, not the chunk count, is what keeps a descheduled helper from
// holding up a loop (the caller takes every chunk nobody has claimed); 1, 2, 4 and 8 measured
// alike beside a busy neighbour, and 1 kept the quiet speed of `at::parallel_for`'s static split.
constexpr int64_t kChunksPerThread = 1;

uint32_t epoch_of(uint64_t next) { return static_cast<uint32_t>(next >> 32); }

// A spin-wait hint: frees the core's shared resources for its sibling hyperthread.
inline void relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

}  // namespace

Team::Team(int threads) {
  for (int i = 1; i < threads; ++i) helpers_.emplace_back([this] { helper(); });
}

Team::~Team() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_.store(true);
  }
  wake_.notify_all();
  for (std::thread& t : helpers_) t.join();
}

Team& Team::mine() {
  thread_local std::unique_ptr<Team> team;
  const int threads = std::max(1, at::get_num_threads());
  if (!team || team->size() != threads) {
    team.reset();
    team = std::make_unique<Team>(threads);
  }
  return *team;
}

void Team::run(int64_t n, int64_t grain, Body body, const void* ctx) {
  if (n <= 0) return;
  grain = std::max<int64_t>(grain, 1);
  if (helpers_.empty() || n <= grain) {
    body(ctx, 0, n);
    return;
  }
  // Every chunk of the previous loop has finished (run returned), so no thread reads these now.
  const int64_t per = (n + size() * kChunksPerThread - 1) / (size() * kChunksPerThread);
  chunk_ = (std::max(per, grain) + grain - 1) / grain * grain;
  const int64_t chunks = (n + chunk_ - 1) / chunk_;
  chunks_.store(chunks, std::memory_order_relaxed);
  body_ = body;
  ctx_ = ctx;
  n_ = n;
  done_.store(0, std::memory_order_relaxed);
  const uint32_t epoch = ++epoch_;
  next_.store(static_cast<uint64_t>(epoch) << 32, std::memory_order_seq_cst);
  if (sleeping_.load(std::memory_order_seq_cst) > 0) {
    // Taking the lock orders this wake after a helper's check of `next_` under it.
    { std::lock_guard<std::mutex> lock(mutex_); }
    wake_.notify_all();
  }
  work(epoch);
  for (int spins = 0; done_.load(std::memory_order_acquire) < chunks; ++spins) {
    // A helper holding a chunk lost its core: let it have this one.
    if (spins < 4096) {
      relax();
    } else {
      std::this_thread::yield();
    }
  }
}

void Team::work(uint32_t epoch) {
  uint64_t next = next_.load(std::memory_order_acquire);
  for (;;) {
    if (epoch_of(next) != epoch) return;
    const int64_t index = static_cast<int64_t>(next & 0xffffffffu);
    // `chunks_` may already be the next loop's here; the claim below then fails. The other fields
    // are read only after a claim succeeds: they stay put until the claimed chunk is done.
    if (index >= chunks_.load(std::memory_order_relaxed)) return;
    if (!next_.compare_exchange_weak(next, next + 1, std::memory_order_acq_rel, std::memory_order_acquire))
      continue;
    const int64_t begin = index * chunk_;
    body_(ctx_, begin, std::min(n_, begin + chunk_));
    done_.fetch_add(1, std::memory_order_release);
    next = next_.load(std::memory_order_acquire);
  }
}

void Team::helper() {
  uint32_t seen = 0;
  for (;;) {
    const auto until = std::chrono::steady_clock::now() + kSpin;
    uint64_t next = next_.load(std::memory_order_acquire);
    for (int i = 0; epoch_of(next) == seen && !stop_.load(std::memory_order_relaxed); ++i) {
      relax();
      if ((i & 63) == 63 && std::chrono::steady_clock::now() > until) {
        std::unique_lock<std::mutex> lock(mutex_);
        sleeping_.fetch_add(1, std::memory_order_seq_cst);
        wake_.wait(lock, [&] { return stop_.load() || epoch_of(next_.load(std::memory_order_seq_cst)) != seen; });
        sleeping_.fetch_sub(1, std::memory_order_relaxed);
      }
      next = next_.load(std::memory_order_acquire);
    }
    if (stop_.load()) return;
    seen = epoch_of(next);
    work(seen);
  }
}

}  // namespace maestro

extern "C" {

// Runs the kernels' loops on the thread team (1) or through libtorch's `at::parallel_for` (0).
void maestro_set_thread_team(int32_t on) { maestro::g_thread_team.store(on != 0); }

}  // extern "C"
