// The copy of a journal in an append object of its session (store/journal_upload.hpp), on
// file:// and on Azurite.
#include "store/journal_upload.hpp"

#include <gtest/gtest.h>

#include "mpmux/error.hpp"
#include "store_test_support.hpp"

namespace mpmux::test {
namespace {

class JournalUploadTest : public ::testing::TestWithParam<Backend> {
 protected:
  void SetUp() override { location_ = std::make_unique<StoreLocation>(GetParam()); }
  std::unique_ptr<StoreLocation> location_;
};

TEST_P(JournalUploadTest, WaitReturnsOnceEveryPushedByteIsInTheObjectInOrder) {
  store::JournalUpload upload(location_->url(), "journal/h-1-2.mjl");
  auto reader = location_->open();
  EXPECT_EQ(reader->get_range("journal/h-1-2.mjl", 0), std::optional<std::string>(""));
  std::string all;
  for (int i = 0; i < 200; ++i) {
    const std::string piece = "record " + std::to_string(i) + ";";
    upload.push(piece);
    all += piece;
  }
  upload.wait();
  EXPECT_EQ(reader->get_range("journal/h-1-2.mjl", 0), std::optional<std::string>(all));
  upload.push("tail");
  upload.wait();
  EXPECT_EQ(reader->get_range("journal/h-1-2.mjl", all.size()), std::optional<std::string>("tail"));
}

TEST_P(JournalUploadTest, ItsEndAppendsWhatIsStillQueued) {
  {
    store::JournalUpload upload(location_->url(), "journal/h-1-3.mjl");
    upload.push("first");
    upload.wait();
    upload.push("second");
    upload.push("third");
  }
  EXPECT_EQ(location_->open()->get_range("journal/h-1-3.mjl", 0),
            std::optional<std::string>("firstsecondthird"));
}

TEST_P(JournalUploadTest, AFailedAppendIsReportedByWaitAndCheckNamingTheObject) {
  store::JournalUpload upload(location_->url(), "journal/h-1-4.mjl");
  upload.push("first");
  upload.wait();
  location_->open()->remove("journal/h-1-4.mjl");
  upload.push("second");
  try {
    upload.wait();
    FAIL() << "wait() did not report the failed append";
  } catch (const StoreError& e) {
    EXPECT_NE(std::string(e.what()).find("journal/h-1-4.mjl"), std::string::npos) << e.what();
  }
  EXPECT_THROW(upload.check(), StoreError);
}

TEST_P(JournalUploadTest, AnObjectOfThatNameAlreadyThereIsRefused) {
  location_->open()->create_append("journal/h-1-5.mjl");
  EXPECT_THROW(store::JournalUpload(location_->url(), "journal/h-1-5.mjl"), StoreError);
}

INSTANTIATE_TEST_SUITE_P(Backends, JournalUploadTest,
                         ::testing::Values(Backend::kFileExcl, Backend::kAzurite),
                         [](const auto& info) { return backend_name(info.param); });

}  // namespace
}  // namespace mpmux::test
