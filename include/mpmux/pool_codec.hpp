// How the process pool turns inputs, results and exit values into bytes and back.
#pragma once
#include <boost/archive/binary_iarchive.hpp>
#include <boost/archive/binary_oarchive.hpp>
#include <boost/iostreams/device/array.hpp>
#include <boost/iostreams/device/back_inserter.hpp>
#include <boost/iostreams/stream.hpp>
#include <cstdint>
#include <cstring>
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
struct Codec<T, std::enable_if_t<std::is_trivially_copyable_v<T> && !IsTuple<T>::value && !IsPair<T>::value>> {
  static void write(std::string& out, const T& value) {
    out.append(reinterpret_cast<const char*>(&value), sizeof(T));
  }
  static T read(std::string_view bytes) {
    T value;
    std::memcpy(static_cast<void*>(&value), bytes.data(), sizeof(T));
    return value;
  }
};

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
