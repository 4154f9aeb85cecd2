// Mux directories (create_mux, destroy_mux) and read sessions (Session::create, Session::open).
#include "mpmux/session.hpp"

#include <grp.h>
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <csignal>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include "mpmux/error.hpp"
#include "mpmux/journal.hpp"
#include "test_support.hpp"

namespace mpmux {
namespace {

namespace stdfs = std::filesystem;
using mpmux::test::in_child;
using mpmux::test::TempDir;
using mpmux::test::usage_error_message;

ParsedElements three_elements() {
  ParsedElements p;
  for (int i = 0; i < 3; ++i) p.elements.push("{\"i\":" + std::to_string(i) + "}");
  return p;
}

std::vector<std::string> names_in(const stdfs::path& dir) {
  std::vector<std::string> out;
  for (const auto& e : stdfs::directory_iterator(dir)) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

std::string utc_name(std::time_t t, const char* format) {
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  char buf[64];
  return std::string(buf, std::strftime(buf, sizeof buf, format, &tm));
}

// The directory names create_mux may pick for `tag` while the test runs (the clock may tick).
std::set<std::string> names_between(std::time_t from, std::time_t to, const std::string& suffix) {
  std::set<std::string> out;
  for (std::time_t t = from; t <= to; ++t) out.insert(utc_name(t, "%Y%m%d-%H%M%S") + suffix);
  return out;
}

// ---------------------------------------------------------------------------------------------

TEST(Mux, CreateNamesTheDirectoryAfterUtcTimeAndTag) {
  TempDir tmp;
  std::time_t before = std::time(nullptr);
  stdfs::path dir = create_mux(tmp.path() / "root", three_elements(), "grid");
  std::time_t after = std::time(nullptr);
  EXPECT_EQ(dir.parent_path(), tmp.path() / "root");
  EXPECT_TRUE(names_between(before, after, "-grid").count(dir.filename().string())) << dir;
  EXPECT_TRUE(stdfs::is_regular_file(dir / "elements.h5"));
  EXPECT_EQ(ElementSet::open(dir / "elements.h5").size(), 3u);
  EXPECT_EQ(names_in(tmp.path() / "root"), std::vector<std::string>{dir.filename().string()});
}

TEST(Mux, CreateWithoutTagHasNoSuffix) {
  TempDir tmp;
  std::time_t before = std::time(nullptr);
  stdfs::path dir = create_mux(tmp.path(), three_elements(), "");
  std::time_t after = std::time(nullptr);
  EXPECT_TRUE(names_between(before, after, "").count(dir.filename().string())) << dir;
}

TEST(Mux, CreateReturnsAnAbsoluteDirectoryForARelativeRoot) {
  TempDir tmp;
  stdfs::path cwd = stdfs::current_path();
  stdfs::current_path(tmp.path());
  stdfs::path dir = create_mux("rel/./root/", three_elements(), "t");
  stdfs::current_path(cwd);
  EXPECT_TRUE(dir.is_absolute());
  EXPECT_EQ(dir.parent_path(), tmp.path() / "rel" / "root");
}

TEST(Mux, ANameCollisionTakesTheNextFreeSuffix) {
  TempDir tmp;
  // Occupy every name of the next seconds: the bare name by an empty directory (which a plain
  // rename(2) would silently replace) and ".2" by a non-empty one.
  std::time_t now = std::time(nullptr);
  for (const std::string& name : names_between(now, now + 30, "-tag")) {
    stdfs::create_directory(tmp.path() / name);
    stdfs::create_directory(tmp.path() / (name + ".2"));
    std::ofstream(tmp.path() / (name + ".2") / "elements.h5") << "taken";
  }
  stdfs::path dir = create_mux(tmp.path(), three_elements(), "tag");
  std::string name = dir.filename().string();
  ASSERT_GT(name.size(), 2u);
  EXPECT_EQ(name.substr(name.size() - 2), ".3") << name;
  EXPECT_TRUE(names_between(now, now + 30, "-tag").count(name.substr(0, name.size() - 2))) << name;
  EXPECT_TRUE(stdfs::is_empty(tmp.path() / name.substr(0, name.size() - 2)));
  EXPECT_EQ(ElementSet::open(dir / "elements.h5").size(), 3u);
}

TEST(Mux, TwoMuxesInTheSameSecondGetDistinctDirectories) {
  TempDir tmp;
  std::set<stdfs::path> dirs;
  for (int i = 0; i < 3; ++i) dirs.insert(create_mux(tmp.path(), three_elements(), "same"));
  EXPECT_EQ(dirs.size(), 3u);
  EXPECT_EQ(names_in(tmp.path()).size(), 3u);
}

TEST(Mux, TagsOutsideTheAllowedCharactersAreRefused) {
  TempDir tmp;
  EXPECT_EQ(
      usage_error_message([&] { create_mux(tmp.path(), three_elements(), "a b"); }).rfind("--tag 'a b': ", 0),
      0u);
  EXPECT_NE(usage_error_message([&] {
              create_mux(tmp.path(), three_elements(), "a/b");
            }).find("'/' is not allowed"),
            std::string::npos);
  EXPECT_NE(usage_error_message([&] {
              create_mux(tmp.path(), three_elements(), std::string(65, 'x'));
            }).find("longer than 64 characters"),
            std::string::npos);
  EXPECT_TRUE(stdfs::is_empty(tmp.path()));
  EXPECT_NO_THROW(create_mux(tmp.path(), three_elements(), std::string(64, 'x')));
  EXPECT_NO_THROW(create_mux(tmp.path(), three_elements(), "Az09_.-"));
}

TEST(Mux, CreateMakesAMissingRoot) {
  TempDir tmp;
  stdfs::path dir = create_mux(tmp.path() / "a" / "b", three_elements(), "");
  EXPECT_EQ(dir.parent_path(), tmp.path() / "a" / "b");
}

TEST(Mux, ARootUnderARegularFileIsAUsageError) {
  TempDir tmp;
  std::ofstream(tmp.path() / "file") << "x";
  stdfs::path root = tmp.path() / "file" / "sub";
  EXPECT_EQ(usage_error_message([&] { create_mux(root, three_elements(), ""); }),
            "ROOT '" + root.string() + "': cannot create: Not a directory");
  EXPECT_EQ(usage_error_message([&] { create_mux(tmp.path() / "file", three_elements(), ""); }),
            "ROOT '" + (tmp.path() / "file").string() + "': not a directory");
}

// Root ignores file modes, so the unwritable cases run in a child that became 'nobody'.
std::string as_nobody(const std::function<std::string()>& fn) {
  return in_child([&]() -> std::string {
    if (::setgroups(0, nullptr) != 0 || ::setresgid(65534, 65534, 65534) != 0 ||
        ::setresuid(65534, 65534, 65534) != 0)
      return "cannot drop privileges";
    return fn();
  });
}

TEST(Mux, AnUnwritableRootIsAUsageError) {
  TempDir tmp;
  stdfs::permissions(tmp.path(), stdfs::perms::owner_all | stdfs::perms::group_read |
                                     stdfs::perms::group_exec | stdfs::perms::others_read |
                                     stdfs::perms::others_exec);
  stdfs::path root = tmp.path();
  std::string error =
      as_nobody([&] { return usage_error_message([&] { create_mux(root, three_elements(), ""); }); });
  EXPECT_EQ(error, "ROOT '" + root.string() + "': cannot write: Permission denied");
  error =
      as_nobody([&] { return usage_error_message([&] { create_mux(root / "new", three_elements(), ""); }); });
  EXPECT_EQ(error, "ROOT '" + (root / "new").string() + "': cannot create: Permission denied");
  EXPECT_TRUE(stdfs::is_empty(root));
}

TEST(Mux, AFailedWriteLeavesNothingBehind) {
  TempDir tmp;
  stdfs::path root = tmp.path();
  ParsedElements big;
  for (int i = 0; i < 2000; ++i) big.elements.push(std::string(1000, static_cast<char>('a' + i % 26)));
  // A file size limit makes HDF5's writes fail part-way (EFBIG), as a full disk would.
  std::string outcome = in_child([&]() -> std::string {
    std::signal(SIGXFSZ, SIG_IGN);
    rlimit limit{64 * 1024, RLIM_INFINITY};
    if (::setrlimit(RLIMIT_FSIZE, &limit) != 0) return "setrlimit failed";
    try {
      create_mux(root, big, "big");
    } catch (const Error& e) {
      return "error";
    }
    return "no error";
  });
  EXPECT_EQ(outcome, "error");
  EXPECT_EQ(names_in(root), std::vector<std::string>{});
}

TEST(Mux, DestroyRefusesADirectoryWithoutElementSet) {
  TempDir tmp;
  stdfs::create_directory(tmp.path() / "precious");
  std::ofstream(tmp.path() / "precious" / "thesis.tex") << "x";
  EXPECT_EQ(usage_error_message([&] { destroy_mux(tmp.path() / "precious"); }),
            "'" + (tmp.path() / "precious").string() + "': not a mux directory (no elements.h5)");
  EXPECT_TRUE(stdfs::exists(tmp.path() / "precious" / "thesis.tex"));
  EXPECT_NE(usage_error_message([&] { destroy_mux(tmp.path() / "missing"); }).find("no such mux directory"),
            std::string::npos);
}

TEST(Mux, DestroyRemovesTheMuxWithItsSessions) {
  TempDir tmp;
  stdfs::path dir = create_mux(tmp.path(), three_elements(), "gone");
  Session::create(dir);
  destroy_mux(dir);
  EXPECT_FALSE(stdfs::exists(dir));
  EXPECT_TRUE(stdfs::is_empty(tmp.path()));
}

// ---------------------------------------------------------------------------------------------

TEST(Session, CreateWritesSessionJsonAndAJournalDirectory) {
  TempDir tmp;
  stdfs::path mux = create_mux(tmp.path(), three_elements(), "");
  std::time_t before = std::time(nullptr);
  Session s = Session::create(mux);
  std::time_t after = std::time(nullptr);

  EXPECT_TRUE(std::regex_match(s.id().session, std::regex("[0-9]{8}T[0-9]{6}Z-[0-9a-f]{4}")))
      << s.id().session;
  std::set<std::string> stamps;
  for (std::time_t t = before; t <= after; ++t) stamps.insert(utc_name(t, "%Y%m%dT%H%M%SZ"));
  EXPECT_TRUE(stamps.count(s.id().session.substr(0, 16))) << s.id().session;
  EXPECT_EQ(s.mux_dir(), mux);
  EXPECT_EQ(s.dir(), mux / "sessions" / s.id().session);
  EXPECT_EQ(s.journal_dir(), s.dir() / "journal");
  EXPECT_EQ(s.elements_file(), mux / "elements.h5");
  EXPECT_EQ(s.total(), 3u);
  EXPECT_TRUE(stdfs::is_directory(s.journal_dir()));
  EXPECT_EQ(names_in(mux / "sessions"), std::vector<std::string>{s.id().session});

  nlohmann::json meta = nlohmann::json::parse(std::ifstream(s.dir() / "session.json"));
  EXPECT_EQ(meta["format"], "mpmux-session");
  EXPECT_EQ(meta["format_version"], 1);
  EXPECT_EQ(meta["session"], s.id().session);
  EXPECT_EQ(meta["elements"], 3);
  EXPECT_TRUE(std::regex_match(meta["created"].get<std::string>(),
                               std::regex("[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z")));
}

TEST(Session, TwoSessionsOnOneSetAreIndependent) {
  TempDir tmp;
  stdfs::path mux = create_mux(tmp.path(), three_elements(), "");
  Session a = Session::create(mux);
  Session b = Session::create(mux);
  EXPECT_NE(a.id().session, b.id().session);
  EXPECT_NE(a.dir(), b.dir());
  {
    JournalWriter w(a, "node", 1);
    Outcome o;
    o.index = 1;
    w.append(o);
  }
  EXPECT_EQ(read_session_state(a).done, 1u);
  EXPECT_EQ(read_session_state(b).done, 0u);
  EXPECT_EQ(read_session_state(b).pending_indices(), (std::vector<std::uint64_t>{0, 1, 2}));
}

TEST(Session, OpenFindsACreatedSessionByItsId) {
  TempDir tmp;
  stdfs::path mux = create_mux(tmp.path() / "with space#", three_elements(), "");
  Session created = Session::create(mux);
  Session opened = Session::open(MuxId::parse(created.id().str()));
  EXPECT_EQ(opened.dir(), created.dir());
  EXPECT_EQ(opened.id().session, created.id().session);
  EXPECT_EQ(opened.total(), 3u);
}

TEST(Session, CreateRefusesADirectoryWithoutElementSet) {
  TempDir tmp;
  EXPECT_NE(usage_error_message([&] { Session::create(tmp.path()); }), "(no UsageError)");
  EXPECT_NE(usage_error_message([&] { Session::create(tmp.path() / "missing"); }).find("does not exist"),
            std::string::npos);
  EXPECT_FALSE(stdfs::exists(tmp.path() / "sessions"));
}

TEST(Session, OpenRefusesADestroyedMux) {
  TempDir tmp;
  stdfs::path mux = create_mux(tmp.path(), three_elements(), "");
  MuxId id = Session::create(mux).id();
  destroy_mux(mux);
  EXPECT_EQ(usage_error_message([&] { Session::open(id); }),
            "mux directory '" + mux.string() + "' does not exist (destroyed?)");
}

TEST(Session, OpenRefusesAnUnknownSession) {
  TempDir tmp;
  stdfs::path mux = create_mux(tmp.path(), three_elements(), "");
  Session::create(mux);
  EXPECT_NE(usage_error_message([&] {
              Session::open(MuxId{mux, "20000101T000000Z-0000", {}});
            }).find("session '20000101T000000Z-0000' of mux directory '" + mux.string() + "' does not exist"),
            std::string::npos);
}

TEST(Session, OpenRefusesAMissingOrMalformedSessionJson) {
  TempDir tmp;
  stdfs::path mux = create_mux(tmp.path(), three_elements(), "");
  Session s = Session::create(mux);
  stdfs::path meta = s.dir() / "session.json";
  nlohmann::json good = nlohmann::json::parse(std::ifstream(meta));
  auto open_with = [&](const std::string& content) {
    std::ofstream(meta, std::ios::trunc) << content;
    return usage_error_message([&] { Session::open(s.id()); });
  };
  const std::string prefix = "'" + meta.string() + "': ";

  EXPECT_EQ(open_with("{\"format\": ").rfind(prefix + "malformed: ", 0), 0u);
  EXPECT_EQ(open_with("[1, 2]"), prefix + "not an mpmux session file");
  nlohmann::json bad = good;
  bad["format_version"] = 2;
  EXPECT_EQ(open_with(bad.dump()), prefix + "unsupported format_version 2");
  bad = good;
  bad["session"] = "other";
  EXPECT_EQ(open_with(bad.dump()), prefix + "names session 'other', not '" + s.id().session + "'");
  bad = good;
  bad["elements"] = -1;
  EXPECT_EQ(open_with(bad.dump()), prefix + "no element count");
  bad = good;
  bad["elements"] = 4;
  EXPECT_NE(open_with(bad.dump()).find("4 elements, but"), std::string::npos);

  EXPECT_NO_THROW(open_with(good.dump()));
  stdfs::remove(meta);
  EXPECT_EQ(usage_error_message([&] { Session::open(s.id()); }),
            prefix + "missing (not a session directory)");
}

TEST(Session, OpenRefusesABrokenElementSet) {
  TempDir tmp;
  stdfs::path mux = create_mux(tmp.path(), three_elements(), "");
  Session s = Session::create(mux);
  stdfs::resize_file(mux / "elements.h5", 100);
  EXPECT_NE(usage_error_message([&] { Session::open(s.id()); }), "(no UsageError)");
  stdfs::remove(mux / "elements.h5");
  EXPECT_NE(usage_error_message([&] { Session::open(s.id()); }), "(no UsageError)");
}

}  // namespace
}  // namespace mpmux
