// The session journal: framing, CRC-32C, group commit, torn tails, corruption, state folding.
#include "mpmux/journal.hpp"

#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <iterator>
#include <random>
#include <regex>
#include <string>
#include <tuple>
#include <vector>

#include "mpmux/error.hpp"
#include "mpmux/session.hpp"
#include "store/journal_scan.hpp"
#include "test_support.hpp"

namespace mpmux {
namespace {

namespace stdfs = std::filesystem;
using mpmux::test::in_child;
using mpmux::test::TempDir;

constexpr const char* kSession = "20261121T233512Z-7f3a";

std::string bytes_of(const stdfs::path& file) {
  std::ifstream in(file, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void write_bytes(const stdfs::path& file, const std::string& bytes) {
  std::ofstream(file, std::ios::binary | std::ios::trunc) << bytes;
}

Outcome done(std::uint64_t index, std::string result = "ok") {
  Outcome o;
  o.type = RecordType::done;
  o.index = index;
  o.result = std::move(result);
  o.host = "node01";
  return o;
}

Outcome failed(std::uint64_t index, bool final_attempt) {
  Outcome o;
  o.type = RecordType::failed;
  o.index = index;
  o.exit_code = 3;
  o.flags = final_attempt ? Outcome::kFinal : 0;
  o.stderr_tail = "boom";
  return o;
}

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const StoreError& e) {
    return e.what();
  }
  return "(no StoreError)";
}

// A journal with a header and `n` done records; returns the byte offset of each record.
struct Written {
  stdfs::path path;
  std::vector<std::size_t> offsets;  // of the outcome records
  std::size_t size = 0;
};

Written write_journal(const stdfs::path& dir, int n) {
  Written w;
  JournalWriter writer(dir, kSession, "node01", 42);
  std::size_t pos = stdfs::file_size(writer.path());
  for (int i = 0; i < n; ++i) {
    Outcome o = done(static_cast<std::uint64_t>(i), "result-" + std::to_string(i));
    std::string frame;
    append_record(frame, o);
    w.offsets.push_back(pos);
    pos += frame.size();
    writer.append(o);
  }
  writer.flush();
  w.path = writer.path();
  w.size = pos;
  return w;
}

// ---------------------------------------------------------------------------------------------

TEST(Crc32c, MatchesTheKnownVectors) {
  const std::string check = "123456789";
  const std::string zeros(32, '\0'), ones(32, '\xFF');
  std::string ascending;
  for (int i = 0; i < 32; ++i) ascending.push_back(static_cast<char>(i));
  // RFC 3720 (iSCSI) B.4 vectors and the CRC catalogue's check value.
  for (auto fn : {&crc32c, &detail::crc32c_portable}) {
    EXPECT_EQ(fn(check.data(), check.size(), 0), 0xE3069283u);
    EXPECT_EQ(fn(zeros.data(), zeros.size(), 0), 0x8A9136AAu);
    EXPECT_EQ(fn(ones.data(), ones.size(), 0), 0x62A8AB43u);
    EXPECT_EQ(fn(ascending.data(), ascending.size(), 0), 0x46DD794Eu);
    EXPECT_EQ(fn("", 0, 0), 0u);
  }
}

TEST(Crc32c, ChainsAndAgreesWithThePortableVersionAtEveryLengthAndAlignment) {
  std::mt19937 rng(7);
  std::string data(1000, '\0');
  for (char& c : data) c = static_cast<char>(rng());
  for (std::size_t start = 0; start < 9; ++start) {
    for (std::size_t n = 0; start + n <= 300; n += 7) {
      const char* p = data.data() + start;
      std::uint32_t whole = crc32c(p, n);
      EXPECT_EQ(whole, detail::crc32c_portable(p, n)) << start << " " << n;
      EXPECT_EQ(crc32c(p + n / 3, n - n / 3, crc32c(p, n / 3)), whole) << start << " " << n;
    }
  }
}

TEST(Journal, RecordsAreFramedLittleEndianWithTheirChecksum) {
  Outcome o = done(0x0102030405060708ull, "R");
  o.attempt = 0x0A0B0C0D;
  o.worker = 7;
  o.t_start = -2;
  o.t_end = 0x1122334455667788;
  o.pid = 0x01020304;
  o.exit_code = -1;
  o.signal = 9;
  o.flags = Outcome::kTimedOut;
  o.host = "h";
  o.stderr_tail = "EE";
  std::string frame;
  append_record(frame, o);
  auto u8 = [&](std::size_t at) { return static_cast<unsigned>(static_cast<unsigned char>(frame[at])); };
  auto le = [&](std::size_t at, int n) {
    std::uint64_t v = 0;
    for (int k = n - 1; k >= 0; --k) v = v << 8 | u8(at + k);
    return v;
  };
  const std::size_t body = 33 + 23 + 1 + 1 + 2;
  ASSERT_EQ(frame.size(), 8 + body);
  EXPECT_EQ(le(0, 4), body);
  EXPECT_EQ(le(4, 4), crc32c(frame.data() + 8, body));
  EXPECT_EQ(u8(8), 2u);  // done
  EXPECT_EQ(le(9, 8), 0x0102030405060708ull);
  EXPECT_EQ(le(17, 4), 0x0A0B0C0Du);
  EXPECT_EQ(le(21, 4), 7u);
  EXPECT_EQ(le(25, 8), 0xFFFFFFFFFFFFFFFEull);
  EXPECT_EQ(le(33, 8), 0x1122334455667788ull);
  EXPECT_EQ(le(41, 4), 0x01020304u);      // pid
  EXPECT_EQ(le(45, 4), 0xFFFFFFFFu);      // exit code -1
  EXPECT_EQ(le(49, 4), 9u);               // signal
  EXPECT_EQ(u8(53), Outcome::kTimedOut);  // flags
  EXPECT_EQ(le(54, 2), 1u);               // host length
  EXPECT_EQ(frame.substr(56, 1), "h");
  EXPECT_EQ(le(57, 4), 1u);  // result length
  EXPECT_EQ(frame.substr(61, 1), "R");
  EXPECT_EQ(le(62, 4), 2u);  // stderr length
  EXPECT_EQ(frame.substr(66, 2), "EE");
}

TEST(Journal, OnlyDoneAndFailedOutcomesCanBeRecorded) {
  Outcome o = done(1);
  o.type = RecordType::header;
  std::string frame;
  EXPECT_NE(error_of([&] { append_record(frame, o); }).find("only done and failed"), std::string::npos);
  EXPECT_TRUE(frame.empty());
}

TEST(Journal, WriteAndReadRoundTripEveryField) {
  TempDir tmp;
  Outcome a = done(5, std::string("bin\0ary\xFF", 8));
  a.attempt = 2;
  a.worker = 3;
  a.t_start = 1763768112000000001;
  a.t_end = 1763768113000000002;
  a.pid = 4242;
  a.flags = Outcome::kResultTruncated;
  a.host = "n\xC3\xBC-1";
  a.stderr_tail = std::string(4096, 'e');
  Outcome b = failed(0, true);
  b.exit_code = -1;
  b.signal = 9;
  b.flags |= Outcome::kTimedOut;
  Outcome c = done(7, "");

  stdfs::path path;
  {
    JournalWriter w(tmp.path(), kSession, "node01", 42);
    path = w.path();
    w.append(a);
    w.append(b);
    w.append(c);
    EXPECT_EQ(w.records(), 3u);
    w.flush();
  }
  JournalFile j = read_journal(path, kSession);
  EXPECT_EQ(j.path, path);
  EXPECT_EQ(j.session, kSession);
  EXPECT_EQ(j.valid_bytes, stdfs::file_size(path));
  EXPECT_EQ(j.torn_bytes, 0u);
  ASSERT_EQ(j.outcomes.size(), 3u);
  const Outcome* expected[] = {&a, &b, &c};
  for (int k = 0; k < 3; ++k) {
    const Outcome& e = *expected[k];
    const Outcome& g = j.outcomes[k];
    EXPECT_EQ(g.type, e.type);
    EXPECT_EQ(g.index, e.index);
    EXPECT_EQ(g.attempt, e.attempt);
    EXPECT_EQ(g.worker, e.worker);
    EXPECT_EQ(g.t_start, e.t_start);
    EXPECT_EQ(g.t_end, e.t_end);
    EXPECT_EQ(g.pid, e.pid);
    EXPECT_EQ(g.exit_code, e.exit_code);
    EXPECT_EQ(g.signal, e.signal);
    EXPECT_EQ(g.flags, e.flags);
    EXPECT_EQ(g.host, e.host);
    EXPECT_EQ(g.result, e.result);
    EXPECT_EQ(g.stderr_tail, e.stderr_tail);
  }
}

TEST(Journal, AScanHandsOutWhoRanEachAttemptAndWhen) {
  TempDir tmp;
  Outcome a = done(5, "r");
  a.attempt = 2;
  a.worker = 3;
  a.t_start = 1763768112000000001;
  a.t_end = 1763768113000000002;
  a.pid = 4242;
  a.host = "n\xC3\xBC-1";
  Outcome b = failed(0, true);
  b.worker = 7;
  b.t_start = 11;
  b.t_end = 12;
  b.pid = 99;
  b.host = "node02";
  stdfs::path path;
  {
    JournalWriter w(tmp.path(), kSession, "node01", 42);
    path = w.path();
    w.append(a);
    w.append(b);
  }
  std::vector<std::tuple<std::uint64_t, std::uint32_t, std::uint32_t, std::int64_t, std::int64_t,
                         std::uint32_t, std::string>>
      seen;
  journal_scan::for_each_record(path, kSession, [&](const journal_scan::RecordRef& r) {
    seen.emplace_back(r.index, r.attempt, r.worker, r.t_start, r.t_end, r.pid, std::string(r.host));
  });
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[0], std::make_tuple(a.index, a.attempt, a.worker, a.t_start, a.t_end, a.pid, a.host));
  EXPECT_EQ(seen[1], std::make_tuple(b.index, b.attempt, b.worker, b.t_start, b.t_end, b.pid, b.host));
}

TEST(Journal, WriterNamesItsFileAfterHostPidAndTime) {
  TempDir tmp;
  JournalWriter w(tmp.path(), kSession, "rack/7 node", 4242);
  EXPECT_EQ(w.path().parent_path(), tmp.path());
  EXPECT_TRUE(std::regex_match(w.path().filename().string(), std::regex("rack_7_node-4242-[0-9]{19}\\.mjl")))
      << w.path();
  JournalWriter again(tmp.path(), kSession, "rack/7 node", 4242);
  EXPECT_NE(again.path(), w.path());
}

TEST(Journal, HeaderIsDurableWhenTheWriterIsConstructed) {
  TempDir tmp;
  JournalWriter w(tmp.path(), kSession, "node01", 42);
  EXPECT_EQ(w.syncs(), 1u);
  EXPECT_EQ(w.buffered_bytes(), 0u);
  JournalFile j = read_journal(w.path(), kSession);
  EXPECT_EQ(j.session, kSession);
  EXPECT_TRUE(j.outcomes.empty());
  EXPECT_EQ(j.valid_bytes, stdfs::file_size(w.path()));
}

// An outcome of a task that ran `seconds`.
Outcome done_after(std::uint64_t index, double seconds) {
  Outcome o = done(index);
  o.t_start = 1'000'000'000;
  o.t_end = o.t_start + static_cast<std::int64_t>(seconds * 1e9);
  return o;
}

TEST(Journal, AppendMakesNoSystemCallSyncWritesEachMillisecondAndCommitsOncePerInterval) {
  TempDir tmp;
  std::int64_t now = 0;
  JournalWriter w(tmp.path(), kSession, "node01", 42, 0.2);
  w.set_clock([&] { return now; });
  const auto header_size = stdfs::file_size(w.path());

  w.append(done_after(0, 10));  // long tasks: the interval is the longest, 0.2 s
  w.append(done_after(1, 10));
  EXPECT_GT(w.buffered_bytes(), 0u);
  EXPECT_EQ(stdfs::file_size(w.path()), header_size);

  now = 999'999;  // within a millisecond of the last write: nothing is written
  w.sync();
  EXPECT_EQ(stdfs::file_size(w.path()), header_size);
  now = 1'000'000;  // written (a killed process loses nothing now), not synced
  w.sync();
  EXPECT_EQ(w.buffered_bytes(), 0u);
  EXPECT_EQ(read_journal(w.path(), kSession).outcomes.size(), 2u);
  EXPECT_EQ(w.syncs(), 1u);

  now = 199'999'999;  // just inside the interval: no fdatasync
  w.sync();
  EXPECT_EQ(w.syncs(), 1u);
  now = 200'000'000;
  w.sync();
  EXPECT_EQ(w.syncs(), 2u);

  now = 900'000'000;  // the interval passed, but nothing new: no fdatasync
  w.sync();
  EXPECT_EQ(w.syncs(), 2u);

  w.append(done_after(2, 10));  // the interval is counted from the last fdatasync, long ago
  w.sync();
  EXPECT_EQ(w.syncs(), 3u);
  w.append(done_after(3, 10));
  now += 100'000'000;
  w.sync();
  EXPECT_EQ(w.syncs(), 3u);
  EXPECT_EQ(w.buffered_bytes(), 0u);
  w.flush();  // flush does not wait for the interval
  EXPECT_EQ(w.syncs(), 4u);
  w.flush();
  EXPECT_EQ(w.syncs(), 4u);
  EXPECT_EQ(read_journal(w.path(), kSession).outcomes.size(), 4u);
}

TEST(Journal, TheCommitIntervalIsAQuarterOfTheMedianTaskWithinItsBounds) {
  TempDir tmp;
  JournalWriter w(tmp.path(), kSession, "node01", 42, 0.2);
  w.set_fsync(false);  // no fdatasync: its cost sets no floor
  EXPECT_DOUBLE_EQ(w.commit_interval(), 0.2) << "before any record: the longest";
  for (int i = 0; i < 64; ++i) w.append(done_after(i, 0.2));
  EXPECT_DOUBLE_EQ(w.commit_interval(), 0.05);
  // The median, not the mean: a few long tasks among short ones do not lengthen it.
  for (int i = 0; i < 20; ++i) w.append(done_after(i, 3600));
  EXPECT_DOUBLE_EQ(w.commit_interval(), 0.05);
  // Only the last 64 records count: long tasks now, the longest interval.
  for (int i = 0; i < 64; ++i) w.append(done_after(i, 8));
  EXPECT_DOUBLE_EQ(w.commit_interval(), 0.2);
  // Tiny tasks: no shorter than 10 ms.
  for (int i = 0; i < 64; ++i) w.append(done_after(i, 0.0001));
  EXPECT_DOUBLE_EQ(w.commit_interval(), 0.01);
  // Records framed on workers count the same way.
  std::string frames;
  for (int i = 0; i < 64; ++i) append_record(frames, done_after(i, 0.12));
  w.append_framed(frames);
  EXPECT_DOUBLE_EQ(w.commit_interval(), 0.03);
  w.flush();
}

TEST(Journal, DestructorFlushesBufferedRecords) {
  TempDir tmp;
  stdfs::path path;
  {
    JournalWriter w(tmp.path(), kSession, "node01", 42, 3600);
    path = w.path();
    for (int i = 0; i < 10; ++i) w.append(done(i));
  }
  EXPECT_EQ(read_journal(path, kSession).outcomes.size(), 10u);
}

TEST(Journal, AppendFramedTakesRecordsVerbatimAfterCheckingThem) {
  TempDir tmp;
  JournalWriter w(tmp.path(), kSession, "rank0", 1);
  std::string batch;
  append_record(batch, done(3, "from rank 2"));
  append_record(batch, failed(4, false));
  w.append_framed(batch);
  EXPECT_EQ(w.records(), 2u);
  EXPECT_EQ(w.buffered_bytes(), batch.size());

  auto refused = [&](std::string bad) {
    std::string error = error_of([&] { w.append_framed(bad); });
    EXPECT_EQ(w.records(), 2u);
    EXPECT_EQ(w.buffered_bytes(), batch.size());
    return error;
  };
  std::string flipped = batch;
  flipped.back() ^= 1;
  EXPECT_NE(refused(flipped).find("checksum mismatch"), std::string::npos);
  EXPECT_NE(refused(batch.substr(0, batch.size() - 1)).find("runs past the end"), std::string::npos);
  EXPECT_NE(refused(batch + "\x01\x02").find("at byte " + std::to_string(batch.size())), std::string::npos);
  std::string short_length = batch;
  short_length[0] = 5;
  EXPECT_NE(refused(short_length).find("impossible record length"), std::string::npos);
  std::string header_type;
  append_record(header_type, done(1));
  header_type[8] = static_cast<char>(RecordType::header);
  std::uint32_t crc = crc32c(header_type.data() + 8, header_type.size() - 8);
  for (int k = 0; k < 4; ++k) header_type[4 + k] = static_cast<char>(crc >> (8 * k));
  EXPECT_NE(refused(header_type).find("not a done or failed record"), std::string::npos);

  w.flush();
  JournalFile j = read_journal(w.path(), kSession);
  ASSERT_EQ(j.outcomes.size(), 2u);
  EXPECT_EQ(j.outcomes[0].result, "from rank 2");
  EXPECT_EQ(j.outcomes[1].index, 4u);
}

struct TornCase {
  const char* name;
  std::function<std::string(const Written&, std::string)> damage;
};

TEST(Journal, TornTailsAreIgnoredAndCutOnlyWhenAsked) {
  const std::vector<TornCase> cases = {
      {"last record cut short", [](const Written&, std::string b) { return b.substr(0, b.size() - 5); }},
      {"only part of the last length field",
       [](const Written& w, std::string b) { return b.substr(0, w.offsets.back() + 3); }},
      {"last record fails its checksum at the end",
       [](const Written&, std::string b) {
         b[b.size() - 2] ^= 0x40;
         return b;
       }},
      {"zeros after the last record",
       [](const Written&, std::string b) { return b + std::string(4096, '\0'); }},
      {"last record zeroed from its middle",
       [](const Written& w, std::string b) {
         std::size_t from = w.offsets.back() + 20;
         return b.substr(0, from) + std::string(b.size() - from + 4000, '\0');
       }},
  };
  for (const TornCase& c : cases) {
    SCOPED_TRACE(c.name);
    TempDir tmp;
    Written w = write_journal(tmp.path(), 5);
    std::string damaged = c.damage(w, bytes_of(w.path));
    write_bytes(w.path, damaged);
    bool zeros_only = std::string(c.name) == "zeros after the last record";
    std::size_t valid = zeros_only ? w.size : w.offsets.back();

    JournalFile j = read_journal(w.path, kSession);
    EXPECT_EQ(j.outcomes.size(), zeros_only ? 5u : 4u);
    EXPECT_EQ(j.valid_bytes, valid);
    EXPECT_EQ(j.torn_bytes, damaged.size() - valid);
    EXPECT_EQ(bytes_of(w.path), damaged);  // not asked to cut

    j = read_journal(w.path, kSession, true);
    EXPECT_EQ(j.torn_bytes, damaged.size() - valid);
    EXPECT_EQ(stdfs::file_size(w.path), valid);
    EXPECT_EQ(bytes_of(w.path), damaged.substr(0, valid));
    j = read_journal(w.path, kSession);
    EXPECT_EQ(j.torn_bytes, 0u);
    EXPECT_EQ(j.outcomes.size(), zeros_only ? 5u : 4u);
  }
}

// The reader walks a file through a window of a few MiB; records straddle its edges, and one
// record is larger than the window.
TEST(Journal, ALargeJournalIsReadAcrossWindowBoundaries) {
  TempDir tmp;
  std::vector<std::size_t> sizes;
  for (int i = 0; i < 40; ++i) sizes.push_back(static_cast<std::size_t>(i) * 7919 * 37 % 400000);
  sizes[17] = 9u << 20;
  stdfs::path path;
  {
    JournalWriter w(tmp.path(), kSession, "node01", 42);
    path = w.path();
    for (std::size_t i = 0; i < sizes.size(); ++i)
      w.append(done(i, std::string(sizes[i], static_cast<char>('a' + i % 26))));
  }
  const auto size = stdfs::file_size(path);
  stdfs::resize_file(path, size + (5u << 20));  // zeros, as after a crash, beyond one window
  JournalFile j = read_journal(path, kSession, true);
  ASSERT_EQ(j.outcomes.size(), sizes.size());
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    EXPECT_EQ(j.outcomes[i].index, i);
    EXPECT_EQ(j.outcomes[i].result, std::string(sizes[i], static_cast<char>('a' + i % 26)));
  }
  EXPECT_EQ(j.valid_bytes, size);
  EXPECT_EQ(j.torn_bytes, 5u << 20);
  EXPECT_EQ(stdfs::file_size(path), size);
}

TEST(Journal, AFileShorterThanItsHeaderIsAllTornTail) {
  TempDir tmp;
  Written w = write_journal(tmp.path(), 0);
  write_bytes(w.path, bytes_of(w.path).substr(0, 20));
  JournalFile j = read_journal(w.path, kSession, true);
  EXPECT_EQ(j.session, "");
  EXPECT_EQ(j.valid_bytes, 0u);
  EXPECT_EQ(j.torn_bytes, 20u);
  EXPECT_EQ(stdfs::file_size(w.path), 0u);
  EXPECT_EQ(read_journal(w.path, kSession).torn_bytes, 0u);
}

TEST(Journal, CorruptionInTheMiddleIsReportedWithItsOffsetAndNothingIsRewritten) {
  struct Case {
    const char* name;
    std::size_t record;  // which record is damaged
    std::function<void(std::string&, std::size_t at)> damage;
  };
  const std::vector<Case> cases = {
      {"flipped payload byte", 2, [](std::string& b, std::size_t at) { b[at + 50] ^= 0x01; }},
      {"length running past the end", 1,
       [](std::string& b, std::size_t at) { b[at + 2] = 0x10; }},  // ~1 MiB, past EOF
      {"impossible length", 3, [](std::string& b, std::size_t at) { b[at + 3] = 0x7F; }},
      {"unknown type with a valid checksum", 2,
       [](std::string& b, std::size_t at) {
         b[at + 8] = 9;
         std::uint32_t length = static_cast<unsigned char>(b[at]) | static_cast<unsigned char>(b[at + 1])
                                                                        << 8;
         std::uint32_t crc = crc32c(b.data() + at + 8, length);
         for (int k = 0; k < 4; ++k) b[at + 4 + k] = static_cast<char>(crc >> (8 * k));
       }},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    TempDir tmp;
    Written w = write_journal(tmp.path(), 5);
    std::string bytes = bytes_of(w.path);
    c.damage(bytes, w.offsets[c.record]);
    write_bytes(w.path, bytes);
    std::string expected =
        "journal '" + w.path.string() + "': corrupt record at byte " + std::to_string(w.offsets[c.record]);
    for (bool cut : {false, true}) {
      EXPECT_EQ(error_of([&] { read_journal(w.path, kSession, cut); }).rfind(expected, 0), 0u);
      EXPECT_EQ(bytes_of(w.path), bytes);
    }
  }
}

TEST(Journal, AJournalOfAnotherSessionIsRefused) {
  TempDir tmp;
  Written w = write_journal(tmp.path(), 1);
  EXPECT_EQ(
      error_of([&] { read_journal(w.path, "20000101T000000Z-beef"); }),
      "journal '" + w.path.string() + "' belongs to session " + kSession + ", not 20000101T000000Z-beef");
  EXPECT_EQ(read_journal(w.path, "").session, kSession);
}

TEST(Journal, AFileWithoutHeaderIsCorrupt) {
  TempDir tmp;
  std::string records;
  append_record(records, done(0));
  append_record(records, done(1));
  write_bytes(tmp.path() / "x.mjl", records);
  EXPECT_NE(error_of([&] {
              read_journal(tmp.path() / "x.mjl", kSession);
            }).find("corrupt record at byte 0: the first record is not a header"),
            std::string::npos);
}

// A file size limit stands in for a full disk: write(2) fails with EFBIG part-way.
TEST(Journal, AWriteErrorIsReportedAndTheUnwrittenRecordsStayBuffered) {
  TempDir tmp;
  stdfs::path dir = tmp.path();
  std::string outcome = in_child([&]() -> std::string {
    std::signal(SIGXFSZ, SIG_IGN);
    JournalWriter w(dir, kSession, "node01", 42);
    rlimit limit{};
    ::getrlimit(RLIMIT_FSIZE, &limit);
    const rlim_t unlimited = limit.rlim_max;
    limit.rlim_cur = stdfs::file_size(w.path()) + 300;
    if (::setrlimit(RLIMIT_FSIZE, &limit) != 0) return "setrlimit failed";
    for (int i = 0; i < 10; ++i) w.append(done(i, std::string(100, 'r')));
    const std::size_t appended = w.buffered_bytes();
    std::string error = error_of([&] { w.flush(); });
    std::string report = error + "\n";
    report +=
        w.buffered_bytes() > 0 && w.buffered_bytes() < appended ? "partly written\n" : "not partly written\n";
    report +=
        "records in the file: " + std::to_string(read_journal(w.path(), kSession).outcomes.size()) + "\n";
    limit.rlim_cur = unlimited;
    if (::setrlimit(RLIMIT_FSIZE, &limit) != 0) return "setrlimit failed";
    w.flush();
    report += "after the retry: " + std::to_string(read_journal(w.path(), kSession).outcomes.size()) + "\n";
    report += "buffered: " + std::to_string(w.buffered_bytes());
    return report;
  });
  std::string path_prefix = "journal '" + (dir / "node01-42-").string();
  EXPECT_EQ(outcome.rfind(path_prefix, 0), 0u) << outcome;
  EXPECT_NE(outcome.find(".mjl': write failed: File too large\n"), std::string::npos) << outcome;
  EXPECT_NE(outcome.find("partly written\nrecords in the file: 1\n"), std::string::npos) << outcome;
  EXPECT_NE(outcome.find("after the retry: 10\nbuffered: 0"), std::string::npos) << outcome;
}

TEST(Journal, StateFoldsDoneFailedFinalAndAttemptsAcrossFiles) {
  TempDir tmp;
  {
    JournalWriter a(tmp.path(), kSession, "node01", 1);
    JournalWriter b(tmp.path(), kSession, "node02", 2);
    a.append(done(0));
    a.append(failed(1, false));  // retry remains: still pending
    a.append(failed(2, true));   // failed for good
    a.append(failed(3, true));
    b.append(done(3));  // a later success wins over a final failure
    a.append(failed(5, false));
    b.append(failed(5, true));
    b.append(done(6));
    a.append(done(6));  // done twice (re-run after a crash)
  }
  std::ofstream(tmp.path() / "notes.txt") << "ignored";
  SessionState s = read_session_state(tmp.path(), kSession, 8);
  using S = ElementStatus;
  EXPECT_EQ(s.status, (std::vector<S>{S::done, S::pending, S::failed, S::done, S::pending, S::failed, S::done,
                                      S::pending}));
  EXPECT_EQ(s.attempts, (std::vector<std::uint32_t>{1, 1, 1, 2, 0, 2, 2, 0}));
  EXPECT_EQ(s.done, 3u);
  EXPECT_EQ(s.failed, 2u);
  EXPECT_EQ(s.torn_bytes, 0u);
  EXPECT_EQ(s.pending_indices(), (std::vector<std::uint64_t>{1, 4, 7}));
  EXPECT_EQ(s.pending_indices(true), (std::vector<std::uint64_t>{1, 2, 4, 5, 7}));
}

TEST(Journal, StateCountsTornTailsAndCutsThemWhenAsked) {
  TempDir tmp;
  Written w1 = write_journal(tmp.path(), 3);
  Written w2 = write_journal(tmp.path(), 2);
  write_bytes(w1.path, bytes_of(w1.path).substr(0, w1.size - 4));
  write_bytes(w2.path, bytes_of(w2.path) + std::string(100, '\0'));
  std::uint64_t torn = (w1.size - 4 - w1.offsets.back()) + 100;

  SessionState s = read_session_state(tmp.path(), kSession, 3);
  EXPECT_EQ(s.torn_bytes, torn);
  EXPECT_EQ(s.done, 2u);  // elements 0 and 1; element 2's only record was torn
  EXPECT_EQ(stdfs::file_size(w2.path), w2.size + 100);

  s = read_session_state(tmp.path(), kSession, 3, true);
  EXPECT_EQ(s.torn_bytes, torn);
  EXPECT_EQ(stdfs::file_size(w1.path), w1.offsets.back());
  EXPECT_EQ(stdfs::file_size(w2.path), w2.size);
  EXPECT_EQ(read_session_state(tmp.path(), kSession, 3).torn_bytes, 0u);
}

TEST(Journal, StateRefusesARecordBeyondTheElementSet) {
  TempDir tmp;
  Written w = write_journal(tmp.path(), 4);
  EXPECT_EQ(error_of([&] { read_session_state(tmp.path(), kSession, 3); }),
            "journal '" + w.path.string() + "': record at byte " + std::to_string(w.offsets[3]) +
                " names element 3, but the session has 3");
}

TEST(Journal, StateRefusesAJournalOfAnotherSession) {
  TempDir tmp;
  write_journal(tmp.path(), 1);
  EXPECT_NE(error_of([&] {
              read_session_state(tmp.path(), "20000101T000000Z-beef", 3);
            }).find("belongs to session"),
            std::string::npos);
}

TEST(Journal, WriterOnASessionWritesIntoItsJournalDirectory) {
  TempDir tmp;
  ParsedElements elements;
  for (int i = 0; i < 4; ++i) elements.elements.push("{}");
  Session session = Session::create(create_mux(tmp.path(), elements, ""));
  stdfs::path path;
  {
    JournalWriter w(session, "node01", 42);
    path = w.path();
    w.append(done(2));
  }
  EXPECT_EQ(path.parent_path(), session.journal_dir());
  EXPECT_EQ(read_journal(path, session.id().session).outcomes.size(), 1u);
  SessionState s = read_session_state(session);
  EXPECT_EQ(s.status.size(), 4u);
  EXPECT_EQ(s.pending_indices(), (std::vector<std::uint64_t>{0, 1, 3}));
}

TEST(Journal, CountsAreTheStateWithoutItsPerElementVectors) {
  TempDir tmp;
  ParsedElements elements;
  for (int i = 0; i < 6; ++i) elements.elements.push("{}");
  Session session = Session::create(create_mux(tmp.path(), elements, ""));
  stdfs::path path;
  {
    JournalWriter w(session, "node01", 42);
    path = w.path();
    for (const Outcome& o : {done(0), failed(1, true), failed(2, false), failed(3, true), done(3), done(4)})
      w.append(o);
  }
  write_bytes(path, bytes_of(path) + std::string(7, '\0'));  // a torn tail
  const SessionCounts counts = read_session_counts(session);
  const SessionState state = read_session_state(session);
  EXPECT_EQ(counts.total, 6u);
  EXPECT_EQ(counts.done, 3u);
  EXPECT_EQ(counts.failed, 1u);
  EXPECT_EQ(counts.torn_bytes, 7u);
  EXPECT_EQ(std::tie(counts.done, counts.failed, counts.torn_bytes),
            std::tie(state.done, state.failed, state.torn_bytes));
}

}  // namespace
}  // namespace mpmux
