#pragma once
// What the fuzz targets share: an invariant that aborts loudly (libFuzzer keeps the input as a
// crash-* reproducer), and the fixed times and options the targets run with.

#include <cstdio>
#include <cstdlib>
#include <string_view>

namespace fuzz {

// A broken invariant is a finding, like a crash: print what broke and abort.
[[noreturn]] inline void fail(std::string_view what, std::string_view detail = {}) {
  std::fprintf(stderr, "fuzz invariant broken: %.*s\n", static_cast<int>(what.size()), what.data());
  if (!detail.empty()) {
    std::fprintf(stderr, "  detail: %.*s\n",
                 static_cast<int>(detail.size() > 2000 ? 2000 : detail.size()), detail.data());
  }
  std::abort();
}

inline void require(bool condition, std::string_view what, std::string_view detail = {}) {
  if (!condition) fail(what, detail);
}

}  // namespace fuzz
