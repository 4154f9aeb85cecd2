// Element sets from a dataset of an existing HDF5 file: `mpmux new ROOT --from FILE.h5:/DATASET`.
// See docs/formats.md ("HDF5 input").
#pragma once
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

#include "mpmux/element_set.hpp"

namespace mpmux {

/// A file and a dataset path inside it.
struct H5Dataset {
  std::filesystem::path file;
  std::string dataset;  // absolute, "/grid/points"
};

/// Splits `from` at the last ":/" whose left side ends in .h5, .hdf5 or .he5 (any case);
/// nullopt when there is none (not an HDF5 source). Throws UsageError for an HDF5 file named
/// without a dataset ("params.h5").
std::optional<H5Dataset> h5_dataset_of(std::string_view from);

/// One element per row of a 1-D compound dataset (one field per member: integers, floats,
/// fixed or variable-length strings) or of a 2-D integer or float dataset (fields c0..cN-1,
/// or the names in the dataset's string-array attribute `columns`). Elements are JSON objects
/// as for CSV rows, and the table has the same columns: integers int64, floats float64 (a
/// float column holding NaN or infinity is a string column, as in CSV), strings as they are.
/// A float is written as the shortest text that reads back as the same value of its own width
/// (a float32 0.1 is "0.1"). Throws UsageError naming the file and the dataset for a missing
/// file or dataset, a group, a dataset of another rank or type (enums, references, arrays,
/// variable-length sequences, nested compounds), unsigned values beyond int64, text that is not
/// UTF-8, or an empty dataset.
ParsedElements read_h5(const H5Dataset& source);

}  // namespace mpmux
