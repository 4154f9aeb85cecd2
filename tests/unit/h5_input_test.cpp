// HDF5 input: which --from values name a dataset, and how member types become fields.
#include "store/h5_input.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "mpmux/error.hpp"
#include "store/h5.hpp"
#include "test_support.hpp"

namespace mpmux {
namespace {

using mpmux::test::TempDir;
using mpmux::test::usage_error_message;

TEST(H5Source, AnHdf5NameSplitsAtTheLastColonBeforeTheDatasetPath) {
  const auto a = h5_dataset_of("runs/params.h5:/grid/points");
  ASSERT_TRUE(a);
  EXPECT_EQ(a->file, "runs/params.h5");
  EXPECT_EQ(a->dataset, "/grid/points");
  const auto b = h5_dataset_of("a:/b/P.HDF5:/d");  // a colon inside the file's own path
  ASSERT_TRUE(b);
  EXPECT_EQ(b->file, "a:/b/P.HDF5");
  EXPECT_EQ(b->dataset, "/d");
  EXPECT_FALSE(h5_dataset_of("grid.csv"));
  EXPECT_FALSE(h5_dataset_of("odd:/name.jsonl"));
  EXPECT_EQ(usage_error_message([] { h5_dataset_of("params.h5"); }),
            "--from 'params.h5': name the dataset too, as params.h5:/path/to/dataset");
}

// A compound dataset of an int16, a float32, a space-padded fixed string and a UTF-8
// variable-length string, written with the C API as another program would.
struct Row {
  std::int16_t n;
  float x;
  char fixed[4];
  const char* text;
};

std::filesystem::path write_compound(const TempDir& tmp, const std::vector<Row>& rows, hid_t n_type) {
  const std::filesystem::path file = tmp.path() / "in.h5";
  h5::Id f = h5::create_file(file);
  h5::Id fixed(H5Tcopy(H5T_C_S1));
  H5Tset_size(fixed.get(), 4);
  H5Tset_strpad(fixed.get(), H5T_STR_SPACEPAD);
  h5::Id text = h5::string_type("test");
  h5::Id type(H5Tcreate(H5T_COMPOUND, sizeof(Row)));
  H5Tinsert(type.get(), "n", offsetof(Row, n), n_type);
  H5Tinsert(type.get(), "x", offsetof(Row, x), H5T_NATIVE_FLOAT);
  H5Tinsert(type.get(), "fixed", offsetof(Row, fixed), fixed.get());
  H5Tinsert(type.get(), "text", offsetof(Row, text), text.get());
  const hsize_t dims[1] = {rows.size()};
  h5::Id space(H5Screate_simple(1, dims, nullptr));
  h5::Id d(H5Dcreate2(f.get(), "d", type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
  EXPECT_GE(H5Dwrite(d.get(), type.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, rows.data()), 0);
  return file;
}

TEST(H5Input, CompoundMembersBecomeTypedColumnsAndJsonFields) {
  TempDir tmp;
  const auto file = write_compound(
      tmp, {{-3, 0.1f, {'a', 'b', ' ', ' '}, "x\"y"}, {7, 2.0f, {'0', '0', '7', '1'}, ""}}, H5T_NATIVE_INT16);
  const ParsedElements p = read_h5({file, "/d"});
  ASSERT_TRUE(p.table);
  EXPECT_EQ(p.table->names, (std::vector<std::string>{"n", "x", "fixed", "text"}));
  EXPECT_EQ(p.table->types, (std::vector<ColumnType>{ColumnType::int64, ColumnType::float64,
                                                     ColumnType::string, ColumnType::string}));
  ASSERT_EQ(p.elements.size(), 2u);
  EXPECT_EQ(p.elements.at(0), R"({"n":-3,"x":0.1,"fixed":"ab","text":"x\"y"})");
  EXPECT_EQ(p.elements.at(1), R"({"n":7,"x":2.0,"fixed":"0071","text":""})");
  EXPECT_EQ(std::get<double>(p.table->cell(0, 1)), 0.1);  // the float32's shortest text, read back
}

TEST(H5Input, UnsignedValuesBeyondInt64AreRefusedNamingTheRow) {
  TempDir tmp;
  struct Big {
    std::uint64_t v;
  };
  const std::filesystem::path file = tmp.path() / "big.h5";
  {
    h5::Id f = h5::create_file(file);
    h5::Id type(H5Tcreate(H5T_COMPOUND, sizeof(Big)));
    H5Tinsert(type.get(), "v", 0, H5T_NATIVE_UINT64);
    const hsize_t dims[1] = {2};
    h5::Id space(H5Screate_simple(1, dims, nullptr));
    h5::Id d(H5Dcreate2(f.get(), "d", type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
    const Big rows[2] = {{1}, {std::uint64_t{1} << 63}};
    ASSERT_GE(H5Dwrite(d.get(), type.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, rows), 0);
  }
  EXPECT_EQ(usage_error_message([&] {
              read_h5({file, "/d"});
            }),
            "--from '" + file.string() +
                ":/d': row 1 of v: 9223372036854775808 is beyond the int64 range of element fields");
}

TEST(H5Input, TextThatIsNotUtf8IsRefusedNamingTheRowAndMember) {
  TempDir tmp;
  const auto file = write_compound(
      tmp, {{1, 1.0f, {'o', 'k', 0, 0}, "fine"}, {2, 2.0f, {'o', 'k', 0, 0}, "\xff"}}, H5T_NATIVE_INT16);
  EXPECT_EQ(usage_error_message([&] {
              read_h5({file, "/d"});
            }),
            "--from '" + file.string() + ":/d': row 1 of text: text that is not UTF-8");
}

}  // namespace
}  // namespace mpmux
