#include "claim/shared_claimer.hpp"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <nlohmann/json.hpp>
#include <set>

#include "mpmux/error.hpp"
#include "store/fs.hpp"

namespace mpmux::claim {

namespace {

using Clock = std::chrono::steady_clock;

constexpr int kIndexDigits = 13;

std::string padded(std::uint64_t first) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%0*llu", kIndexDigits, static_cast<unsigned long long>(first));
  return buf;
}

std::string claim_key(std::uint64_t first, std::uint64_t epoch) {
  return "claims/" + padded(first) + "." + std::to_string(epoch);
}
std::string done_key(std::uint64_t first) { return "done/" + padded(first); }

// "claims/0000000000016.2" -> {16, 2}; nullopt for anything else (a stray object).
std::optional<std::pair<std::uint64_t, std::uint64_t>> parse_claim_key(const std::string& key) {
  constexpr std::string_view kPrefix = "claims/";
  if (key.size() < kPrefix.size() + kIndexDigits + 2 || key.compare(0, kPrefix.size(), kPrefix) != 0 ||
      key[kPrefix.size() + kIndexDigits] != '.')
    return std::nullopt;
  std::uint64_t first = 0, epoch = 0;
  for (std::size_t i = kPrefix.size(); i < kPrefix.size() + kIndexDigits; ++i) {
    if (key[i] < '0' || key[i] > '9') return std::nullopt;
    first = first * 10 + static_cast<std::uint64_t>(key[i] - '0');
  }
  for (std::size_t i = kPrefix.size() + kIndexDigits + 1; i < key.size(); ++i) {
    if (key[i] < '0' || key[i] > '9') return std::nullopt;
    epoch = epoch * 10 + static_cast<std::uint64_t>(key[i] - '0');
  }
  return std::make_pair(first, epoch);
}

std::optional<std::uint64_t> parse_done_key(const std::string& key) {
  constexpr std::string_view kPrefix = "done/";
  if (key.size() != kPrefix.size() + kIndexDigits || key.compare(0, kPrefix.size(), kPrefix) != 0)
    return std::nullopt;
  std::uint64_t first = 0;
  for (std::size_t i = kPrefix.size(); i < key.size(); ++i) {
    if (key[i] < '0' || key[i] > '9') return std::nullopt;
    first = first * 10 + static_cast<std::uint64_t>(key[i] - '0');
  }
  return first;
}

std::string host_name() {
  char buf[256] = {0};
  if (::gethostname(buf, sizeof buf - 1) != 0) return "host";
  return buf;
}

// A short wait while polling the store: a tenth of the lease, within [5 ms, 1 s].
std::chrono::milliseconds poll_interval(std::chrono::milliseconds ttl) {
  return std::clamp(ttl / 10, std::chrono::milliseconds(5), std::chrono::milliseconds(1000));
}

}  // namespace

SharedStoreClaimer::SharedStoreClaimer(std::string_view url, const store::StoreOptions& store_options,
                                       std::uint64_t total, const SharedClaimOptions& options)
    : store_(store::open_store(url, store_options)),
      total_(total),
      options_(options),
      id_(options.id.empty() ? host_name() + "-" + std::to_string(::getpid()) + "-" + posix::random_hex(6)
                             : options.id) {
  if (options_.min_batch == 0 || options_.max_batch < options_.min_batch)
    throw UsageError("shared claims: batch sizes must satisfy 1 <= min_batch <= max_batch");
  if (options_.heartbeat_interval * 2 > options_.ttl)
    throw UsageError("shared claims: the heartbeat interval must be at most half the lease time");
  if (!nlohmann::json::accept(options_.about)) throw UsageError("shared claims: 'about' is not JSON");
  const std::uint64_t regions =
      std::clamp<std::uint64_t>(total_ / 256, 1, std::max<std::uint64_t>(1, options_.regions));
  region_length_ = std::max<std::uint64_t>(1, (total_ + regions - 1) / regions);
  cursor_.resize(total_ == 0 ? 0 : (total_ + region_length_ - 1) / region_length_);
  for (std::size_t r = 0; r < cursor_.size(); ++r) cursor_[r] = r * region_length_;
  region_ = cursor_.empty() ? 0 : std::hash<std::string>{}(id_) % cursor_.size();
  beat();
  participants_ = std::max<std::size_t>(1, store_->list_keys("participants/").size());
  if (options_.heartbeat_thread) {
    heartbeat_store_ = store::open_store(url, store_options);
    heartbeat_ = std::thread([this] { heartbeat_loop(); });
  }
}

SharedStoreClaimer::~SharedStoreClaimer() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (heartbeat_.joinable()) heartbeat_.join();
  try {
    store_->remove("participants/" + id_);
  } catch (const std::exception&) {  // the heartbeat then simply stops changing
  }
}

std::string SharedStoreClaimer::heartbeat_text() {
  nlohmann::json about;
  {
    std::lock_guard<std::mutex> lock(about_mutex_);
    about = nlohmann::json::parse(options_.about);
  }
  return nlohmann::json(
             {{"participant", id_}, {"seq", ++beats_}, {"unix_ns", posix::unix_time_ns()}, {"about", about}})
      .dump();
}

void SharedStoreClaimer::set_about(std::string about) {
  if (!nlohmann::json::accept(about)) throw UsageError("shared claims: 'about' is not JSON");
  std::lock_guard<std::mutex> lock(about_mutex_);
  options_.about = std::move(about);
}

void SharedStoreClaimer::beat() { store_->put("participants/" + id_, heartbeat_text(), false); }

void SharedStoreClaimer::heartbeat_loop() {
  std::unique_lock<std::mutex> lock(mutex_);
  while (!wake_.wait_for(lock, options_.heartbeat_interval, [this] { return stopping_; })) {
    lock.unlock();
    try {
      heartbeat_store_->put("participants/" + id_, heartbeat_text(), false);
      participants_ = std::max<std::size_t>(1, heartbeat_store_->list_keys("participants/").size());
    } catch (const std::exception&) {
      // Missed beats only make others reclaim this participant's batches, whose commits are then
      // fenced: safe, and counted here for the caller to see.
      ++heartbeat_failures_;
    }
    lock.lock();
  }
}

SharedClaimStats SharedStoreClaimer::stats() const {
  SharedClaimStats s = stats_;
  s.heartbeat_failures = heartbeat_failures_;
  return s;
}

std::uint64_t SharedStoreClaimer::region_end(std::size_t region) const {
  return std::min<std::uint64_t>(total_, (region + 1) * region_length_);
}

std::uint64_t SharedStoreClaimer::remaining() const {
  std::uint64_t left = 0;
  for (std::size_t r = 0; r < cursor_.size(); ++r)
    left += region_end(r) - std::min(cursor_[r], region_end(r));
  return left;
}

// Fresh batches of each region start after the highest one claimed there so far.
void SharedStoreClaimer::learn_cursors() {
  std::vector<std::optional<std::pair<std::uint64_t, std::uint64_t>>> highest(cursor_.size());
  for (const std::string& key : store_->list_keys("claims/")) {
    auto parsed = parse_claim_key(key);
    if (!parsed || parsed->first >= total_) continue;
    auto& h = highest[parsed->first / region_length_];
    if (!h || parsed->first > h->first) h = parsed;
  }
  for (std::size_t r = 0; r < cursor_.size(); ++r) {
    if (!highest[r] || highest[r]->first < cursor_[r]) continue;
    if (auto rec = read_claim(claim_key(highest[r]->first, highest[r]->second)))
      cursor_[r] = std::max(cursor_[r], rec->first + rec->count);
  }
}

std::uint64_t SharedStoreClaimer::next_size() const {
  std::uint64_t size;
  // The growth of the batches: elements of a fast job must not wait on the store while the
  // batches are still small (each claim costs a round trip), and the rate of the first tiny batch
  // says little about the next ones.
  constexpr std::uint64_t kUntimedGrowth = 4, kTimedGrowth = 16;
  if (rate_ <= 0) {
    size = last_size_ == 0 ? std::max(options_.first_batch, options_.min_batch) : last_size_ * kUntimedGrowth;
  } else {
    size = static_cast<std::uint64_t>(std::llround(rate_ / options_.store_touches_per_s));
    if (last_size_ > 0) size = std::min(size, last_size_ * kTimedGrowth);
  }
  size = std::clamp(size, options_.min_batch, options_.max_batch);
  // Near the end, leave work for every participant so that the tail balances.
  const std::uint64_t share = (remaining() + 2 * participants_ - 1) / (2 * participants_);
  return std::min(size, std::max(share, options_.min_batch));
}

std::string SharedStoreClaimer::claim_content(std::uint64_t first, std::uint64_t count,
                                              std::uint64_t epoch) const {
  return nlohmann::json({{"participant", id_}, {"first", first}, {"count", count}, {"epoch", epoch}}).dump();
}

std::optional<SharedStoreClaimer::ClaimRecord> SharedStoreClaimer::read_claim(const std::string& key) {
  auto since = Clock::now();
  std::string last_etag;
  std::chrono::microseconds wait(20);
  for (;;) {
    std::optional<store::Object> obj = store_->get(key);
    if (!obj) return std::nullopt;
    if (!obj->data.empty()) {
      try {
        nlohmann::json j = nlohmann::json::parse(obj->data);
        ClaimRecord r;
        r.participant = j.at("participant").get<std::string>();
        r.first = j.at("first").get<std::uint64_t>();
        r.count = j.at("count").get<std::uint64_t>();
        r.epoch = j.at("epoch").get<std::uint64_t>();
        r.released_by = j.value("released_by", std::string());
        if (r.count == 0) throw StoreError("empty batch");
        return r;
      } catch (const std::exception& e) {
        throw StoreError(store_->url() + ": claim '" + key + "' is damaged: " + e.what());
      }
    }
    // With O_EXCL a claim is empty between its create and its write. One that stays empty for
    // the lease belongs to a creator that died in between: it counts as a batch of one element
    // that nobody started, and whose owner is unknown (stale at once).
    if (obj->etag != last_etag) {
      last_etag = obj->etag;
      since = Clock::now();
    }
    if (Clock::now() - since >= options_.ttl) {
      auto parsed = parse_claim_key(key);
      return ClaimRecord{"", parsed ? parsed->first : 0, 1, parsed ? parsed->second : 0, ""};
    }
    // Its creator writes it a moment after the create: look again soon, then less often.
    std::this_thread::sleep_for(wait);
    wait = std::min(wait * 2, std::chrono::microseconds(10000));
  }
}

std::optional<Batch> SharedStoreClaimer::take_fresh() {
  if (!cursors_known_) {
    learn_cursors();
    cursors_known_ = true;
  }
  for (;;) {
    if (cursor_.empty()) return std::nullopt;
    if (cursor_[region_] >= region_end(region_)) {
      // Used up: move to the region with most left, as the store tells now.
      learn_cursors();
      std::size_t best = region_;
      for (std::size_t r = 0; r < cursor_.size(); ++r)
        if (region_end(r) - cursor_[r] > region_end(best) - cursor_[best]) best = r;
      if (cursor_[best] >= region_end(best)) return std::nullopt;
      region_ = best;
    }
    std::uint64_t& next = cursor_[region_];
    // A batch cut short by its region's end does not hold back the growth of the next ones.
    const std::uint64_t uncut = next_size();
    const std::uint64_t size = std::min(uncut, region_end(region_) - next);
    const std::string key = claim_key(next, 0);
    const auto start = Clock::now();
    if (store_->put_if_absent(key, claim_content(next, size, 0))) {
      Batch b{next, size, 0, ""};
      // A create that took more than half the lease may have been seen empty for the whole lease
      // (O_EXCL) and counted as one element; then a batch at next + 1 exists and ours is cut to one.
      if (size > 1 && Clock::now() - start > options_.ttl / 2 && store_->get(claim_key(next + 1, 0))) {
        store_->put(key, claim_content(next, 1, 0));
        b.count = 1;
      }
      next += b.count;
      last_size_ = std::max(b.count, uncut);
      ++stats_.claimed;
      return b;
    }
    std::optional<ClaimRecord> rec = read_claim(key);
    if (!rec) throw StoreError(store_->url() + ": claim '" + key + "' vanished (claims are never removed)");
    next = rec->first + rec->count;
    if (rec->participant == id_) {  // our own create, reported as lost by a store that could not tell
      last_size_ = rec->count;
      ++stats_.claimed;
      return Batch{rec->first, rec->count, 0, ""};
    }
  }
}

std::optional<Batch> SharedStoreClaimer::take_stale() {
  std::map<std::uint64_t, std::uint64_t> highest_epoch;
  for (const std::string& key : store_->list_keys("claims/")) {
    if (auto parsed = parse_claim_key(key)) {
      auto [it, added] = highest_epoch.emplace(parsed->first, parsed->second);
      if (!added) it->second = std::max(it->second, parsed->second);
    }
  }
  std::set<std::uint64_t> done;
  for (const std::string& key : store_->list_keys("done/"))
    if (auto first = parse_done_key(key)) done.insert(*first);

  bool unfinished = false;
  unproven_ = 0;
  held_by_others_ = 0;
  const auto now = Clock::now();
  for (const auto& [first, epoch] : highest_epoch) {
    if (done.count(first) != 0) continue;
    unfinished = true;
    std::optional<ClaimRecord> rec = read_claim(claim_key(first, epoch));
    if (!rec || rec->participant == id_) continue;  // ours: the caller still works on it
    bool stale = rec->participant.empty();
    if (!stale) {
      std::optional<store::Object> hb = store_->get("participants/" + rec->participant);
      const std::string etag = hb ? hb->etag : std::string("(none)");
      auto [it, added] = sightings_.try_emplace(rec->participant, Sighting{etag, now, false});
      if (!added && it->second.etag != etag) it->second = Sighting{etag, now, true};
      stale = now - it->second.since >= options_.ttl;
      if (!stale) {
        held_by_others_ += rec->count;
        if (!it->second.beating) ++unproven_;
      }
    }
    if (!stale) continue;
    ++unproven_;  // until it is ours, or another reclaimer's seen beating
    if (store_->put_if_absent(claim_key(first, epoch + 1), claim_content(first, rec->count, epoch + 1))) {
      --unproven_;
      ++stats_.reclaimed;
      return Batch{first, rec->count, epoch + 1,
                   rec->participant.empty() ? rec->released_by : rec->participant};
    }
  }
  finished_ = !unfinished && remaining() == 0;
  return std::nullopt;
}

std::optional<Batch> SharedStoreClaimer::try_claim() {
  if (finished_) return std::nullopt;
  if (auto b = take_fresh()) return b;
  return take_stale();
}

std::optional<Batch> SharedStoreClaimer::claim() {
  // The last batches of others usually end soon: look again after 2 ms, then less often.
  std::chrono::milliseconds wait(2);
  for (;;) {
    if (auto b = try_claim()) return b;
    if (finished_) return std::nullopt;
    std::this_thread::sleep_for(wait);
    wait = std::min(wait * 2, poll_interval(options_.ttl));
  }
}

bool SharedStoreClaimer::superseded(const Batch& batch) {
  return store_->get(claim_key(batch.first, batch.epoch + 1)).has_value();
}

void SharedStoreClaimer::release(const Batch& batch) {
  const std::string record = nlohmann::json({{"participant", ""},
                                             {"first", batch.first},
                                             {"count", batch.count},
                                             {"epoch", batch.epoch + 1},
                                             {"released_by", id_}})
                                 .dump();
  if (store_->put_if_absent(claim_key(batch.first, batch.epoch + 1), record)) ++stats_.released;
}

bool SharedStoreClaimer::commit(const Batch& batch, std::chrono::nanoseconds elapsed) {
  const double seconds = std::chrono::duration<double>(elapsed).count();
  if (seconds > 0) {
    const double sample = static_cast<double>(batch.count) / seconds;
    rate_ = rate_ <= 0 ? sample : 0.5 * rate_ + 0.5 * sample;
  }
  const std::string record =
      nlohmann::json({{"participant", id_}, {"epoch", batch.epoch}, {"count", batch.count}}).dump();
  if (store_->put_if_absent(done_key(batch.first), record)) {
    ++stats_.committed;
    return true;
  }
  // Fenced: another commit of this batch came first. Kept under fenced/ so that stat counts it.
  store_->put_if_absent("fenced/" + padded(batch.first) + "." + std::to_string(batch.epoch) + "." + id_,
                        record);
  ++stats_.fenced;
  return false;
}

}  // namespace mpmux::claim
