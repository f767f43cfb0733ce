#pragma once
// RAII holders for libcurl handles, shared by the HTTP and SMTP edges (auth_client, the
// worker's senders), and libcurl's process-wide initialisation, done once.

#include <curl/curl.h>

#include <memory>
#include <string>

namespace notify::curl {

// curl_global_init, once per process, thread-safe. Throws std::runtime_error if it fails.
void global_init();

struct EasyDeleter {
  void operator()(CURL* h) const { curl_easy_cleanup(h); }
};
using EasyHandle = std::unique_ptr<CURL, EasyDeleter>;

struct SlistDeleter {
  void operator()(curl_slist* l) const { curl_slist_free_all(l); }
};
using Slist = std::unique_ptr<curl_slist, SlistDeleter>;

// Appends one line; throws std::bad_alloc when libcurl cannot.
void append(Slist& list, const std::string& line);

}  // namespace notify::curl
