#pragma once
// Keeping recipients' addresses out of the logs: "ann@example.com" is logged as
// "a***@example.com", enough to tell a domain's trouble apart, not enough to identify anyone.

#include <string>
#include <string_view>

namespace notify {

// "ann@example.com" → "a***@example.com". Text without an "@" comes back as it is.
std::string mask_address(std::string_view address);
// Every address inside free text (an SMTP reply, an error message) masked the same way.
std::string mask_addresses(std::string_view text);

}  // namespace notify
