// Mux ids: file:// + percent-encoded absolute path + #s= + session id.
#include <gtest/gtest.h>

#include <cctype>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "mpmux/error.hpp"
#include "mpmux/session.hpp"

namespace mpmux {
namespace {

std::string parse_error(const std::string& text) {
  try {
    MuxId::parse(text);
  } catch (const UsageError& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(MuxId, StrIsAFileUriWithTheSessionAsFragment) {
  MuxId id{"/scratch/ana/mux/20261121-233500-grid", "20261121T233512Z-7f3a"};
  EXPECT_EQ(id.str(), "file:///scratch/ana/mux/20261121-233500-grid#s=20261121T233512Z-7f3a");
}

TEST(MuxId, ParseReadsThePathAndTheSession) {
  MuxId id = MuxId::parse("file:///scratch/ana/mux/20261121-233500-grid#s=20261121T233512Z-7f3a");
  EXPECT_EQ(id.dir, "/scratch/ana/mux/20261121-233500-grid");
  EXPECT_EQ(id.session, "20261121T233512Z-7f3a");
}

TEST(MuxId, BytesOutsideTheSafeSetArePercentEncoded) {
  EXPECT_EQ((MuxId{"/a b", "s", {}}.str()), "file:///a%20b#s=s");
  EXPECT_EQ((MuxId{"/x#y", "s", {}}.str()), "file:///x%23y#s=s");
  EXPECT_EQ((MuxId{"/100%", "s", {}}.str()), "file:///100%25#s=s");
  EXPECT_EQ((MuxId{"/\xC3\xBC", "s", {}}.str()), "file:///%C3%BC#s=s");
  EXPECT_EQ((MuxId{"/~u/a.b_c-D9", "s", {}}.str()), "file:///~u/a.b_c-D9#s=s");
}

TEST(MuxId, OddPathsRoundTrip) {
  const std::vector<std::string> paths = {"/scratch/with space/mux",
                                          "/t\xC3\xBCr/\xE2\x84\xB5/\xF0\x9F\x98\x80",
                                          "/hash#in/path",
                                          "/per%cent/%41",
                                          "/q?x=1&y=2;z",
                                          "/tab\there/new\nline",
                                          "/quotes'\"`$(rm)",
                                          "/back\\slash",
                                          "/a/",
                                          "/",
                                          "/\x7F\x01\xFF"};
  for (const std::string& p : paths) {
    MuxId id{p, "20261121T233512Z-7f3a"};
    std::string text = id.str();
    for (unsigned char c : text.substr(0, text.find('#'))) {
      bool shell_safe =
          std::isalnum(c) || std::string_view(":/._~-%").find(static_cast<char>(c)) != std::string_view::npos;
      EXPECT_TRUE(shell_safe) << "byte " << int(c) << " in " << text;
    }
    MuxId back = MuxId::parse(text);
    EXPECT_EQ(back.dir.native(), p) << text;
    EXPECT_EQ(back.session, id.session);
    EXPECT_EQ(back.str(), text);
  }
}

TEST(MuxId, ParseDecodesLowercaseEscapes) {
  EXPECT_EQ(MuxId::parse("file:///t%c3%bcr%2fx#s=a").dir.native(), "/t\xC3\xBCr/x");
}

TEST(MuxId, AnAzIdRoundTripsAndIsMirroredUnderTheCacheFolder) {
  const std::string text = "az://devstoreaccount1/sweeps/ana/20261205-101500-big#s=20261205T101500Z-7f3a";
  ::setenv("MPMUX_CACHE", "/cache/here", 1);
  MuxId id = MuxId::parse(text);
  EXPECT_EQ(id.remote, "az://devstoreaccount1/sweeps/ana/20261205-101500-big");
  EXPECT_EQ(id.session, "20261205T101500Z-7f3a");
  EXPECT_EQ(id.dir.native(), "/cache/here/az/devstoreaccount1/sweeps/ana/20261205-101500-big");
  EXPECT_EQ(id.str(), text);
  ::unsetenv("MPMUX_CACHE");
  ::setenv("XDG_CACHE_HOME", "/xdg", 1);
  EXPECT_EQ(MuxId::parse(text).dir.native(), "/xdg/mpmux/az/devstoreaccount1/sweeps/ana/20261205-101500-big");
  ::unsetenv("XDG_CACHE_HOME");
  EXPECT_EQ(
      MuxId::parse(text).dir.native(),
      std::string(std::getenv("HOME")) + "/.cache/mpmux/az/devstoreaccount1/sweeps/ana/20261205-101500-big");
}

TEST(MuxId, MalformedIdsAreRefusedWithTheirReason) {
  struct Case {
    std::string text, why;
  };
  const std::vector<Case> cases = {
      {"", "empty"},
      {"az://account/container#s=x", "names a container, not a mux"},
      {"az://account/container/a b#s=x", "character ' ' is not allowed in an az:// URL"},
      {"az://account/container/a%20b#s=x", "character '%' is not allowed"},
      {"az://acc-ount/container/mux#s=x", "the account name 'acc-ount' must be letters and digits"},
      {"az://account/Container/mux#s=x", "the container name 'Container' must be 3 to 63"},
      {"az://account/container//mux#s=x", "empty part in the prefix"},
      {"az://account/container/mux", "missing '#s=SESSION' fragment"},
      {"gs://bucket/mux#s=x", "unsupported scheme 'gs'"},
      {"s3://bucket/mux#s=x", "unsupported scheme 's3'"},
      {"http://host/mux#s=x", "unsupported scheme 'http'"},
      {"/scratch/mux#s=x", "not a URI"},
      {"file:/scratch/mux#s=x", "not a URI"},
      {"file://relative/path#s=x", "the path must be absolute"},
      {"file://#s=x", "the path must be absolute"},
      {"file:///scratch/mux", "missing '#s=SESSION' fragment"},
      {"file:///scratch/mux#x=1", "malformed fragment '#x=1'"},
      {"file:///scratch/mux#", "malformed fragment"},
      {"file:///scratch/mux#s=", "empty session id"},
      {"file:///scratch/mux#s=ab/cd", "has a character outside [A-Za-z0-9T._-]: '/'"},
      {"file:///scratch/mux#s=a b", "outside [A-Za-z0-9T._-]: ' '"},
      {"file:///scratch/mux#s=a#b", "outside [A-Za-z0-9T._-]: '#'"},
      {"file:///scr%2#s=x", "bad percent escape '%2'"},
      {"file:///scr%#s=x", "bad percent escape '%'"},
      {"file:///scr%zz/a#s=x", "bad percent escape '%zz'"},
      {"file:///a b#s=x", "character ' ' in the path must be percent-encoded"},
      {"file:///a?b#s=x", "character '?' in the path must be percent-encoded"},
      {"file:///a\xC3\xBC#s=x", "character '\\xC3' in the path must be percent-encoded"},
      {"file:///a%00b#s=x", "NUL byte"},
  };
  for (const Case& c : cases) {
    std::string error = parse_error(c.text);
    EXPECT_EQ(error.rfind("mux id '" + c.text + "': ", 0), 0u) << error;
    EXPECT_NE(error.find(c.why), std::string::npos) << "for '" << c.text << "': " << error;
  }
}

}  // namespace
}  // namespace mpmux
