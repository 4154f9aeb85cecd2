// The C ABI's boundary (include/mpmux/mpmux.h): errors become codes and thread-local messages,
// nothing throws across it, the ABI version is checked, and its calls reach the library.
#include "mpmux/mpmux.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <fstream>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "mpmux/element_set.hpp"
#include "mpmux/results.hpp"
#include "mpmux/session.hpp"
#include "test_support.hpp"

namespace {

using mpmux::test::TempDir;
using ::testing::HasSubstr;

struct Freed {
  void operator()(char* p) const { mpmux_free(p); }
};
using CString = std::unique_ptr<char, Freed>;

struct ElementsFreed {
  void operator()(mpmux_elements* p) const { mpmux_elements_free(p); }
};
struct OptionsFreed {
  void operator()(mpmux_options* p) const { mpmux_options_free(p); }
};
struct RunClosed {
  void operator()(mpmux_run* p) const { mpmux_close(p); }
};
using Elements = std::unique_ptr<mpmux_elements, ElementsFreed>;
using Options = std::unique_ptr<mpmux_options, OptionsFreed>;
using RunHandle = std::unique_ptr<mpmux_run, RunClosed>;

std::string last_error() { return mpmux_last_error(); }

// A mux of `n` elements {"i":k} under `root`; returns its directory.
std::string make_mux(const TempDir& dir, int n) {
  mpmux_elements* raw = nullptr;
  EXPECT_EQ(mpmux_elements_new(&raw), MPMUX_OK);
  Elements set(raw);
  for (int k = 0; k < n; ++k) {
    const std::string text = "{\"i\":" + std::to_string(k) + "}";
    EXPECT_EQ(mpmux_elements_add(set.get(), text.data(), text.size()), MPMUX_OK) << last_error();
  }
  char* mux = nullptr;
  EXPECT_EQ(mpmux_elements_create(set.get(), (dir.path() / "mux").c_str(), nullptr, &mux), MPMUX_OK)
      << last_error();
  return CString(mux).get();
}

std::string make_session(const std::string& mux) {
  char* id = nullptr;
  EXPECT_EQ(mpmux_session_create(mux.c_str(), &id), MPMUX_OK) << last_error();
  return CString(id).get();
}

RunHandle open_run(const std::string& id, const mpmux_options* options = nullptr) {
  mpmux_run* run = nullptr;
  EXPECT_EQ(mpmux_open(id.c_str(), options, &run), MPMUX_OK) << last_error();
  return RunHandle(run);
}

mpmux_element empty_element() {
  mpmux_element e{};
  e.size = sizeof e;
  return e;
}

std::vector<mpmux::ElementResult> results_of(const std::string& id) {
  return mpmux::read_results(mpmux::Session::open(mpmux::MuxId::parse(id)));
}

TEST(CApi, AbiVersionIsTheHeaders) { EXPECT_EQ(mpmux_abi_version(), MPMUX_ABI_VERSION); }

TEST(CApi, AProgramBuiltForAnotherAbiIsRefusedNamingBothVersions) {
  mpmux_run* run = nullptr;
  EXPECT_EQ(mpmux_open_abi(MPMUX_ABI_VERSION + 1, "file:///x#s=y", nullptr, &run), MPMUX_ABI_MISMATCH);
  EXPECT_EQ(run, nullptr);
  EXPECT_THAT(last_error(), HasSubstr("ABI version " + std::to_string(MPMUX_ABI_VERSION + 1)));
  EXPECT_THAT(last_error(), HasSubstr("ABI version " + std::to_string(MPMUX_ABI_VERSION) + ";"));
  mpmux_elements* set = nullptr;
  EXPECT_EQ(mpmux_elements_new_abi(0, &set), MPMUX_ABI_MISMATCH);
  mpmux_options* options = nullptr;
  EXPECT_EQ(mpmux_options_new_abi(MPMUX_ABI_VERSION + 1, &options), MPMUX_ABI_MISMATCH);
  EXPECT_EQ(mpmux_open_fint_abi(MPMUX_ABI_VERSION + 1, "file:///x#s=y", 0, nullptr, &run),
            MPMUX_ABI_MISMATCH);
}

TEST(CApi, NullArgumentsAreUsageErrorsNamingTheArgument) {
  mpmux_element e = empty_element();
  EXPECT_EQ(mpmux_next(nullptr, &e), MPMUX_USAGE);
  EXPECT_EQ(last_error(), "mpmux_next: run is NULL");
  EXPECT_EQ(mpmux_session_create(nullptr, nullptr), MPMUX_USAGE);
  EXPECT_EQ(last_error(), "mpmux_session_create: mux is NULL");
  mpmux_elements* raw = nullptr;
  ASSERT_EQ(mpmux_elements_new(&raw), MPMUX_OK);
  Elements set(raw);
  EXPECT_EQ(mpmux_elements_add(set.get(), nullptr, 3), MPMUX_USAGE);
  EXPECT_EQ(last_error(), "mpmux_elements_add: json is NULL");
  EXPECT_EQ(mpmux_open(nullptr, nullptr, nullptr), MPMUX_USAGE);
  EXPECT_EQ(mpmux_stat_json("file:///x#s=y", nullptr), MPMUX_USAGE);
  EXPECT_EQ(last_error(), "mpmux_stat_json: json is NULL");
  // Freeing NULL handles is harmless.
  mpmux_free(nullptr);
  mpmux_elements_free(nullptr);
  mpmux_options_free(nullptr);
  mpmux_close(nullptr);
}

TEST(CApi, ABadMuxIdIsAUsageErrorNamingIt) {
  mpmux_run* run = nullptr;
  EXPECT_EQ(mpmux_open("not-an-id", nullptr, &run), MPMUX_USAGE);
  EXPECT_EQ(run, nullptr);
  EXPECT_THAT(last_error(), HasSubstr("mux id 'not-an-id'"));
  int done = -1;
  EXPECT_EQ(mpmux_done("s3://bucket/x#s=1", &done), MPMUX_USAGE);
  EXPECT_THAT(last_error(), HasSubstr("unsupported scheme 's3'"));
  EXPECT_EQ(done, -1);
}

TEST(CApi, ASessionThatDoesNotExistIsAUsageError) {
  TempDir dir;
  const std::string mux = make_mux(dir, 3);
  const std::string id = mpmux::MuxId{mux, "20260101T000000Z-dead", ""}.str();
  mpmux_stat st{};
  st.size = sizeof st;
  EXPECT_EQ(mpmux_stat_get(id.c_str(), &st), MPMUX_USAGE);
  EXPECT_THAT(last_error(), HasSubstr("20260101T000000Z-dead"));
}

TEST(CApi, AMissingInputFileIsAUsageErrorNamingIt) {
  TempDir dir;
  char* mux = nullptr;
  const std::string missing = (dir.path() / "missing.csv").string();
  EXPECT_EQ(mpmux_set_create_from_file(dir.path().c_str(), missing.c_str(), nullptr, nullptr, nullptr, &mux),
            MPMUX_USAGE);
  EXPECT_EQ(mux, nullptr);
  EXPECT_THAT(last_error(), HasSubstr(missing));
  EXPECT_EQ(mpmux_set_create_from_file(dir.path().c_str(), "grid.txt", nullptr, nullptr, nullptr, &mux),
            MPMUX_USAGE);
  EXPECT_THAT(last_error(), HasSubstr("give --format csv|jsonl"));
}

TEST(CApi, AFileIsReadAsMpmuxNewReadsIt) {
  TempDir dir;
  const auto csv = dir.write("grid.csv", "x,y\n1,a\n2,b\n3,c\n");
  char* raw = nullptr;
  ASSERT_EQ(
      mpmux_set_create_from_file((dir.path() / "mux").c_str(), csv.c_str(), nullptr, nullptr, "t", &raw),
      MPMUX_OK)
      << last_error();
  const CString mux(raw);
  uint64_t size = 0;
  ASSERT_EQ(mpmux_set_size(mux.get(), &size), MPMUX_OK);
  EXPECT_EQ(size, 3u);
  const auto set = mpmux::ElementSet::open(std::filesystem::path(mux.get()) / "elements.h5");
  EXPECT_EQ(set.read(1), R"({"x":2,"y":"b"})");
  EXPECT_EQ(set.info().columns, (std::vector<std::string>{"x", "y"}));
  EXPECT_EQ(set.info().tag, "t");
}

TEST(CApi, ElementsMayBeAnyJsonValueStoredWithoutSpaces) {
  TempDir dir;
  mpmux_elements* raw = nullptr;
  ASSERT_EQ(mpmux_elements_new(&raw), MPMUX_OK);
  Elements set(raw);
  const std::vector<std::string> texts = {"{ \"a\" : 1.10 }",        " 7 ",  "\"s t\"",
                                          "[1, [2, {\"b\": null}]]", "true", "null"};
  for (const auto& t : texts) ASSERT_EQ(mpmux_elements_add(set.get(), t.data(), t.size()), MPMUX_OK);
  EXPECT_EQ(mpmux_elements_add(set.get(), "{\"a\":1,\"a\":2}", 13), MPMUX_USAGE);
  EXPECT_EQ(last_error(), "element 6: duplicate key 'a'");
  EXPECT_EQ(mpmux_elements_add(set.get(), "[1,", 3), MPMUX_USAGE);
  EXPECT_THAT(last_error(), HasSubstr("element 6: invalid JSON"));
  uint64_t count = 0;
  ASSERT_EQ(mpmux_elements_count(set.get(), &count), MPMUX_OK);
  EXPECT_EQ(count, texts.size());
  char* mux = nullptr;
  ASSERT_EQ(mpmux_elements_create(set.get(), dir.path().c_str(), nullptr, &mux), MPMUX_OK) << last_error();
  const auto stored = mpmux::ElementSet::open(std::filesystem::path(CString(mux).get()) / "elements.h5");
  EXPECT_EQ(stored.read_all().data, R"({"a":1.10}7"s t"[1,[2,{"b":null}]]truenull)");
  EXPECT_TRUE(stored.info().columns.empty());
  EXPECT_EQ(stored.info().encoding, mpmux::Encoding::json);
  // The collection is kept: it can be stored again.
  ASSERT_EQ(mpmux_elements_count(set.get(), &count), MPMUX_OK);
  EXPECT_EQ(count, texts.size());
}

TEST(CApi, FlatObjectsWithTheSameKeysAreAlsoKeptAsATable) {
  TempDir dir;
  mpmux_elements* raw = nullptr;
  ASSERT_EQ(mpmux_elements_new(&raw), MPMUX_OK);
  Elements set(raw);
  const std::string data = R"({"x":1,"y":"a"}{"x":2,"y":"b"})";
  const uint64_t offsets[] = {0, 15, 30};
  ASSERT_EQ(mpmux_elements_add_many(set.get(), data.data(), offsets, 2), MPMUX_OK) << last_error();
  char* mux = nullptr;
  ASSERT_EQ(mpmux_elements_create(set.get(), dir.path().c_str(), "tab", &mux), MPMUX_OK) << last_error();
  const auto stored = mpmux::ElementSet::open(std::filesystem::path(CString(mux).get()) / "elements.h5");
  EXPECT_EQ(stored.info().columns, (std::vector<std::string>{"x", "y"}));
  EXPECT_EQ(stored.read(1), R"({"x":2,"y":"b"})");
  // Offsets that go backwards are refused.
  const uint64_t backwards[] = {0, 15, 10};
  EXPECT_EQ(mpmux_elements_add_many(set.get(), data.data(), backwards, 2), MPMUX_USAGE);
  EXPECT_THAT(last_error(), HasSubstr("offsets[2] is less than offsets[1]"));
}

TEST(CApi, AnEmptyCollectionIsNotStored) {
  TempDir dir;
  mpmux_elements* raw = nullptr;
  ASSERT_EQ(mpmux_elements_new(&raw), MPMUX_OK);
  Elements set(raw);
  char* mux = nullptr;
  EXPECT_EQ(mpmux_elements_create(set.get(), dir.path().c_str(), nullptr, &mux), MPMUX_USAGE);
  EXPECT_EQ(last_error(), "mpmux_elements_create: no elements");
  EXPECT_TRUE(std::filesystem::is_empty(dir.path()));
}

TEST(CApi, OptionsAreSetByNameAndABadValueKeepsTheOldOne) {
  mpmux_options* raw = nullptr;
  ASSERT_EQ(mpmux_options_new(&raw), MPMUX_OK);
  Options options(raw);
  EXPECT_EQ(mpmux_options_set(options.get(), "retries", "2"), MPMUX_OK);
  EXPECT_EQ(mpmux_options_set(options.get(), "retries", "255"), MPMUX_USAGE);
  EXPECT_EQ(last_error(), "option retries '255': give a whole number from 0 to 254");
  EXPECT_EQ(mpmux_options_set(options.get(), "lease", "-1"), MPMUX_USAGE);
  EXPECT_EQ(mpmux_options_set(options.get(), "root-works", "maybe"), MPMUX_USAGE);
  EXPECT_EQ(last_error(), "option root-works 'maybe': give true or false");
  EXPECT_EQ(mpmux_options_set(options.get(), "deadline", "tomorrow"), MPMUX_USAGE);
  EXPECT_EQ(mpmux_options_set(options.get(), "speed", "fast"), MPMUX_USAGE);
  EXPECT_THAT(last_error(), HasSubstr("unknown option 'speed'"));
  for (const char* ok : {"root-works=yes", "rerun-failed=0", "lease=5", "chunk-min=2", "chunk-max=8",
                         "deadline=+2h", "grace=0", "estimate=1.5", "stop-on-signals=false", "progress=none",
                         "progress-interval=1", "commit-interval=0.05", "fsync=false"}) {
    const std::string pair = ok;
    const auto eq = pair.find('=');
    EXPECT_EQ(mpmux_options_set(options.get(), pair.substr(0, eq).c_str(), pair.substr(eq + 1).c_str()),
              MPMUX_OK)
        << pair << ": " << last_error();
  }
}

TEST(CApi, TheRunKeepsEachResultAndRetriesAFailure) {
  TempDir dir;
  const std::string id = make_session(make_mux(dir, 20));
  mpmux_options* raw = nullptr;
  ASSERT_EQ(mpmux_options_new(&raw), MPMUX_OK);
  Options options(raw);
  ASSERT_EQ(mpmux_options_set(options.get(), "retries", "1"), MPMUX_OK);
  RunHandle run = open_run(id, options.get());
  ASSERT_TRUE(run);
  char* worker = nullptr;
  ASSERT_EQ(mpmux_run_worker_id(run.get(), &worker), MPMUX_OK);
  EXPECT_NE(std::string(CString(worker).get()), "");
  mpmux_element e = empty_element();
  int handed = 0;
  while (mpmux_next(run.get(), &e) == MPMUX_OK && e.valid) {
    ++handed;
    EXPECT_EQ(std::string(e.data, e.length), "{\"i\":" + std::to_string(e.index) + "}");
    EXPECT_EQ(e.data[e.length], '\0');
    if (e.index == 3 && e.attempt == 1) {
      EXPECT_EQ(mpmux_record_failed(run.get(), 4, "three"), MPMUX_OK);
    } else {
      const std::string result = "r" + std::to_string(e.index);
      EXPECT_EQ(mpmux_set_result(run.get(), result.data(), result.size()), MPMUX_OK);
    }
  }
  EXPECT_EQ(handed, 21);
  mpmux_summary summary{};
  summary.size = sizeof summary;
  EXPECT_EQ(mpmux_finish(run.get(), &summary), MPMUX_OK) << last_error();
  EXPECT_EQ(summary.done, 20u);
  EXPECT_EQ(summary.failed, 1u);
  for (const auto& r : results_of(id)) {
    EXPECT_EQ(r.status, mpmux::ElementStatus::done);
    EXPECT_EQ(r.attempts, r.index == 3 ? 2u : 1u);
    EXPECT_EQ(r.outcome->result, "r" + std::to_string(r.index));
  }
  int done = 0;
  ASSERT_EQ(mpmux_done(id.c_str(), &done), MPMUX_OK);
  EXPECT_EQ(done, 1);
}

TEST(CApi, AFinishedRunTakesNoMoreCalls) {
  TempDir dir;
  const std::string id = make_session(make_mux(dir, 2));
  RunHandle run = open_run(id);
  mpmux_element e = empty_element();
  ASSERT_EQ(mpmux_next(run.get(), &e), MPMUX_OK);
  // Finished with an element left pending: resumable, as `mpmux run` stopped.
  EXPECT_EQ(mpmux_finish(run.get(), nullptr), MPMUX_STOPPED);
  EXPECT_EQ(last_error(),
            "stopped (the loop ended early); the rest stays pending: open the session again to resume");
  EXPECT_EQ(mpmux_next(run.get(), &e), MPMUX_USAGE);
  EXPECT_EQ(last_error(), "mpmux_next: the run is finished");
  EXPECT_EQ(mpmux_record_done(run.get(), nullptr, 0), MPMUX_USAGE);
  EXPECT_EQ(mpmux_finish(run.get(), nullptr), MPMUX_USAGE);
  // The element handed out before finish was recorded as done; the other stays pending.
  const auto rows = results_of(id);
  EXPECT_EQ(rows[e.index].status, mpmux::ElementStatus::done);
  EXPECT_EQ(rows[1 - e.index].status, mpmux::ElementStatus::pending);
}

TEST(CApi, RecordingWithoutAnElementOrWithExitCodeZeroIsAUsageError) {
  TempDir dir;
  const std::string id = make_session(make_mux(dir, 1));
  RunHandle run = open_run(id);
  EXPECT_EQ(mpmux_record_failed(run.get(), 1, "x"), MPMUX_USAGE);
  EXPECT_EQ(last_error(), "mpmux_record_failed: no element to record (call mpmux_next first)");
  mpmux_element e = empty_element();
  e.size = 8;
  EXPECT_EQ(mpmux_next(run.get(), &e), MPMUX_USAGE);
  EXPECT_THAT(last_error(), HasSubstr("element->size is 8"));
  e = empty_element();
  ASSERT_EQ(mpmux_next(run.get(), &e), MPMUX_OK);
  EXPECT_EQ(mpmux_record_failed(run.get(), 0, "x"), MPMUX_USAGE);
  EXPECT_EQ(mpmux_record_done(run.get(), nullptr, 0), MPMUX_OK);
}

int fail_odd(void* user, const mpmux_element* e, mpmux_run* run) {
  ++*static_cast<int*>(user);
  if (e->index % 2 == 1) {
    mpmux_set_message(run, ("odd " + std::to_string(e->index)).c_str());
    return 5;
  }
  const std::string result = "even";
  mpmux_set_result(run, result.data(), result.size());
  return 0;
}

TEST(CApi, TheCallbackLoopRecordsDoneForZeroAndFailedForAnythingElse) {
  TempDir dir;
  const std::string id = make_session(make_mux(dir, 6));
  RunHandle run = open_run(id);
  int calls = 0;
  mpmux_summary summary{};
  summary.size = sizeof summary;
  EXPECT_EQ(mpmux_run_each(run.get(), fail_odd, &calls, &summary), MPMUX_FAILED);
  EXPECT_THAT(last_error(), HasSubstr("failed for good"));
  EXPECT_EQ(calls, 6);
  EXPECT_EQ(summary.failed_for_good, 3u);
  for (const auto& r : results_of(id)) {
    ASSERT_TRUE(r.outcome);
    if (r.index % 2 == 1) {
      EXPECT_EQ(r.status, mpmux::ElementStatus::failed);
      EXPECT_EQ(r.outcome->exit_code, 5);
      EXPECT_EQ(r.outcome->stderr_tail, "odd " + std::to_string(r.index));
    } else {
      EXPECT_EQ(r.outcome->result, "even");
    }
  }
  mpmux_stat st{};
  st.size = sizeof st;
  ASSERT_EQ(mpmux_stat_get(id.c_str(), &st), MPMUX_OK);
  EXPECT_EQ(st.total, 6u);
  EXPECT_EQ(st.done, 3u);
  EXPECT_EQ(st.failed, 3u);
  char* json = nullptr;
  ASSERT_EQ(mpmux_stat_json(id.c_str(), &json), MPMUX_OK);
  EXPECT_THAT(std::string(CString(json).get()), HasSubstr(R"({"total":6,"done":3,"failed":3,)"));
}

int throw_at_two(void* user, const mpmux_element* e, mpmux_run*) {
  if (e->index == 2) {
    if (*static_cast<int*>(user) == 0) throw std::runtime_error("thrown by the task");
    throw std::bad_alloc();
  }
  return 0;
}

TEST(CApi, NothingThrownInsideCrossesTheBoundary) {
  TempDir dir;
  const std::string mux = make_mux(dir, 4);
  int kind = 0;
  {
    RunHandle run = open_run(make_session(mux));
    EXPECT_EQ(mpmux_run_each(run.get(), throw_at_two, &kind, nullptr), MPMUX_FAILED);
    EXPECT_EQ(last_error(), "thrown by the task");
  }
  kind = 1;
  RunHandle run = open_run(make_session(mux));
  EXPECT_EQ(mpmux_run_each(run.get(), throw_at_two, &kind, nullptr), MPMUX_NO_MEMORY);
  EXPECT_EQ(last_error(), "out of memory");
}

TEST(CApi, EachThreadKeepsItsOwnMessage) {
  std::atomic<int> ready{0};
  std::string seen[2];
  std::vector<std::thread> threads;
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([&, t] {
      const std::string id = "bad-id-" + std::to_string(t);
      int done = 0;
      EXPECT_EQ(mpmux_done(id.c_str(), &done), MPMUX_USAGE);
      ++ready;
      while (ready < 2) std::this_thread::yield();  // both have failed before either reads
      seen[t] = mpmux_last_error();
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_THAT(seen[0], HasSubstr("bad-id-0"));
  EXPECT_THAT(seen[1], HasSubstr("bad-id-1"));
}

TEST(CApi, ThreadsEachWithTheirOwnRunShareOneSessionEachElementOnce) {
  TempDir dir;
  constexpr int kElements = 200;
  const std::string id = make_session(make_mux(dir, kElements));
  std::atomic<int> handed{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      RunHandle run = open_run(id);
      mpmux_element e = empty_element();
      while (mpmux_next(run.get(), &e) == MPMUX_OK && e.valid) ++handed;
      EXPECT_EQ(mpmux_finish(run.get(), nullptr), MPMUX_OK) << last_error();
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(handed, kElements);
  for (const auto& r : results_of(id)) {
    EXPECT_EQ(r.status, mpmux::ElementStatus::done);
    EXPECT_EQ(r.attempts, 1u);
  }
}

TEST(CApi, ExportsWriteWhatMpmuxResultsWrites) {
  TempDir dir;
  const std::string id = make_session(make_mux(dir, 3));
  {
    RunHandle run = open_run(id);
    mpmux_element e = empty_element();
    while (mpmux_next(run.get(), &e) == MPMUX_OK && e.valid) {
    }
  }
  char* path = nullptr;
  ASSERT_EQ(mpmux_results_export(id.c_str(), "h5", nullptr, &path), MPMUX_OK) << last_error();
  EXPECT_EQ(std::string(CString(path).get()),
            mpmux::results_file(mpmux::Session::open(mpmux::MuxId::parse(id))).string());
  const std::string csv = (dir.path() / "r.csv").string();
  ASSERT_EQ(mpmux_results_export(id.c_str(), "csv", csv.c_str(), nullptr), MPMUX_OK) << last_error();
  std::ifstream in(csv);
  std::string header;
  std::getline(in, header);
  EXPECT_EQ(header.rfind("index,i,status,", 0), 0u) << header;
  EXPECT_EQ(mpmux_results_export(id.c_str(), "jsonl", nullptr, nullptr), MPMUX_USAGE);
  EXPECT_EQ(last_error(), "mpmux_results_export: a jsonl export needs a file");
  EXPECT_EQ(mpmux_results_export(id.c_str(), "xml", "x.xml", nullptr), MPMUX_USAGE);
  EXPECT_THAT(last_error(), HasSubstr("xml"));
  EXPECT_EQ(mpmux_results_export(id.c_str(), "csv", dir.path().c_str(), nullptr), MPMUX_USAGE);
  EXPECT_THAT(last_error(), HasSubstr("is a directory"));
}

TEST(CApi, DestroyRemovesAMuxAndRefusesAnythingElse) {
  TempDir dir;
  const std::string mux = make_mux(dir, 2);
  const std::string id = make_session(mux);
  uint64_t size = 0;
  ASSERT_EQ(mpmux_set_size(id.c_str(), &size), MPMUX_OK);
  EXPECT_EQ(size, 2u);
  EXPECT_EQ(mpmux_set_destroy(dir.path().c_str()), MPMUX_USAGE);
  EXPECT_THAT(last_error(), HasSubstr("not a mux directory"));
  EXPECT_EQ(mpmux_set_destroy(mux.c_str()), MPMUX_OK) << last_error();
  EXPECT_FALSE(std::filesystem::exists(mux));
  EXPECT_EQ(mpmux_set_size(mux.c_str(), &size), MPMUX_USAGE);
}

TEST(CApi, TheStatStructMustSayItsSize) {
  mpmux_stat st{};
  EXPECT_EQ(mpmux_stat_get("file:///x#s=y", &st), MPMUX_USAGE);
  EXPECT_THAT(last_error(), HasSubstr("stat->size is 0"));
}

}  // namespace
