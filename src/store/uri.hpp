// Percent-encoding of paths in file:// URLs and mux ids, shared by MuxId and the object stores.
#pragma once
#include <cstddef>
#include <string>
#include <string_view>

namespace mpmux::store {

/// Bytes a path keeps as they are in a URL; everything else is percent-encoded, which keeps a
/// URL one shell word and free of URI delimiters ('#', '?', '%').
bool is_plain_path_byte(unsigned char c);

/// A byte for an error message: printable ASCII as itself, anything else as \xNN.
std::string show_byte(unsigned char c);

/// Percent-encodes the bytes outside is_plain_path_byte.
std::string percent_encode_path(std::string_view path);

/// Decodes `encoded`, the path part of a URL that starts `offset` bytes into it. Throws
/// UsageError "<context>: <why>" for a bad escape, a NUL byte or a byte that must be encoded.
std::string percent_decode_path(std::string_view encoded, std::size_t offset, const std::string& context);

}  // namespace mpmux::store
