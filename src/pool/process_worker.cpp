// The worker process of a ProcessPool: reads task messages from its ring, runs the elements and
// streams one result record per element (or a run of them) back.
#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <cstdio>

#include "pool/affinity.hpp"
#include "pool/process_state.hpp"

namespace mpmux::pool_detail {

namespace {

class WorkerChannel {
 public:
  WorkerChannel(Ring task, Ring result, Control* ctl, int parent_efd, pid_t server)
      : task_(task), result_(result), ctl_(ctl), parent_efd_(parent_efd), server_(server) {}

  void notify_parent() {
    if (ctl_->parent_sleeping.exchange(0)) ring_eventfd(parent_efd_);
  }

  // Reads exactly n bytes of the next message, sleeping while the ring is empty.
  void read_exact(char* dst, std::size_t n) {
    while (n > 0) {
      std::size_t k = task_.read_some(dst, n);
      dst += k;
      n -= k;
      if (k > 0 && task_.header()->parent_waiting.load()) notify_parent();
      if (n > 0 && k == 0) {
        task_.worker_wait([&] { return task_.readable() > 0; }, 1000);
        check_server();
      }
    }
  }

  // Appends a record to the outgoing batch; large batches go out at once.
  Bytes& batch() { return batch_; }

  void flush(bool wake) {
    const char* p = batch_.data();
    std::size_t n = batch_.size();
    while (n > 0) {
      std::size_t k = result_.write_some(p, n);
      p += k;
      n -= k;
      if (n > 0 && k == 0) {
        notify_parent();  // the event loop must drain the ring before we can go on
        result_.worker_wait([&] { return result_.writable() > 0; }, 1000);
        check_server();
      }
    }
    batch_.clear();
    // A half-full result ring wakes the event loop even when it did not ask, so the worker
    // does not have to stop for it.
    if (wake || 2 * result_.readable() > result_.capacity()) notify_parent();
  }

 private:
  void check_server() {
    // PR_SET_PDEATHSIG covers this; the check covers a server that died before prctl ran.
    if (getppid() != server_) _exit(0);
  }

  Ring task_;
  Ring result_;
  Control* ctl_;
  int parent_efd_;
  pid_t server_;
  Bytes batch_;
};

}  // namespace

void ProcessState::worker_main(int id) {
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != ctl->server_pid) _exit(0);
  SlotShm& slot = *shm[static_cast<std::size_t>(id)];
  WorkerChannel ch(task_rings[static_cast<std::size_t>(id)], result_rings[static_cast<std::size_t>(id)], ctl,
                   parent_efd, ctl->server_pid);
  Bytes& out = ch.batch();
  auto send_error = [&](const std::string& msg) {
    std::size_t at = out.size();
    begin_record(out, kRecError);
    put_bytes(out, msg.data(), msg.size());
    end_record(out, at);
  };
  try {
    pin_calling_thread(cpu_set_for(options, id), id);
  } catch (const std::exception& e) {
    send_error(std::string("ProcessPool: ") + e.what());
  }
  Worker worker(id, &options.shared_objects);
  std::uint64_t t0 = now_ns();
  if (options.worker_init) {
    try {
      options.worker_init(worker);
    } catch (...) {
      send_error("ProcessPool: worker_init failed in worker " + std::to_string(id) + ": " +
                 exception_message(std::current_exception()));
    }
  }
  {
    std::size_t at = out.size();
    begin_record(out, kRecReady);
    put<std::uint64_t>(out, now_ns() - t0);
    end_record(out, at);
    ch.flush(true);
  }

  auto finish = [&](bool replaced) {
    std::uint64_t te = now_ns();
    std::string value;
    bool has_value = false;
    if (options.worker_exit) {
      try {
        value = options.worker_exit(worker).bytes();
        has_value = true;
      } catch (...) {
        send_error("ProcessPool: worker_exit failed in worker " + std::to_string(id) + ": " +
                   exception_message(std::current_exception()));
      }
    }
    std::size_t at = out.size();
    begin_record(out, kRecExit);
    out.push_back(replaced ? 1 : 0);
    put<std::uint64_t>(out, now_ns() - te);
    out.push_back(has_value ? 1 : 0);
    put_bytes(out, value.data(), value.size());
    end_record(out, at);
    ch.flush(true);
    std::fflush(nullptr);
    _exit(0);
  };

  Bytes msg;
  std::uint64_t chunks = 0;
  std::uint32_t tasks_done = 0;  // task messages finished by this incarnation
  RunContext ctx;
  ctx.cur_index = &slot.cur_index;
  ctx.cur_start_ns = &slot.cur_start_ns;
  ctx.timed = timed;
  ctx.with_ns = options.enable_insights;
  std::uint64_t last_wake = now_ns();
  for (;;) {
    std::uint64_t wait_start = now_ns();
    std::uint32_t len = 0;
    ch.read_exact(reinterpret_cast<char*>(&len), 4);
    msg.resize(len);
    ch.read_exact(msg.data(), len);
    std::uint64_t work_start = now_ns();
    auto kind = static_cast<std::uint8_t>(msg[0]);
    if (kind == kMsgStop) finish(false);
    // The parent sent its own function pointers: the child is a fork, with the same addresses.
    // NOLINTNEXTLINE(performance-no-int-to-ptr)
    auto runner = reinterpret_cast<ChunkRunner>(get<std::uint64_t>(msg.data() + 1));
    auto fn = static_cast<std::uintptr_t>(get<std::uint64_t>(msg.data() + 9));
    ctx.index = get<std::uint64_t>(msg.data() + 17);
    auto count = get<std::uint32_t>(msg.data() + 25);
    const char* in = msg.data() + 29;
    std::uint64_t last_flush = work_start, t0 = work_start;
    std::uint32_t batch = 1;  // restarts per chunk: the next task may be a slow one
    for (std::uint32_t left = count; left > 0;) {
      std::uint32_t b = std::min(left, batch);
      runner(worker, fn, ctx, in, b, out);
      left -= b;
      std::uint64_t t1 = now_ns();
      if (t1 - t0 < kQuickBatchNs) {
        batch = std::min(2 * batch, kMaxBatch);
      } else if (batch > 1) {
        batch /= 2;
      }
      t0 = t1;
      bool slow = t1 - last_flush > kFlushNs;
      if (out.size() >= kFlushBytes || slow) {
        ch.flush(slow);
        last_flush = t1;
        if (slow) last_wake = t1;
      }
    }
    slot.cur_index.store(0, std::memory_order_relaxed);
    slot.cur_start_ns.store(0, std::memory_order_relaxed);
    std::size_t rec = out.size();
    begin_record(out, kRecChunkEnd);
    std::uint64_t end = now_ns();
    put<std::uint64_t>(out, work_start - wait_start);
    put<std::uint64_t>(out, end - work_start);
    put<std::uint32_t>(out, count);
    end_record(out, rec);
    // Wake the event loop when it asked to hear at this point (its refill mark: always, for
    // chunks whose caller waits for each), or when results have waited kFlushNs unseen.
    std::uint32_t left = slot.tasks_sent.load() - ++tasks_done;
    bool wake = left <= slot.wake_left.load() || end - last_wake > kFlushNs;
    if (wake) last_wake = end;
    ch.flush(wake);
    if (options.worker_lifespan > 0 && ++chunks >= options.worker_lifespan) finish(true);
  }
}

}  // namespace mpmux::pool_detail
