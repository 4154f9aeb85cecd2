// ElementSet: writing elements.h5, opening it, reading elements, refusing what is not a set.
#include "mpmux/element_set.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "mpmux/error.hpp"
#include "store/h5.hpp"
#include "test_support.hpp"

namespace mpmux {
namespace {

namespace stdfs = std::filesystem;
using mpmux::test::TempDir;
using mpmux::test::usage_error_message;

// Elements of varied sizes, including empty ones and every byte value.
ElementBuffer sample_elements(std::size_t n, std::size_t max_size, unsigned seed) {
  std::mt19937 rng(seed);
  ElementBuffer out;
  for (std::size_t i = 0; i < n; ++i) {
    std::string e(rng() % (max_size + 1), '\0');
    for (auto& c : e) c = static_cast<char>(rng());
    if (i % 7 == 3) e.clear();
    out.push(e);
  }
  return out;
}

std::string file_bytes(const stdfs::path& file) {
  std::ifstream in(file, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

TEST(ElementSet, WrittenSetReadsBackElementByElement) {
  TempDir tmp;
  const auto file = tmp.path() / "elements.h5";
  const ElementBuffer elements = sample_elements(200, 300, 1);
  ElementSet::write(file, elements, Encoding::bytes, "sweep-1", nullptr);

  ElementSet set = ElementSet::open(file);
  EXPECT_EQ(set.size(), 200u);
  EXPECT_EQ(set.path(), file);
  const auto& info = set.info();
  EXPECT_EQ(info.format, "mpmux-elements");
  EXPECT_EQ(info.format_version, 1);
  EXPECT_EQ(info.count, 200u);
  EXPECT_EQ(info.tag, "sweep-1");
  EXPECT_EQ(info.encoding, Encoding::bytes);
  EXPECT_THAT(info.created, testing::MatchesRegex("[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z"));
  EXPECT_TRUE(info.columns.empty());
  for (std::size_t i = 0; i < elements.size(); ++i) ASSERT_EQ(set.read(i), elements.at(i)) << i;

  const ElementBuffer all = set.read_all();
  EXPECT_EQ(all.data, elements.data);
  EXPECT_EQ(all.offsets, elements.offsets);
  EXPECT_THROW(set.read(200), std::out_of_range);
}

TEST(ElementSet, ReadSubsetPacksTheAskedElementsInOrder) {
  TempDir tmp;
  const auto file = tmp.path() / "elements.h5";
  // About 3 MiB, so subsets cross chunk boundaries.
  const ElementBuffer elements = sample_elements(3000, 2000, 2);
  ElementSet::write(file, elements, Encoding::bytes, "", nullptr);
  ElementSet set = ElementSet::open(file);

  const std::vector<std::vector<std::uint64_t>> subsets = {
      {0}, {2999}, {3}, {0, 1, 2, 3, 4}, {5, 6, 100, 101, 102, 2000, 2999}, {}};
  std::vector<std::uint64_t> every_third;
  for (std::uint64_t i = 1; i < 3000; i += 3) every_third.push_back(i);
  auto all_subsets = subsets;
  all_subsets.push_back(every_third);
  for (const auto& indices : all_subsets) {
    const ElementBuffer got = set.read_subset(indices);
    ASSERT_EQ(got.size(), indices.size());
    for (std::size_t k = 0; k < indices.size(); ++k)
      ASSERT_EQ(got.at(k), elements.at(indices[k])) << indices[k];
  }
  EXPECT_THROW(set.read_subset({3, 2}), std::invalid_argument);
  EXPECT_THROW(set.read_subset({3, 3}), std::invalid_argument);
  EXPECT_THROW(set.read_subset({1, 3000}), std::out_of_range);
}

TEST(ElementSet, EmptySetRoundTrips) {
  TempDir tmp;
  const auto file = tmp.path() / "elements.h5";
  ElementSet::write(file, ElementBuffer{}, Encoding::json, "", nullptr);
  ElementSet set = ElementSet::open(file);
  EXPECT_EQ(set.size(), 0u);
  EXPECT_EQ(set.read_all().size(), 0u);
  EXPECT_EQ(set.read_subset({}).size(), 0u);
}

TEST(ElementSet, TableIsStoredWithItsColumns) {
  TempDir tmp;
  const auto file = tmp.path() / "elements.h5";
  const ParsedElements grid = make_grid({"alpha=0.1,0.2", "seed=0:3", "model=a,b"});
  ElementSet::write(file, grid.elements, grid.encoding, "grid", &*grid.table);
  ElementSet set = ElementSet::open(file);
  EXPECT_EQ(set.info().columns, (std::vector<std::string>{"alpha", "seed", "model"}));
  EXPECT_EQ(set.info().encoding, Encoding::json);
  EXPECT_EQ(set.read(11), R"({"alpha":0.2,"seed":2,"model":"b"})");

  // The table's cells, read back through the C API.
  h5::Id f = h5::open_file_read(file);
  h5::Id d(H5Dopen2(f.get(), "/elements/table", H5P_DEFAULT));
  ASSERT_TRUE(d) << h5::error_stack();
  struct Row {
    double alpha;
    std::int64_t seed;
    char* model;
  };
  h5::Id str = h5::string_type("test");
  h5::Id mem(H5Tcreate(H5T_COMPOUND, sizeof(Row)));
  H5Tinsert(mem.get(), "alpha", HOFFSET(Row, alpha), H5T_NATIVE_DOUBLE);
  H5Tinsert(mem.get(), "seed", HOFFSET(Row, seed), H5T_NATIVE_INT64);
  H5Tinsert(mem.get(), "model", HOFFSET(Row, model), str.get());
  std::vector<Row> rows(12);
  ASSERT_GE(H5Dread(d.get(), mem.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, rows.data()), 0);
  for (std::size_t r = 0; r < 12; ++r) {
    EXPECT_EQ(rows[r].alpha, std::get<double>(grid.table->cell(r, 0)));
    EXPECT_EQ(rows[r].seed, std::get<std::int64_t>(grid.table->cell(r, 1)));
    EXPECT_EQ(std::string(rows[r].model), std::get<std::string>(grid.table->cell(r, 2)));
  }
  h5::Id space(H5Dget_space(d.get()));
  H5Dvlen_reclaim(mem.get(), space.get(), H5P_DEFAULT, rows.data());
}

TEST(ElementSet, WriteRefusesAnExistingFile) {
  TempDir tmp;
  const auto file = tmp.path() / "elements.h5";
  std::ofstream(file) << "precious";
  EXPECT_EQ(usage_error_message(
                [&] { ElementSet::write(file, make_range(2).elements, Encoding::json, "", nullptr); }),
            file.string() + ": already exists; an element set is never overwritten");
  EXPECT_EQ(file_bytes(file), "precious");
}

TEST(ElementSet, WriteRejectsATableThatDoesNotMatchTheElements) {
  TempDir tmp;
  const auto file = tmp.path() / "elements.h5";
  const ParsedElements range = make_range(3);
  const ParsedElements other = make_range(4);
  EXPECT_THROW(ElementSet::write(file, range.elements, Encoding::json, "", &*other.table),
               std::invalid_argument);
  Table wrong_type = *range.table;
  wrong_type.types[0] = ColumnType::float64;  // its cells are int64
  EXPECT_THROW(ElementSet::write(file, range.elements, Encoding::json, "", &wrong_type),
               std::invalid_argument);
  EXPECT_FALSE(stdfs::exists(file));
}

TEST(ElementSet, WriteIntoAMissingDirectoryIsStoreErrorAndLeavesNothing) {
  TempDir tmp;
  const auto file = tmp.path() / "missing" / "elements.h5";
  try {
    ElementSet::write(file, make_range(2).elements, Encoding::json, "", nullptr);
    FAIL() << "no StoreError";
  } catch (const StoreError& e) {
    // Created by mpmux before HDF5 opens it (with a mode that is never world-writable).
    EXPECT_EQ(e.what(), file.string() + ": create HDF5 file: No such file or directory");
  }
  EXPECT_FALSE(stdfs::exists(file));
}

TEST(ElementSet, MissingFileIsUsageError) {
  TempDir tmp;
  const auto file = tmp.path() / "elements.h5";
  EXPECT_EQ(usage_error_message([&] { ElementSet::open(file); }),
            file.string() + ": not an mpmux element set (no such file)");
  EXPECT_EQ(usage_error_message([&] { ElementSet::open(tmp.path()); }),
            tmp.path().string() + ": not an mpmux element set (not a regular file)");
}

TEST(ElementSet, NonHdf5FileIsUsageError) {
  TempDir tmp;
  const auto file = tmp.path() / "elements.h5";
  std::ofstream(file) << "seed,alpha\n1,2\n";
  testing::internal::CaptureStderr();
  const std::string message = usage_error_message([&] { ElementSet::open(file); });
  EXPECT_EQ(testing::internal::GetCapturedStderr(), "");
  EXPECT_THAT(message,
              testing::StartsWith(file.string() + ": not an mpmux element set (open as HDF5 file: H5Fopen"));
  EXPECT_THAT(message, testing::HasSubstr("file signature not found"));
  EXPECT_EQ(message.find('\n'), std::string::npos);
}

TEST(ElementSet, TruncatedFileIsUsageErrorWithoutHdf5Trace) {
  TempDir tmp;
  const auto file = tmp.path() / "elements.h5";
  const ParsedElements grid = make_grid({"a=0:50", "b=x,y"});
  ElementSet::write(file, grid.elements, grid.encoding, "", &*grid.table);
  const auto size = stdfs::file_size(file);
  ASSERT_EQ(::truncate(file.c_str(), static_cast<off_t>(size / 2)), 0);

  testing::internal::CaptureStderr();
  const std::string message = usage_error_message([&] { ElementSet::open(file); });
  EXPECT_EQ(testing::internal::GetCapturedStderr(), "");
  EXPECT_THAT(message, testing::StartsWith(file.string() + ": not an mpmux element set ("));
  EXPECT_THAT(message, testing::HasSubstr("truncated file"));
}

// Writes a valid set, then lets `damage` edit it through the C API.
std::string open_error_after(const std::function<void(hid_t group)>& damage) {
  TempDir tmp;
  const auto file = tmp.path() / "elements.h5";
  const ParsedElements range = make_range(5);
  ElementSet::write(file, range.elements, range.encoding, "", &*range.table);
  {
    h5::Id f(H5Fopen(file.c_str(), H5F_ACC_RDWR, h5::file_access("test").get()));
    h5::Id g(H5Gopen2(f.get(), "elements", H5P_DEFAULT));
    if (!g) return "(could not open the test file)";
    damage(g.get());
  }
  std::string message = usage_error_message([&] { ElementSet::open(file); });
  const std::string prefix = file.string() + ": not an mpmux element set (";
  return message.rfind(prefix, 0) == 0 ? message.substr(prefix.size()) : message;
}

TEST(ElementSet, SetWithMissingOrInconsistentPartsIsUsageError) {
  EXPECT_EQ(open_error_after([](hid_t g) { H5Adelete(g, "format"); }), "no attribute format)");
  EXPECT_EQ(open_error_after([](hid_t g) {
              H5Adelete(g, "format");
              h5::write_attribute(g, "format", std::string("pandas"), "test");
            }),
            "format is 'pandas')");
  EXPECT_EQ(open_error_after([](hid_t g) {
              H5Adelete(g, "format_version");
              h5::write_attribute(g, "format_version", std::int32_t{2}, "test");
            }),
            "format version 2, this mpmux reads version 1)");
  EXPECT_EQ(open_error_after([](hid_t g) {
              H5Adelete(g, "count");
              h5::write_attribute(g, "count", std::uint64_t{4}, "test");
            }),
            "/elements/offsets has 6 entries for count 4)");
  EXPECT_EQ(open_error_after([](hid_t g) {
              H5Adelete(g, "encoding");
              h5::write_attribute(g, "encoding", std::string("xml"), "test");
            }),
            "unknown encoding 'xml')");
  EXPECT_EQ(open_error_after([](hid_t g) { H5Ldelete(g, "offsets", H5P_DEFAULT); }),
            "no dataset /elements/offsets)");
  EXPECT_EQ(open_error_after([](hid_t g) { H5Ldelete(g, "data", H5P_DEFAULT); }),
            "no dataset /elements/data)");
  EXPECT_EQ(open_error_after([](hid_t g) {
              h5::Id d(H5Dopen2(g, "offsets", H5P_DEFAULT));
              const std::uint64_t last = 1;
              const hsize_t start[1] = {5}, count[1] = {1};
              h5::Id space(H5Dget_space(d.get()));
              H5Sselect_hyperslab(space.get(), H5S_SELECT_SET, start, nullptr, count, nullptr);
              h5::Id mem(H5Screate_simple(1, count, nullptr));
              H5Dwrite(d.get(), H5T_NATIVE_UINT64, mem.get(), space.get(), H5P_DEFAULT, &last);
            }),
            "/elements/offsets does not span /elements/data)");
}

TEST(ElementSet, HdfFileWithoutElementsGroupIsUsageError) {
  TempDir tmp;
  const auto file = tmp.path() / "results.h5";
  {
    h5::Id f = h5::create_file(file);
    h5::Id g(H5Gcreate2(f.get(), "results", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
  }
  EXPECT_EQ(usage_error_message([&] { ElementSet::open(file); }),
            file.string() + ": not an mpmux element set (no group /elements)");
}

TEST(ElementSet, PythonReadsTheTableAsItsCsvModuleParsesTheFile) {
  const stdfs::path source = MPMUX_SOURCE_DIR;
  const auto csv = source / "tests/unit/data/mixed.csv";
  const auto script = source / "tests/unit/data/check_element_table.py";
  if (std::system("/usr/bin/python3 -c 'import h5py' >/dev/null 2>&1") != 0)
    FAIL() << "/usr/bin/python3 with h5py is not available (scripts/install-deps.sh installs it)";

  TempDir tmp;
  const auto file = tmp.path() / "elements.h5";
  const ParsedElements parsed = read_csv(csv);
  ASSERT_EQ(parsed.elements.size(), 4u);
  ElementSet::write(file, parsed.elements, parsed.encoding, "mixed", &*parsed.table);

  auto run = [&](const std::string& tag) {
    const std::string command = "/usr/bin/python3 '" + script.string() + "' '" + csv.string() + "' '" +
                                file.string() + "' '" + tag + "' 2>&1";
    std::string output;
    FILE* pipe = ::popen(command.c_str(), "r");
    if (!pipe) return std::make_pair(-1, std::string("popen failed"));
    char buf[4096];
    while (std::size_t got = std::fread(buf, 1, sizeof buf, pipe)) output.append(buf, got);
    const int status = ::pclose(pipe);
    return std::make_pair(WIFEXITED(status) ? WEXITSTATUS(status) : -1, output);
  };
  const auto [status, output] = run("mixed");
  EXPECT_EQ(status, 0) << output;
  // The checker must be able to fail: a wrong expectation is noticed.
  const auto [wrong_status, wrong_output] = run("another-tag");
  EXPECT_EQ(wrong_status, 1) << wrong_output;
  EXPECT_THAT(wrong_output, testing::HasSubstr("attribute tag"));
}

}  // namespace
}  // namespace mpmux
