// --deadline values: ISO times and durations from now.
#include <gtest/gtest.h>

#include <cstdlib>
#include <ctime>

#include "mpmux/error.hpp"
#include "run/deadline.hpp"

namespace {

using mpmux::run::parse_deadline;

TEST(Deadline, DurationsCountFromNow) {
  EXPECT_DOUBLE_EQ(parse_deadline("+90", 1000), 1090);
  EXPECT_DOUBLE_EQ(parse_deadline("+90s", 1000), 1090);
  EXPECT_DOUBLE_EQ(parse_deadline("+15m", 1000), 1900);
  EXPECT_DOUBLE_EQ(parse_deadline("+2h", 0), 7200);
  EXPECT_DOUBLE_EQ(parse_deadline("+1h30m", 0), 5400);
  EXPECT_DOUBLE_EQ(parse_deadline("+1d", 0), 86400);
  EXPECT_DOUBLE_EQ(parse_deadline("+0.5s", 10), 10.5);
}

TEST(Deadline, IsoTimesInUtcOrWithAnOffset) {
  EXPECT_DOUBLE_EQ(parse_deadline("2026-11-22T02:10:00Z", 0), 1795313400);
  EXPECT_DOUBLE_EQ(parse_deadline("2026-11-22T02:10Z", 0), 1795313400);
  EXPECT_DOUBLE_EQ(parse_deadline("2026-11-22T03:10:00+01:00", 0), 1795313400);
}

TEST(Deadline, IsoTimesWithoutZoneAreLocal) {
  ::setenv("TZ", "Europe/Berlin", 1);
  ::tzset();
  EXPECT_DOUBLE_EQ(parse_deadline("2026-11-22T03:10:00", 0), 1795313400);
  ::unsetenv("TZ");
  ::tzset();
}

TEST(Deadline, AnythingElseIsAUsageErrorNamingTheOption) {
  for (const char* bad : {"", "+", "+1h30", "+5x", "tomorrow", "2026-11-22", "2026-11-22T02:10:00+1", "+-5"}) {
    try {
      parse_deadline(bad, 0);
      ADD_FAILURE() << "accepted '" << bad << "'";
    } catch (const mpmux::UsageError& e) {
      EXPECT_NE(std::string(e.what()).find("--deadline"), std::string::npos) << e.what();
    }
  }
}

TEST(Deadline, NoSlurmJobMeansNoJobEnd) {
  ::unsetenv("SLURM_JOB_ID");
  EXPECT_FALSE(mpmux::run::slurm_job_end(0).has_value());
  ::setenv("SLURM_JOB_ID", "12; rm -rf /", 1);  // never reaches a shell
  EXPECT_FALSE(mpmux::run::slurm_job_end(0).has_value());
  ::unsetenv("SLURM_JOB_ID");
}

}  // namespace
