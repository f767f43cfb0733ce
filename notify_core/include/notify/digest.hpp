#pragma once
#include <string>
#include <string_view>

namespace notify {

// SHA-256 of data as 64 lowercase hex digits (OpenSSL's libcrypto).
std::string sha256_hex(std::string_view data);

}  // namespace notify
