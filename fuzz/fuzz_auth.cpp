// fuzz_auth: the Auth service's answers as the ETL reads them: a user (GET /api/v1/users/{id})
// and a page of the users listing, within the default limits and a tight nesting limit. A
// refusal is an InvalidUser or InvalidPage with a bounded reason; a user read is written back
// and read again unchanged.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "auth_client/auth_client.hpp"
#include "fuzz_check.hpp"

namespace {

// A reason goes into logs and dead letters: it must stay small whatever came in.
constexpr std::size_t kMaxReasonBytes = 2048;

bool same(const auth::User& a, const auth::User& b) {
  return a.id == b.id && a.email == b.email && a.first_name == b.first_name &&
         a.last_name == b.last_name && a.timezone == b.timezone && a.locale == b.locale &&
         a.email_notifications == b.email_notifications && a.active == b.active;
}

void check_user(const auth::User& u) {
  fuzz::require(!u.id.empty() && !u.email.empty(), "a user without id or e-mail");
  const std::string encoded = auth::encode_user(u).dump();
  try {
    fuzz::require(same(auth::parse_user(encoded), u), "a user changed when written and read",
                  encoded);
  } catch (const auth::InvalidUser& e) {
    fuzz::fail("a user read cannot be read again when written", e.what());
  }
}

void user(std::string_view body, const notify::JsonLimits& limits) {
  try {
    check_user(auth::parse_user(body, limits));
  } catch (const auth::InvalidUser& e) {
    fuzz::require(std::string_view(e.what()).size() <= kMaxReasonBytes, "a long user refusal",
                  e.what());
  }
}

void page(std::string_view body, const notify::JsonLimits& limits) {
  try {
    const auth::Page p = auth::parse_page(body, limits);
    fuzz::require(p.page_number >= 0 && p.page_size >= 0 && p.total >= 0,
                  "a negative page number, size or total");
    fuzz::require(p.skip_error.size() <= kMaxReasonBytes, "a long skip reason", p.skip_error);
    fuzz::require((p.skipped == 0) == p.skip_error.empty(), "skipped users without a reason");
    for (const auth::User& u : p.items) check_user(u);
    (void)p.has_more();
  } catch (const auth::InvalidPage& e) {
    fuzz::require(std::string_view(e.what()).size() <= kMaxReasonBytes, "a long page refusal",
                  e.what());
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  for (const notify::JsonLimits limits : {notify::JsonLimits{}, notify::JsonLimits{3}}) {
    user(body, limits);
    page(body, limits);
  }
  return 0;
}
