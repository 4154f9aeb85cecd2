// Element sets from user input beyond the readers of element_set.hpp: a file named as `mpmux new
// --from` takes it, and JSON texts handed over one by one (the C ABI, bindings).
#pragma once
#include <cstddef>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "mpmux/element_set.hpp"
#include "store/field_text.hpp"

namespace mpmux {

/// Collects JSON texts as elements, the way read_jsonl collects its lines: each checked and kept
/// without the spaces between tokens, and a table kept while every element is a flat object with
/// the keys of the first one, in its order.
class JsonElements {
 public:
  /// objects_only: every element must be a JSON object (JSON Lines); otherwise any JSON value.
  explicit JsonElements(bool objects_only);
  /// Appends one element. Throws UsageError starting with `at` (e.g. "grid.jsonl:7: ") for
  /// invalid JSON, a non-object when objects_only, or a key given twice; nothing is appended then.
  void add(std::string_view text, const std::string& at);
  std::size_t size() const { return parsed_.elements.size(); }
  /// The elements (encoding json) and their table. The collection holds none until give_back.
  ParsedElements take();
  /// Puts back what take() returned, unchanged, so the collection is as it was before.
  void give_back(ParsedElements&& parsed);

 private:
  bool objects_only_;
  ParsedElements parsed_;
  bool tabular_ = true;
  std::vector<std::string> keys_;
  std::vector<TableColumn> texts_;
  std::vector<bool> all_numbers_;
  std::vector<field_text::JsonMember> members_;
  std::unordered_set<std::string_view> seen_;
};

/// The elements of `from` as `mpmux new --from` reads them: FILE.h5:/DATASET (an HDF5 dataset),
/// else CSV or JSON Lines by `format` ("csv", "jsonl") or, when it is empty, by the name's
/// extension (.csv, .jsonl, .ndjson). `encoding_name` as text_encoding_from_string takes it.
/// Throws UsageError naming the file, format or encoding.
ParsedElements read_input_file(const std::string& from, const std::string& format,
                               const std::string& encoding_name);

}  // namespace mpmux
