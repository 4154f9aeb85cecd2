#include "pool/task_queue.hpp"

#include <algorithm>
#include <utility>

namespace mpmux::pool_detail {

TaskQueue::TaskQueue(const std::vector<int>& worker_requestors, Clock::duration patience)
    : bindings_(worker_requestors), lane_requestor_{-1}, patience_(patience) {
  if (std::none_of(bindings_.begin(), bindings_.end(), [](int r) { return r >= 0; })) return;
  lane_of_worker_.resize(bindings_.size(), 0);
  for (std::size_t w = 0; w < bindings_.size(); ++w) {
    int r = bindings_[w];
    if (r < 0) continue;
    auto it = std::find(lane_requestor_.begin(), lane_requestor_.end(), r);
    if (it == lane_requestor_.end()) {
      lane_requestor_.push_back(r);
      lanes_.emplace_back();
      it = lane_requestor_.end() - 1;
    }
    lane_of_worker_[w] = static_cast<std::size_t>(it - lane_requestor_.begin());
  }
}

int TaskQueue::binding(int worker) const {
  if (worker < 0 || static_cast<std::size_t>(worker) >= bindings_.size()) return -1;
  return bindings_[static_cast<std::size_t>(worker)];
}

std::size_t TaskQueue::lane_for_requestor(int requestor) const {
  if (requestor < 0) return 0;
  for (std::size_t l = 1; l < lane_requestor_.size(); ++l) {
    if (lane_requestor_[l] == requestor) return l;
  }
  return 0;
}

void TaskQueue::push(std::any item, int requestor) {
  // The time is needed only for the patience rule, so a pool without affinity never reads it.
  push(std::move(item), requestor, has_affinity() ? Clock::now() : Clock::time_point{});
}

void TaskQueue::push(std::any item, int requestor, Clock::time_point now) {
  std::size_t lane = has_affinity() ? lane_for_requestor(requestor) : 0;
  lanes_[lane].push_back(Entry{std::move(item), next_seq_++, now});
  ++size_;
}

std::size_t TaskQueue::oldest_lane() const {
  std::size_t best = lanes_.size();
  for (std::size_t l = 0; l < lanes_.size(); ++l) {
    if (lanes_[l].empty()) continue;
    if (best == lanes_.size() || lanes_[l].front().seq < lanes_[best].front().seq) best = l;
  }
  return best;
}

bool TaskQueue::take(std::size_t lane, std::any& out) {
  out = std::move(lanes_[lane].front().item);
  lanes_[lane].pop_front();
  --size_;
  return true;
}

bool TaskQueue::pop(int worker, std::any& out) {
  if (size_ == 0) return false;
  if (!has_affinity()) return take(0, out);
  return pop(worker, out, Clock::now());
}

std::size_t TaskQueue::own_lane(int worker) const {
  if (worker < 0 || static_cast<std::size_t>(worker) >= lane_of_worker_.size()) return 0;
  return lane_of_worker_[static_cast<std::size_t>(worker)];
}

bool TaskQueue::pop(int worker, std::any& out, Clock::time_point now) {
  if (size_ == 0) return false;
  if (!has_affinity()) return take(0, out);
  if (pop_preferred(worker, out, now)) return true;
  return take(oldest_lane(), out);  // unbound, or idle: rule 3
}

bool TaskQueue::pop_preferred(int worker, std::any& out) {
  if (size_ == 0 || !has_affinity()) return false;
  return pop_preferred(worker, out, Clock::now());
}

bool TaskQueue::pop_preferred(int worker, std::any& out, Clock::time_point now) {
  std::size_t own = own_lane(worker);
  if (size_ == 0 || own == 0) return false;
  std::size_t oldest = oldest_lane();
  if (now - lanes_[oldest].front().queued > patience_) return take(oldest, out);  // rule 1
  if (lanes_[own].empty()) return false;
  return take(own, out);  // rule 2
}

void TaskQueue::remove_if(const std::function<bool(const std::any&)>& drop,
                          const std::function<void(std::any&&)>& removed) {
  for (auto& lane : lanes_) {
    for (auto it = lane.begin(); it != lane.end();) {
      if (!drop(it->item)) {
        ++it;
        continue;
      }
      std::any item = std::move(it->item);
      it = lane.erase(it);
      --size_;
      removed(std::move(item));
    }
  }
}

}  // namespace mpmux::pool_detail
