#include <doctest/doctest.h>

#include "notify/redact.hpp"

using notify::mask_address;
using notify::mask_addresses;

TEST_CASE("mask_address keeps the first letter and the domain") {
  CHECK(mask_address("ann@example.com") == "a***@example.com");
  CHECK(mask_address("a@example.com") == "a***@example.com");
  CHECK(mask_address("@example.com") == "***@example.com");
  CHECK(mask_address("no address") == "no address");
  CHECK(mask_address("") == "");
}

TEST_CASE("mask_addresses masks every address inside free text") {
  CHECK(mask_addresses("smtp 550: <ann.lee+news@example.com>: Recipient address rejected") ==
        "smtp 550: <a***@example.com>: Recipient address rejected");
  CHECK(mask_addresses("invalid recipient address: 'bob@example.org', from carl@mail.example") ==
        "invalid recipient address: 'b***@example.org', from c***@mail.example");
  CHECK(mask_addresses("ann@example.com") == "a***@example.com");
  CHECK(mask_addresses("a@b") == "a***@b");
}

TEST_CASE("mask_addresses leaves text without addresses alone") {
  CHECK(mask_addresses("smtp 451: try again later") == "smtp 451: try again later");
  CHECK(mask_addresses("") == "");
  CHECK(mask_addresses("@ alone, user@ and @host") == "@ alone, user@ and @host");
  CHECK(mask_addresses("@@") == "@@");
}
