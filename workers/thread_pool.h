// A fixed set of threads that run one parallel loop at a time: for_each(n, fn)
// calls fn(0..n-1) spread over the threads and returns when all calls have
// returned. Used by the runtime to run a batch's agents with bounded
// concurrency. for_each is called from one thread at a time (the runtime's loop
// thread); fn must not throw.
//
// The threads get large stacks (kStackBytes, reserved address space: pages are
// only committed when touched) because std::regex recurses per character of
// text (agents/config.h); SIGTERM/SIGINT are blocked in them.
#pragma once

#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <mutex>
#include <vector>

namespace baton::worker {

class ThreadPool {
 public:
  static constexpr std::size_t kStackBytes = 64u << 20;

  explicit ThreadPool(int threads, std::size_t stack_bytes = kStackBytes) {
    if (threads < 1) threads = 1;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, stack_bytes);
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    pthread_sigmask(SIG_BLOCK, &block, &old);  // inherited by the new threads
    for (int i = 0; i < threads; ++i) {
      pthread_t t;
      int rc = pthread_create(&t, &attr, &ThreadPool::entry, this);
      if (rc != 0) rc = pthread_create(&t, nullptr, &ThreadPool::entry, this);  // default stack
      if (rc != 0) {
        std::fprintf(stderr, "baton-worker: cannot start an agent thread (error %d)\n", rc);
        std::abort();
      }
      threads_.push_back(t);
    }
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
    pthread_attr_destroy(&attr);
  }
  ~ThreadPool() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      quit_ = true;
    }
    work_cv_.notify_all();
    for (auto t : threads_) pthread_join(t, nullptr);
  }
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  std::size_t size() const { return threads_.size(); }

  void for_each(std::size_t n, const std::function<void(std::size_t)>& fn) {
    if (n == 0) return;
    std::unique_lock<std::mutex> lock(mu_);
    fn_ = &fn;
    n_ = n;
    next_.store(0);
    done_ = 0;
    ++generation_;
    work_cv_.notify_all();
    // Also wait for every thread that joined this round to leave it, so none
    // can claim an index of the next round with this round's fn.
    done_cv_.wait(lock, [&] { return done_ == n_ && active_ == 0; });
    fn_ = nullptr;
  }

 private:
  static void* entry(void* self) {
    static_cast<ThreadPool*>(self)->loop();
    return nullptr;
  }

  void loop() {
    uint64_t seen = 0;
    std::unique_lock<std::mutex> lock(mu_);
    while (true) {
      work_cv_.wait(lock, [&] { return quit_ || generation_ != seen; });
      if (quit_) return;
      seen = generation_;
      if (fn_ == nullptr) continue;  // woke after the round ended
      const auto* fn = fn_;
      std::size_t n = n_;
      ++active_;
      lock.unlock();
      std::size_t ran = 0;
      for (std::size_t i = next_.fetch_add(1); i < n; i = next_.fetch_add(1)) {
        (*fn)(i);
        ++ran;
      }
      lock.lock();
      done_ += ran;
      --active_;
      if (done_ == n_ && active_ == 0) done_cv_.notify_one();
    }
  }

  std::vector<pthread_t> threads_;
  std::mutex mu_;
  std::condition_variable work_cv_;
  std::condition_variable done_cv_;
  const std::function<void(std::size_t)>* fn_ = nullptr;
  std::size_t n_ = 0;
  std::atomic<std::size_t> next_{0};
  std::size_t done_ = 0;
  int active_ = 0;
  uint64_t generation_ = 0;
  bool quit_ = false;
};

}  // namespace baton::worker
