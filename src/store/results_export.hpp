// What the three results writers share: the export's inputs read block by block, the walk over
// the cells of a row, and the writers themselves (results_text.cpp, results_h5.cpp).
#pragma once
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "mpmux/results.hpp"
#include "mpmux/session.hpp"
#include "store/results_columns.hpp"
#include "store/results_fields.hpp"
#include "store/results_fold.hpp"

namespace mpmux::results {

// What an export reads, block by block: the element's fields and the fold of the journals. Both
// are read (the fold's first pass) before any output, so a bad journal leaves no trace.
struct Export {
  Export(const Session& session, const std::vector<BatchWinner>& winners)
      : fields(session), fold(session, winners) {}
  FieldSource fields;
  ResultFold fold;

  // Calls each(fields, first, rows) for consecutive blocks; fields rows count from `first`.
  template <class Each>
  void for_each_block(Each&& each) const {
    fold.for_each_block([&](std::uint64_t first, const std::vector<ElementResult>& rows) {
      const Fields f = fields.block(first, rows.size());
      each(f, first, rows);
    });
  }

  // The names of all columns, in order: the index, the element's fields, the result columns.
  std::vector<std::string_view> column_names() const {
    std::vector<std::string_view> names{kIndexColumn.name};
    for (const std::string& name : fields.schema().names) names.push_back(name);
    for (const ResultColumn& c : kResultColumns) names.push_back(c.name);
    return names;
  }
};

// Hands the cells of one row to `to` in column order, k counting from 0: the index, the
// element's fields (row r of `f`, through to.field), the result columns; an outcome column of a
// row never attempted goes to to.absent.
template <class To>
void visit_row(const ElementResult& row, const Fields& f, std::size_t r, To& to) {
  std::size_t k = 0;
  to.cell(k++, kIndexColumn.type, kIndexColumn.read(row));
  for (std::size_t c = 0; c < f.names.size(); ++c) to.field(k++, f, c, r);
  for (const ResultColumn& column : kResultColumns) {
    if (column.of_outcome && !row.outcome)
      to.absent(k++, column.type, column.absent);
    else
      to.cell(k++, column.type, column.read(row));
  }
}

// Receives a text export in pieces of about a MiB.
using Sink = std::function<void(std::string_view)>;

void write_csv(const Export& e, const Sink& sink);
void write_jsonl(const Export& e, const Sink& sink);
// Creates the HDF5 file `file` holding /results and closes it. Throws StoreError naming it.
void write_h5(const std::filesystem::path& file, const Session& session, const Export& e);

}  // namespace mpmux::results
