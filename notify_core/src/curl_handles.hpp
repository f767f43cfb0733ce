#pragma once
// RAII holders for libcurl handles and libcurl's process-wide initialisation (private to
// notify_core: the HTTP client is the only libcurl user here).

#include <curl/curl.h>

#include <string>

#include "notify/c_handle.hpp"

namespace notify::curl {

// curl_global_init, once per process, thread-safe. Throws std::runtime_error if it fails.
void global_init();

using EasyHandle = CHandle<CURL, curl_easy_cleanup>;
using Slist = CHandle<curl_slist, curl_slist_free_all>;

// Appends one line; throws std::bad_alloc when libcurl cannot.
void append(Slist& list, const std::string& line);

}  // namespace notify::curl
