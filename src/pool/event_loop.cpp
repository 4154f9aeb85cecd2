#include "pool/event_loop.hpp"

#include <algorithm>
#include <cstring>
#include <utility>

namespace mpmux::pool_detail {

void ProcessState::run_loop(int initial_workers) { EventLoop(*this, initial_workers).run(); }

EventLoop::EventLoop(ProcessState& state, int initial_workers)
    : ps_(state),
      slots_(static_cast<std::size_t>(state.cap)),
      speeds_(static_cast<std::size_t>(state.cap)),
      was_ready_(static_cast<std::size_t>(state.cap), false),
      with_ns_(state.options.enable_insights),
      timeout_ns_(static_cast<std::uint64_t>(state.options.task_timeout.count()) * 1000000ull) {
  add_slots(initial_workers);
}

void EventLoop::run() {
  for (;;) {
    bool progressed = take_inboxes();
    progressed |= watch_slots();
    progressed |= dispatch();
    sweep();
    if (!flush_outgoing(progressed)) break;
    long sleep_ms = enforce_timeouts();
    if (!progressed) sleep(sleep_ms);
  }
  finish();
}

// Takes what callers posted (chunks, direct maps), and a stop or growth they asked for.
bool EventLoop::take_inboxes() {
  bool progressed = false;
  bool stop_now = false;
  int grow = 0;
  {
    std::lock_guard lock(ps_.mutex);
    while (!ps_.inbox.empty()) {
      auto c = std::make_shared<Chunk>();
      c->task = std::move(ps_.inbox.front());
      ps_.inbox.pop_front();
      int requestor = c->task.requestor;
      ps_.queue.push(ChunkSlice{std::move(c), 0, 0}, requestor);
      progressed = true;
    }
    ps_.queue_size.store(ps_.queue.size());
    while (!ps_.direct_inbox.empty()) {
      sources_.push_back(ps_.direct_inbox.front());
      ps_.direct_inbox.pop_front();
      progressed = true;
    }
    stop_now = ps_.stop_requested;
    grow = ps_.grow_target;
  }
  if (stop_now && !stopping_) {
    stopping_ = true;
    for (ChunkSlice& w : reruns_) complete(w.chunk, true);
    reruns_.clear();
    ps_.queue.remove_if([](const std::any&) { return true; },
                        [&](std::any&& a) { complete(std::any_cast<ChunkSlice&>(a).chunk, true); });
    ps_.queue_size.store(0);
    progressed = true;
  }
  if (grow > active_ && !stopping_) {
    add_slots(grow);
    progressed = true;
  }
  return progressed;
}

// Notices spawned workers, reads results and handles deaths.
bool EventLoop::watch_slots() {
  bool progressed = false;
  for (int k = 0; k < active_; ++k) {
    auto i = static_cast<std::size_t>(k);
    SlotState& st = slots_[i];
    SlotShm& s = *ps_.shm[i];
    if (st.phase == Phase::ended) continue;
    if (st.phase == Phase::spawning && s.spawned_gen.load() == st.gen) {
      st.phase = Phase::running;
      progressed = true;
    }
    if (st.phase != Phase::spawning) progressed |= read_results(k);
    if (st.phase != Phase::spawning && s.dead_gen.load() == st.gen) {
      on_death(k);
      progressed = true;
    }
  }
  return progressed;
}

// Hands out work, one chunk per worker per round, so that workers share what there is. With
// affinity, free bound workers first take what they prefer, then free workers take the rest,
// unbound ones first.
bool EventLoop::dispatch() {
  bool progressed = false;
  for (bool handed = true; handed;) {
    handed = false;
    for (int pass = ps_.queue.has_affinity() ? 0 : 1; pass < 2; ++pass) {
      const bool preferred_only = pass == 0;
      for (int k : hand_order_) {
        if (!wants_more(k)) continue;
        ChunkSlice item;
        if (!take_next(k, item, preferred_only)) {
          if (preferred_only) continue;
          break;
        }
        handed = true;
        if (item.chunk->cancelled()) {
          complete(item.chunk, true);
          continue;
        }
        if (advance(*item.chunk)) {
          complete(item.chunk, false);
          continue;
        }
        SlotState& st = slots_[static_cast<std::size_t>(k)];
        if (!send_task(k, st, item)) {
          complete(item.chunk, true);
          continue;
        }
        st.assigned.push_back(std::move(item));
        progressed = true;
      }
    }
  }
  return progressed;
}

// Flushes outgoing bytes, queues STOP behind the work of each worker when stopping, and sets each
// worker's refill mark: a wake-up when half of what it holds is left.
bool EventLoop::flush_outgoing(bool& progressed) {
  bool all_final = true;
  for (int k = 0; k < active_; ++k) {
    auto i = static_cast<std::size_t>(k);
    SlotState& st = slots_[i];
    if (st.phase == Phase::ended) continue;
    all_final = false;
    if (stopping_ && st.phase == Phase::running && !st.stop_sent) {
      put<std::uint32_t>(st.outbuf, 1);
      st.outbuf.push_back(static_cast<char>(kMsgStop));
      st.stop_sent = true;
    }
    if (st.phase != Phase::running) continue;
    std::uint32_t mark =
        st.posted_held > 0 ? kWakeAlways : static_cast<std::uint32_t>(st.assigned.size() / 2);
    if (mark != st.wake_left) ps_.shm[i]->wake_left.store(st.wake_left = mark);
    if (st.out_off == st.outbuf.size()) continue;
    Ring& r = ps_.task_rings[i];
    std::size_t wrote = r.write_some(st.outbuf.data() + st.out_off, st.outbuf.size() - st.out_off);
    st.out_off += wrote;
    if (wrote > 0) {
      progressed = true;
      r.wake_worker();
    }
    if (st.out_off == st.outbuf.size()) {
      st.outbuf.clear();
      st.out_off = 0;
      r.header()->parent_waiting.store(0);
    } else {
      r.header()->parent_waiting.store(1);
    }
  }
  return !(stopping_ && all_final);
}

long EventLoop::enforce_timeouts() {
  if (timeout_ns_ == 0) return -1;
  long sleep_ms = -1;
  std::uint64_t now = now_ns();
  for (int k = 0; k < active_; ++k) {
    auto i = static_cast<std::size_t>(k);
    SlotState& st = slots_[i];
    SlotShm& s = *ps_.shm[i];
    if (st.phase != Phase::running || st.timeout_index >= 0) continue;
    std::uint64_t start = s.cur_start_ns.load(), idx = s.cur_index.load();
    if (start == 0 || idx == 0) continue;
    if (now - std::min(now, start) >= timeout_ns_) {
      st.timeout_index = static_cast<std::int64_t>(idx - 1);
      s.kill_gen.store(st.gen);
      ring_eventfd(ps_.server_efd);
    } else {
      long left = static_cast<long>((start + timeout_ns_ - now) / 1000000) + 1;
      sleep_ms = sleep_ms < 0 ? left : std::min(sleep_ms, left);
    }
  }
  // A worker between elements publishes no start; look again soon.
  if (sleep_ms < 0) sleep_ms = std::max<long>(1, static_cast<long>(timeout_ns_ / 4000000));
  return sleep_ms;
}

// Says it sleeps first, then looks once more, so that a ring between the look and the poll is
// not lost.
void EventLoop::sleep(long sleep_ms) {
  ps_.ctl->parent_sleeping.store(1);
  bool visible = false;
  for (int k = 0; k < active_ && !visible; ++k) {
    auto i = static_cast<std::size_t>(k);
    const SlotState& st = slots_[i];
    if (st.phase == Phase::ended) continue;
    visible = ps_.result_rings[i].readable() > 0 || ps_.shm[i]->dead_gen.load() == st.gen ||
              (st.phase == Phase::spawning && ps_.shm[i]->spawned_gen.load() == st.gen) ||
              (st.out_off < st.outbuf.size() && ps_.task_rings[i].writable() > 0);
  }
  {
    std::lock_guard lock(ps_.mutex);
    visible = visible || !ps_.inbox.empty() || !ps_.direct_inbox.empty() ||
              (ps_.stop_requested && !stopping_) || (ps_.grow_target > active_ && !stopping_);
  }
  if (!visible) {
    pollfd p{ps_.parent_efd, POLLIN, 0};
    if (poll(&p, 1, sleep_ms < 0 ? 1000 : static_cast<int>(sleep_ms)) > 0) drain_eventfd(ps_.parent_efd);
  }
  ps_.ctl->parent_sleeping.store(0);
}

// Every chunk completed on the way here; a direct map that came too late is stopped too.
void EventLoop::finish() {
  std::lock_guard lock(ps_.mutex);
  for (DirectJob* j : ps_.direct_inbox) sources_.push_back(j);
  ps_.direct_inbox.clear();
  for (DirectJob* j : sources_) {
    j->stopped = j->stopped || (j->next < j->map->total() && !j->cancelled.load());
    hand_back(*j);
  }
  ps_.loop_done = true;
  ps_.cv.notify_all();
}

void EventLoop::spawn(int k) {
  SlotState& st = slots_[static_cast<std::size_t>(k)];
  ps_.task_rings[static_cast<std::size_t>(k)].reset();
  ps_.result_rings[static_cast<std::size_t>(k)].reset();
  SlotShm& s = *ps_.shm[static_cast<std::size_t>(k)];
  s.cur_index.store(0);
  s.cur_start_ns.store(0);
  s.tasks_sent.store(0);
  s.wake_left.store(kWakeAlways);
  st = SlotState{};
  st.gen = s.spawn_gen.load() + 1;
  st.spawn_time = Clock::now();
  s.spawn_gen.store(st.gen);
  ring_eventfd(ps_.server_efd);
}

void EventLoop::complete(const std::shared_ptr<Chunk>& c, bool skipped) {
  if (c->completed) return;
  c->completed = true;
  if (DirectJob* j = c->direct) {
    // Only stop() skips the chunk of a map that was not cancelled.
    if (skipped && !j->cancelled.load()) j->stopped = true;
    --j->in_flight;
    return;
  }
  ChunkOutcome o;
  o.first = c->task.first;
  o.count = c->task.count;
  o.skipped = skipped;
  if (!skipped) o.results = std::move(c->results);
  auto done = std::move(c->task.done);
  c->task.inputs.clear();
  if (done) done(std::move(o));
}

// Files `count` result records (without ns) of the chunk's next elements: a direct map's go
// straight to its output, a posted chunk keeps them until it completes.
void EventLoop::accept(Chunk& c, const char* records, std::size_t bytes, std::uint32_t count) {
  if (DirectJob* j = c.direct) {
    std::size_t before = j->failures.size();
    j->map->deliver(c.task.first + c.received, records, count, j->failures);
    j->done.fetch_add(count, std::memory_order_relaxed);
    if (j->failures.size() > before) {
      j->failed.fetch_add(j->failures.size() - before, std::memory_order_relaxed);
      if (j->options->on_error == OnError::raise_first) j->cancelled = true;
    }
  } else {
    c.results.append(records, bytes);
  }
  c.received += count;
}

// Files the forced failures (timeouts, repeated crashes) due at the chunk's next position.
bool EventLoop::advance(Chunk& c) {
  for (auto it = c.forced.find(c.received); it != c.forced.end(); it = c.forced.find(c.received)) {
    accept(c, it->second.data(), it->second.size(), 1);
  }
  return c.received == c.task.count;
}

std::string EventLoop::failure_record(std::uint8_t kind, const std::string& msg) {
  std::string r;
  begin_record(r, kind);
  r += msg;
  end_record(r, 0);
  return r;
}

// The next work for slot k: re-runs first; then a posted chunk by the affinity rule (only
// the worker's own requestor's, or one that waited too long, when `preferred_only`); then a
// new chunk of a direct map, the maps taking turns.
bool EventLoop::take_next(int k, ChunkSlice& out, bool preferred_only) {
  if (!reruns_.empty()) {
    out = std::move(reruns_.front());
    reruns_.pop_front();
    return true;
  }
  std::any item;
  if (preferred_only ? ps_.queue.pop_preferred(k, item) : ps_.queue.pop(k, item)) {
    out = std::move(std::any_cast<ChunkSlice&>(item));
    ps_.queue_size.store(ps_.queue.size());
    return true;
  }
  if (preferred_only) return false;
  for (std::size_t tries = 0; tries < sources_.size() && !stopping_; ++tries) {
    DirectJob* j = sources_[next_source_++ % sources_.size()];
    const std::uint64_t total = j->map->total();
    if (j->cancelled.load() || j->next >= total) continue;
    std::uint64_t size = next_chunk_size(*j->options, active_, j->next, total);
    size = std::min<std::uint64_t>({size, total - j->next, 0xffffffffu});
    auto c = std::make_shared<Chunk>();
    c->direct = j;
    c->task.runner = j->map->runner();
    c->task.fn = j->map->fn();
    c->task.first = j->next;
    c->task.count = static_cast<std::uint32_t>(size);
    j->next += size;
    ++j->in_flight;
    out = {std::move(c), 0, 0};
    return true;
  }
  return false;
}

// Queues the task message for elements [received, stop) of the item's chunk. False when the
// inputs of a direct map could not be read or encoded (on this thread): then that map ends
// with the exception, and nothing was queued.
bool EventLoop::send_task(int k, SlotState& st, ChunkSlice& item) {
  Chunk& c = *item.chunk;
  const ChunkTask& t = c.task;
  auto f = c.forced.lower_bound(c.received);
  item.begin = c.received;
  item.stop = f == c.forced.end() ? t.count : f->first;
  Bytes& o = st.outbuf;
  const std::size_t at = o.size();
  put<std::uint32_t>(o, 0);
  o.push_back(static_cast<char>(kMsgTask));
  put<std::uint64_t>(o, reinterpret_cast<std::uint64_t>(t.runner));
  put<std::uint64_t>(o, t.fn);
  put<std::uint64_t>(o, t.first + c.received);
  put<std::uint32_t>(o, item.stop - c.received);
  if (DirectJob* j = c.direct) {
    try {
      j->map->encode(t.first + c.received, item.stop - c.received, o);
    } catch (...) {
      o.resize(at);
      if (!j->error) j->error = std::current_exception();
      j->cancelled = true;
      return false;
    }
  } else if (c.received == 0 && item.stop == t.count) {
    put_bytes(o, t.inputs.data(), t.inputs.size());
  } else {
    std::size_t off = 0, end = 0;
    for (std::uint32_t k2 = 0; k2 < item.stop; ++k2) {
      if (k2 == c.received) off = end;
      end += t.input_size(t.inputs.data() + end);
    }
    put_bytes(o, t.inputs.data() + off, end - off);
  }
  auto len = static_cast<std::uint32_t>(o.size() - at - 4);
  std::memcpy(o.data() + at, &len, 4);
  SlotShm& s = *ps_.shm[static_cast<std::size_t>(k)];
  if (!c.direct) {
    // Its caller waits for each chunk: hear of every chunk end while the worker holds it.
    // Raised before the task enters the ring, so the worker reads it at the task's end.
    ++st.posted_held;
    if (st.wake_left != kWakeAlways) s.wake_left.store(st.wake_left = kWakeAlways);
  }
  SlotSpeed& speed = speeds_[static_cast<std::size_t>(k)];
  std::uintptr_t key = reinterpret_cast<std::uintptr_t>(t.runner) ^ t.fn;
  if (speed.key != key) speed = {key, 0};  // another task: its speed is unknown
  st.held_elements += item.stop - item.begin;
  s.tasks_sent.store(++st.tasks_sent);
  return true;
}

// Whether slot k takes another chunk now (see kQueueNs).
bool EventLoop::wants_more(int k) {
  const SlotState& st = slots_[static_cast<std::size_t>(k)];
  if (st.phase != Phase::running || st.stop_sent) return false;
  // A worker retires after worker_lifespan chunks: more would only come back.
  if (ps_.options.worker_lifespan > 0 && st.tasks_sent >= ps_.options.worker_lifespan) return false;
  // With affinity a worker chooses its next chunk when it is free, by the rule as it stands
  // then: a queued chunk must not be committed to a busy worker.
  if (ps_.queue.has_affinity()) return st.assigned.empty();
  if (st.assigned.size() < kMinDepth) return true;
  // Not beyond what its ring holds: the rest would wait in outbuf anyway.
  if (st.assigned.size() >= kMaxDepth || st.outbuf.size() - st.out_off >= ps_.ring_bytes / 2) return false;
  double ns = speeds_[static_cast<std::size_t>(k)].ns_per_element;
  return ns > 0 && static_cast<double>(st.held_elements) * ns < kQueueNs;
}

// Handles the records of slot k now in its inbuf.
void EventLoop::parse(int k) {
  SlotState& st = slots_[static_cast<std::size_t>(k)];
  Bytes& b = st.inbuf;
  ParseTally tally;
  while (b.size() - st.in_off >= 4) {
    std::uint32_t len = get<std::uint32_t>(b.data() + st.in_off);
    if (b.size() - st.in_off < 4 + static_cast<std::size_t>(len)) break;
    const char* rec = b.data() + st.in_off;
    auto kind = static_cast<std::uint8_t>(rec[4]);
    if (kind < 0x10) {
      file_results(k, len, tally);  // moves in_off past the records it takes
      continue;
    }
    st.in_off += 4 + static_cast<std::size_t>(len);
    on_control(k, kind, rec + 5, len - 1);
  }
  if (st.in_off > 0 && st.in_off == b.size()) {
    b.clear();
    st.in_off = 0;
  } else if (st.in_off > (1u << 20)) {
    b.erase(b.begin(), b.begin() + static_cast<std::ptrdiff_t>(st.in_off));
    st.in_off = 0;
  }
  if (tally.elements > 0) {
    ps_.reports.update(k, [&](WorkerInsights& ins) {
      ins.elements += tally.elements;
      ins.chunks += tally.chunks;
    });
  }
  if (!tally.slow.empty()) {
    keep_slowest(tally.slow);
    ps_.reports.add_slowest(tally.slow);
  }
}

// Files the result records at slot k's in_off (the first is `len` bytes long) into the chunk
// its worker holds first, and completes that chunk when they were its last.
void EventLoop::file_results(int k, std::uint32_t len, ParseTally& tally) {
  SlotState& st = slots_[static_cast<std::size_t>(k)];
  Bytes& b = st.inbuf;
  if (st.assigned.empty()) {
    ps_.fail("ProcessPool: worker " + std::to_string(k) + " sent a result for no chunk");
    st.in_off += 4 + static_cast<std::size_t>(len);
    return;
  }
  ChunkSlice& item = st.assigned.front();
  Chunk& c = *item.chunk;
  if (with_ns_) {
    const char* rec = b.data() + st.in_off;
    const char* body = rec + 5;
    tally.slow.push_back(
        {c.task.first + c.received, static_cast<double>(get<std::uint64_t>(body)) * 1e-9, k});
    tally.one.clear();
    begin_record(tally.one, static_cast<std::uint8_t>(rec[4]));
    tally.one.append(body + 8, len - 1 - 8);
    end_record(tally.one, 0);
    accept(c, tally.one.data(), tally.one.size(), 1);
    st.in_off += 4 + static_cast<std::size_t>(len);
    ++tally.elements;
  } else {
    // The complete result records of this chunk that are here go in one call.
    std::size_t at = st.in_off;
    std::uint32_t got = 0;
    const std::uint32_t want = item.stop - c.received;
    while (got < want && b.size() - at >= 5) {
      std::uint32_t l = get<std::uint32_t>(b.data() + at);
      auto kind_at = static_cast<std::uint8_t>(b[at + 4]);
      if (b.size() - at < 4 + static_cast<std::size_t>(l) || kind_at >= 0x10) break;
      std::uint32_t covers = kind_at == kRecordRun ? get<std::uint32_t>(b.data() + at + 5) : 1;
      if (covers > want - got) break;
      at += 4 + static_cast<std::size_t>(l);
      got += covers;
    }
    if (got == 0) {
      // A run longer than the task it answers: the worker is broken.
      ps_.fail("ProcessPool: worker " + std::to_string(k) + " sent more results than it was given");
      st.in_off += 4 + static_cast<std::size_t>(len);
      return;
    }
    accept(c, b.data() + st.in_off, at - st.in_off, got);
    st.in_off = at;
    tally.elements += got;
  }
  if (c.received != item.stop) return;
  // Counted here, before the caller hears of the chunk.
  ++tally.chunks;
  ps_.reports.update(k, [&](WorkerInsights& ins) {
    ins.elements += tally.elements;
    ins.chunks += tally.chunks;
  });
  tally.elements = tally.chunks = 0;
  auto held = item.chunk;
  st.held_elements -= item.stop - item.begin;
  if (!held->direct) --st.posted_held;
  st.assigned.pop_front();
  if (advance(*held)) {
    complete(held, false);
  } else {
    reruns_.push_front({held, 0, 0});  // the rest, past a forced failure
  }
}

// A record of the worker about itself: ready, a chunk's end (its times), its exit, an error.
void EventLoop::on_control(int k, std::uint8_t kind, const char* body, std::size_t body_len) {
  SlotState& st = slots_[static_cast<std::size_t>(k)];
  if (kind == kRecReady) {
    st.ready_seen = true;
    if (!was_ready_[static_cast<std::size_t>(k)]) {
      was_ready_[static_cast<std::size_t>(k)] = true;
      std::lock_guard lock(ps_.mutex);
      ++ps_.ready_slots;
      ps_.cv.notify_all();
    }
    ps_.reports.update(k, [&](WorkerInsights& ins) {
      ins.init_s += static_cast<double>(get<std::uint64_t>(body)) * 1e-9;
      ins.starting_s += std::chrono::duration<double>(Clock::now() - st.spawn_time).count();
    });
  } else if (kind == kRecChunkEnd) {
    auto work_ns = get<std::uint64_t>(body + 8);
    auto count = get<std::uint32_t>(body + 16);
    SlotSpeed& speed = speeds_[static_cast<std::size_t>(k)];
    if (count > 0) {
      double x = static_cast<double>(work_ns) / count;
      speed.ns_per_element = speed.ns_per_element == 0 ? x : 0.75 * speed.ns_per_element + 0.25 * x;
    }
    ps_.reports.update(k, [&](WorkerInsights& ins) {
      ins.waiting_s += static_cast<double>(get<std::uint64_t>(body)) * 1e-9;
      ins.working_s += static_cast<double>(work_ns) * 1e-9;
    });
  } else if (kind == kRecExit) {
    st.goodbye = true;
    ps_.reports.update(k, [&](WorkerInsights& ins) {
      ins.exit_s += static_cast<double>(get<std::uint64_t>(body + 1)) * 1e-9;
    });
    if (body[9]) ps_.reports.add_exit_value(ExitValue::from_bytes(std::string(body + 10, body_len - 10)));
  } else if (kind == kRecError) {
    ps_.fail(std::string(body, body_len));
  } else {
    ps_.fail("ProcessPool: worker " + std::to_string(k) + " sent a record of unknown kind " +
             std::to_string(kind));
  }
}

bool EventLoop::read_results(int k) {
  Ring& r = ps_.result_rings[static_cast<std::size_t>(k)];
  std::uint64_t avail = r.readable();
  if (avail == 0) return false;
  Bytes& b = slots_[static_cast<std::size_t>(k)].inbuf;
  std::size_t old = b.size();
  b.resize(old + static_cast<std::size_t>(avail));
  b.resize(old + r.read_some(b.data() + old, static_cast<std::size_t>(avail)));
  r.wake_worker();
  parse(k);
  return true;
}

void EventLoop::on_death(int k) {
  SlotState& st = slots_[static_cast<std::size_t>(k)];
  SlotShm& s = *ps_.shm[static_cast<std::size_t>(k)];
  read_results(k);  // what the worker committed before it died is valid
  std::uint64_t running = s.cur_index.load();
  int status = s.exit_status.load();
  if (!st.goodbye) {
    std::string how = status == -1 ? "could not be started" : describe_status(status);
    // Results batched in the dead worker are lost, so the element it was running may lie
    // past the first one without a result; its index came through shared memory.
    if (!st.assigned.empty() && running > 0) {
      Chunk& c = *st.assigned.front().chunk;
      std::uint64_t idx = running - 1;
      if (idx >= c.task.first + c.received && idx < c.task.first + c.task.count) {
        auto pos = static_cast<std::uint32_t>(idx - c.task.first);
        if (st.timeout_index >= 0 && static_cast<std::uint64_t>(st.timeout_index) == idx) {
          c.forced[pos] = failure_record(kRecTimeout, "ran longer than task_timeout (" +
                                                          std::to_string(ps_.options.task_timeout.count()) +
                                                          " ms); its worker was killed");
        } else if (int deaths = ++c.crashes[pos]; deaths > ps_.options.max_crash_retries) {
          c.forced[pos] =
              failure_record(kRecCrash, "worker " + std::to_string(k) + " " + how + " while running it, " +
                                            std::to_string(deaths) + " times");
        }
      }
    }
    if (status == -1) ps_.fail("ProcessPool: worker " + std::to_string(k) + " could not be forked");
  }
  // Hand back what the worker held, oldest first, from the first element without a result.
  for (auto it = st.assigned.rbegin(); it != st.assigned.rend(); ++it) {
    if (advance(*it->chunk)) {
      complete(it->chunk, false);
    } else if (stopping_) {
      complete(it->chunk, true);
    } else {
      reruns_.push_front({it->chunk, 0, 0});
    }
  }
  st.assigned.clear();
  ps_.reports.update(k, [](WorkerInsights& ins) { ++ins.restarts; });
  if (stopping_ || (st.stop_sent && st.goodbye)) {
    st.phase = Phase::ended;
    ps_.task_rings[static_cast<std::size_t>(k)].reset();
    ps_.result_rings[static_cast<std::size_t>(k)].reset();
  } else {
    spawn(k);
  }
}

void EventLoop::sweep() {
  for (auto it = reruns_.begin(); it != reruns_.end();) {
    if (it->chunk->cancelled()) {
      auto c = it->chunk;
      it = reruns_.erase(it);
      complete(c, true);
    } else {
      ++it;
    }
  }
  if (!ps_.queue.empty()) {
    ps_.queue.remove_if(
        [](const std::any& a) { return std::any_cast<const ChunkSlice&>(a).chunk->cancelled(); },
        [&](std::any&& a) { complete(std::any_cast<ChunkSlice&>(a).chunk, true); });
    ps_.queue_size.store(ps_.queue.size());
  }
  for (auto it = sources_.begin(); it != sources_.end();) {
    DirectJob* j = *it;
    const bool cut_all = j->next >= j->map->total() || j->cancelled.load() || stopping_;
    if (cut_all && j->in_flight == 0) {
      if (j->next < j->map->total() && !j->cancelled.load()) j->stopped = true;
      it = sources_.erase(it);
      hand_back(*j);
      continue;
    }
    if (j->options->progress && j->done.load(std::memory_order_relaxed) != j->progress_done) {
      auto now = Clock::now();
      if (now - j->last_progress >= j->options->progress_interval) {
        j->last_progress = now;
        j->progress_done = j->done.load(std::memory_order_relaxed);
        std::lock_guard lock(j->mutex);
        j->progress_due = true;
        j->cv.notify_all();
      }
    }
    ++it;
  }
}

// Starts slots active..to-1. The server learns of them from ctl->workers before it is rung.
void EventLoop::add_slots(int to) {
  ps_.reports.open_slots(active_, to);
  ps_.ctl->workers.store(to);
  for (int k = active_; k < to; ++k) spawn(k);
  active_ = to;
  // Others' work goes to unbound workers first, so that bound ones stay free for their own.
  hand_order_.clear();
  for (int k = 0; k < active_; ++k)
    if (ps_.queue.binding(k) < 0) hand_order_.push_back(k);
  for (int k = 0; k < active_; ++k)
    if (ps_.queue.binding(k) >= 0) hand_order_.push_back(k);
}

}  // namespace mpmux::pool_detail
