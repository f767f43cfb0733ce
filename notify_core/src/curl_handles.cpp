#include "curl_handles.hpp"

#include <mutex>
#include <new>
#include <stdexcept>

namespace notify::curl {

void global_init() {
  static std::once_flag once;
  std::call_once(once, [] {
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
      throw std::runtime_error("curl_global_init failed");
    }
  });
}

void append(Slist& list, const std::string& line) {
  curl_slist* next = curl_slist_append(list.get(), line.c_str());
  if (next == nullptr) throw std::bad_alloc();
  (void)list.release();  // next now owns the old nodes
  list.reset(next);
}

}  // namespace notify::curl
