#include "thread_pool.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define GAZECROP_PAUSE() _mm_pause()
#else
#define GAZECROP_PAUSE() std::this_thread::yield()
#endif

namespace gazecrop {
namespace detail {
namespace {
constexpr int kSpin = 2000;  // a few tens of microseconds of polling before sleeping
}  // namespace

ThreadPool::ThreadPool(int threads) {
  for (int t = 1; t < threads; ++t) workers_.emplace_back([this, t] { worker_main(t); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_.store(true, std::memory_order_release);
  }
  wake_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::worker_main(int index) {
  std::size_t seen = 0;
  for (;;) {
    auto ready = [&] {
      return stop_.load(std::memory_order_acquire) || generation_.load(std::memory_order_acquire) != seen;
    };
    for (int i = 0; i < kSpin && !ready(); ++i) GAZECROP_PAUSE();
    if (!ready()) {
      std::unique_lock<std::mutex> lock(mu_);
      wake_.wait(lock, ready);
    }
    if (stop_.load(std::memory_order_acquire)) return;
    const std::function<void(std::size_t, int)>* fn = nullptr;
    std::size_t n = 0;
    {
      std::lock_guard<std::mutex> lock(mu_);
      seen = generation_.load(std::memory_order_relaxed);
      if (open_) {
        active_.fetch_add(1, std::memory_order_relaxed);
        fn = fn_;
        n = n_;
      }
    }
    if (!fn) continue;  // that job was already closed
    for (std::size_t i; (i = next_.fetch_add(1, std::memory_order_relaxed)) < n;) (*fn)(i, index);
    if (active_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      std::lock_guard<std::mutex> lock(mu_);
      done_.notify_one();
    }
  }
}

void ThreadPool::run(std::size_t n, const std::function<void(std::size_t)>& fn) {
  if (workers_.empty() || n <= 1) {
    for (std::size_t i = 0; i < n; ++i) fn(i);
    return;
  }
  run(n, std::function<void(std::size_t, int)>([&fn](std::size_t i, int) { fn(i); }));
}

void ThreadPool::run(std::size_t n, const std::function<void(std::size_t, int)>& fn) {
  if (workers_.empty() || n <= 1) {
    for (std::size_t i = 0; i < n; ++i) fn(i, 0);
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    fn_ = &fn;
    n_ = n;
    next_.store(0, std::memory_order_relaxed);
    open_ = true;
    generation_.fetch_add(1, std::memory_order_release);
  }
  wake_.notify_all();
  for (std::size_t i; (i = next_.fetch_add(1, std::memory_order_relaxed)) < n;) fn(i, 0);
  {
    // Every task is claimed: close the job; only workers that joined can still be running tasks.
    std::lock_guard<std::mutex> lock(mu_);
    open_ = false;
  }
  for (int i = 0; i < kSpin && active_.load(std::memory_order_acquire) != 0; ++i) GAZECROP_PAUSE();
  if (active_.load(std::memory_order_acquire) != 0) {
    std::unique_lock<std::mutex> lock(mu_);
    done_.wait(lock, [&] { return active_.load(std::memory_order_acquire) == 0; });
  }
}

}  // namespace detail
}  // namespace gazecrop
