// A persistent team of threads for the decoder step's parallel loops, in place of one OpenMP
// fork/join per product.
//
// Through `at::parallel_for` every product and every attention split its range statically over
// the OpenMP threads and joined them all: with one core shared with a busy neighbour, each join
// waited for the descheduled thread and a 55 ms step took 130–1100 ms. Here the calling thread and
// `threads - 1` helpers claim chunks of the range from one atomic counter, so whoever runs does the
// work, and the caller waits only for chunks already claimed. Helpers spin briefly for the next
// loop (a step issues about two hundred, microseconds apart), then sleep on a condition variable,
// so between steps they leave the cores to libtorch's own threads.
//
// Each calling thread has its own team (`Team::mine`), sized to `at::get_num_threads()` and
// rebuilt when that changes; helpers run only the loop bodies handed to them, never libtorch.
#pragma once

#include <ATen/Parallel.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

namespace maestro {

class Team {
 public:
  explicit Team(int threads);
  ~Team();
  Team(const Team&) = delete;
  Team& operator=(const Team&) = delete;

  // This thread's team, sized to libtorch's thread count.
  static Team& mine();

  // Threads that run a loop: the caller and its helpers.
  int size() const { return static_cast<int>(helpers_.size()) + 1; }

  // f(begin, end) over [0, n) in chunks of at least `grain`, on every thread of the team; returns
  // once every chunk has run.
  template <class F>
  void parallel_for(int64_t n, int64_t grain, const F& f) {
    run(n, grain, [](const void* c, int64_t begin, int64_t end) { (*static_cast<const F*>(c))(begin, end); }, &f);
  }

 private:
  using Body = void (*)(const void*, int64_t, int64_t);

  void run(int64_t n, int64_t grain, Body body, const void* ctx);
  // Claims and runs chunks of the loop published as `epoch` until none is left.
  void work(uint32_t epoch);
  void helper();

  std::vector<std::thread> helpers_;
  // The loop being run; written only while no chunk of the previous one is unfinished.
  Body body_ = nullptr;
  const void* ctx_ = nullptr;
  int64_t n_ = 0, chunk_ = 1;
  std::atomic<int64_t> chunks_{0};
  // (epoch << 32) | next unclaimed chunk: a claim succeeds only within its own loop.
  std::atomic<uint64_t> next_{0};
  std::atomic<int64_t> done_{0};
  std::atomic<int> sleeping_{0};
  std::atomic<bool> stop_{false};
  uint32_t epoch_ = 0;
  std::mutex mutex_;
  std::condition_variable wake_;
};

// Whether `parallel` uses the team (the default) or libtorch's `at::parallel_for`: the benchmarks
// compare the two in one run (`maestro_set_thread_team`).
extern std::atomic<bool> g_thread_team;

// f(begin, end) over [0, n) on this thread's team, or through libtorch where the team is off.
template <class F>
void parallel(int64_t n, int64_t grain, const F& f) {
  if (g_thread_team.load(std::memory_order_relaxed)) {
    Team::mine().parallel_for(n, grain, f);
  } else {
    at::parallel_for(0, n, grain, f);
  }
}

}  // namespace maestro
