// How the process pool turns inputs, results and exit values into bytes and back.
#pragma once
#include <boost/archive/binary_iarchive.hpp>
#include <boost/archive/binary_oarchive.hpp>
#include <boost/iostreams/device/array.hpp>
#include <boost/iostreams/device/back_inserter.hpp>
#include <boost/iostreams/stream.hpp>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <memory>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>

namespace mpmux::pool_detail {

template <class T>
struct IsTuple : std::false_type {};
template <class... Ts>
struct IsTuple<std::tuple<Ts...>> : std::true_type {};

/// Codec<T>::write appends the bytes of one value to `out`; Codec<T>::read rebuilds the value
/// from exactly those bytes. Trivially copyable types are copied as they are (the fast path);
/// std::string is its bytes; tuples and pairs are their members, each length-prefixed; anything else
/// goes through a Boost.Serialization binary archive without header.
template <class T, class Enable = void>
struct Codec {
  static void write(std::string& out, const T& value) {
    namespace io = boost::iostreams;
    io::stream<io::back_insert_device<std::string>> stream(out);
    {
      boost::archive::binary_oarchive archive(stream, boost::archive::no_header);
      archive << value;
    }
    stream.flush();
  }
  static T read(std::string_view bytes) {
    namespace io = boost::iostreams;
    io::stream<io::array_source> stream(bytes.data(), bytes.size());
    boost::archive::binary_iarchive archive(stream, boost::archive::no_header);
    T value{};
    archive >> value;
    return value;
  }
};

template <class T>
struct IsPair : std::false_type {};
template <class A, class B>
struct IsPair<std::pair<A, B>> : std::true_type {};

template <class T>
struct Codec<T,
             std::enable_if_t<std::is_trivially_copyable_v<T> && !IsTuple<T>::value && !IsPair<T>::value>> {
  static void write(std::string& out, const T& value) {
    out.append(reinterpret_cast<const char*>(&value), sizeof(T));
  }
  static T read(std::string_view bytes) {
    T value;
    std::memcpy(static_cast<void*>(&value), bytes.data(), sizeof(T));
    return value;
  }
};

/// Whether Codec<T> copies T as its sizeof(T) bytes (so a value's length is known in advance).
template <class T>
inline constexpr bool kFixedSizeCodec =
    std::is_trivially_copyable_v<T> && !IsTuple<T>::value && !IsPair<T>::value;

template <>
struct Codec<std::string> {
  static void write(std::string& out, const std::string& value) { out.append(value); }
  static std::string read(std::string_view bytes) { return std::string(bytes); }
};

inline void put_u32(std::string& out, std::uint32_t v) {
  out.append(reinterpret_cast<const char*>(&v), sizeof v);
}
inline std::uint32_t get_u32(const char* p) {
  std::uint32_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

/// Appends `count` inputs read from `it` to a byte buffer (std::string or a vector of char), in
/// the process pool's task layout: fixed-size values packed (sizeof(T) bytes each, one pass),
/// others as [u32 len][bytes] each. read_input reads one back.
template <class T, class Buffer, class It>
void write_inputs(Buffer& out, It it, std::size_t count) {
  if constexpr (kFixedSizeCodec<T>) {
    std::size_t at = out.size();
    out.resize(at + count * sizeof(T));
    char* p = out.data() + at;
    if constexpr (std::contiguous_iterator<It> && std::is_same_v<std::iter_value_t<It>, T>) {
      if (count > 0) std::memcpy(p, static_cast<const void*>(std::to_address(it)), count * sizeof(T));
    } else {
      for (std::size_t k = 0; k < count; ++k, ++it, p += sizeof(T)) {
        const T& value = *it;
        std::memcpy(p, static_cast<const void*>(&value), sizeof(T));
      }
    }
  } else {
    std::string bytes;
    for (std::size_t k = 0; k < count; ++k, ++it) {
      bytes.clear();
      Codec<T>::write(bytes, static_cast<const T&>(*it));
      auto len = static_cast<std::uint32_t>(bytes.size());
      const char* l = reinterpret_cast<const char*>(&len);
      out.insert(out.end(), l, l + 4);
      out.insert(out.end(), bytes.begin(), bytes.end());
    }
  }
}

/// The byte size of the input at `p` in the layout of write_inputs.
template <class T>
std::size_t input_size(const char* p) {
  if constexpr (kFixedSizeCodec<T>) {
    return sizeof(T);
  } else {
    return 4 + static_cast<std::size_t>(get_u32(p));
  }
}

/// Reads the input at `p` (layout of write_inputs) and moves `p` past it.
template <class T>
T read_input(const char*& p) {
  if constexpr (kFixedSizeCodec<T>) {
    T value;
    std::memcpy(static_cast<void*>(&value), p, sizeof(T));
    p += sizeof(T);
    return value;
  } else {
    std::uint32_t len = get_u32(p);
    T value = Codec<T>::read(std::string_view(p + 4, len));
    p += 4 + static_cast<std::size_t>(len);
    return value;
  }
}

template <class... Ts>
struct Codec<std::tuple<Ts...>> {
  static void write(std::string& out, const std::tuple<Ts...>& value) {
    std::apply([&](const auto&... member) { (write_one(out, member), ...); }, value);
  }
  static std::tuple<Ts...> read(std::string_view bytes) {
    std::size_t at = 0;
    // Braced initialization evaluates the members left to right.
    return std::tuple<Ts...>{read_one<Ts>(bytes, at)...};
  }

 private:
  template <class M>
  static void write_one(std::string& out, const M& member) {
    std::size_t at = out.size();
    put_u32(out, 0);
    Codec<M>::write(out, member);
    std::uint32_t len = static_cast<std::uint32_t>(out.size() - at - 4);
    std::memcpy(out.data() + at, &len, 4);
  }
  template <class M>
  static M read_one(std::string_view bytes, std::size_t& at) {
    std::uint32_t len = get_u32(bytes.data() + at);
    M member = Codec<M>::read(bytes.substr(at + 4, len));
    at += 4 + len;
    return member;
  }
};

template <class A, class B>
struct Codec<std::pair<A, B>> {
  static void write(std::string& out, const std::pair<A, B>& value) {
    Codec<std::tuple<A, B>>::write(out, std::tuple<A, B>(value.first, value.second));
  }
  static std::pair<A, B> read(std::string_view bytes) {
    auto t = Codec<std::tuple<A, B>>::read(bytes);
    return {std::move(std::get<0>(t)), std::move(std::get<1>(t))};
  }
};

}  // namespace mpmux::pool_detail
