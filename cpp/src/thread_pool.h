// A minimal fork-join pool for intra-op parallelism: run(n, fn) calls fn(i) for every i < n on the calling
// thread and the pool's workers, and returns when all are done. One pool lives for one Model::run call.
// Between jobs the workers spin briefly (a run issues dozens of short parallel regions back to back), then
// sleep on a condition variable. A worker joins a job only while it is open; the caller closes it once every
// task is claimed and then waits only for the workers that joined, so a worker the OS has not scheduled
// (busy machine) never delays a region.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace gazecrop {
namespace detail {

class ThreadPool {
 public:
  explicit ThreadPool(int threads);  // total threads including the caller
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return int(workers_.size()) + 1; }
  void run(std::size_t n, const std::function<void(std::size_t)>& fn);
  // The same, also passing the index (0 .. size() - 1) of the thread running task i: tasks with different
  // indices run concurrently, tasks with one index one after the other (per-thread scratch, Workspace slots).
  void run(std::size_t n, const std::function<void(std::size_t, int)>& fn);

 private:
  void worker_main(int index);

  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable wake_, done_;
  const std::function<void(std::size_t, int)>* fn_ = nullptr;
  std::size_t n_ = 0;
  std::atomic<std::size_t> next_{0};
  std::atomic<std::size_t> generation_{0};
  bool open_ = false;            // guarded by mu_
  std::atomic<int> active_{0};  // workers inside the current job
  std::atomic<bool> stop_{false};
};

}  // namespace detail
}  // namespace gazecrop
