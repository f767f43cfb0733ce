#pragma once
// One RAII holder for the handles of the C libraries at the edges (librdkafka, libcurl, ...):
// a std::unique_ptr whose deleter is the library's own free function. Names no library, so the
// edges' private headers can share it without leaking their C headers.

#include <memory>

namespace notify {

template <auto Free>
struct FreeWith {
  template <class T>
  void operator()(T* handle) const {
    Free(handle);
  }
};

// e.g. CHandle<rd_kafka_t, rd_kafka_destroy>, CHandle<CURL, curl_easy_cleanup>.
template <class T, auto Free>
using CHandle = std::unique_ptr<T, FreeWith<Free>>;

}  // namespace notify
