#include <doctest/doctest.h>

#include <stdexcept>
#include <string>

#include "notify/amqp.hpp"

using notify::amqp::Url;

namespace {

std::string parse_error(const char* url) {
  try {
    Url::parse(url);
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

TEST_CASE("Url::parse reads every part") {
  const Url url = Url::parse("amqp://alice:s3cret@rabbit.example:5673/orders");
  CHECK(url.user == "alice");
  CHECK(url.password == "s3cret");
  CHECK(url.host == "rabbit.example");
  CHECK(url.port == 5673);
  CHECK(url.vhost == "orders");
}

TEST_CASE("Url::parse fills defaults") {
  const Url url = Url::parse("amqp://");
  CHECK(url.user == "guest");
  CHECK(url.password == "guest");
  CHECK(url.host == "127.0.0.1");
  CHECK(url.port == 5672);
  CHECK(url.vhost == "/");

  const Url host_only = Url::parse("amqp://broker");
  CHECK(host_only.host == "broker");
  CHECK(host_only.port == 5672);
  CHECK(host_only.vhost == "/");
}

TEST_CASE("Url::parse: an empty path and %2f both mean the vhost /") {
  CHECK(Url::parse("amqp://h:1/").vhost == "/");
  CHECK(Url::parse("amqp://h:1").vhost == "/");
  CHECK(Url::parse("amqp://h:1/%2f").vhost == "/");
  CHECK(Url::parse("amqp://h:1/%2F").vhost == "/");
  CHECK(Url::parse("amqp://h:1/%2fstaging").vhost == "/staging");
}

TEST_CASE("Url::parse percent-decodes user, password and vhost") {
  const Url url = Url::parse("amqp://us%40er:p%3Aa%2Fss%25@127.0.0.1:25672/my%20vhost");
  CHECK(url.user == "us@er");
  CHECK(url.password == "p:a/ss%");
  CHECK(url.vhost == "my vhost");
  CHECK(url.port == 25672);
}

TEST_CASE("Url::parse: a user without a password has an empty password") {
  const Url url = Url::parse("amqp://bob@h/");
  CHECK(url.user == "bob");
  CHECK(url.password.empty());
}

TEST_CASE("Url::parse accepts a bracketed IPv6 host") {
  const Url url = Url::parse("amqp://[::1]:5673/");
  CHECK(url.host == "::1");
  CHECK(url.port == 5673);
  CHECK(Url::parse("amqp://[::1]").port == 5672);
}

TEST_CASE("Url::parse rejects bad URLs with a message naming the problem") {
  CHECK(parse_error("http://h/") == "invalid AMQP URL 'http://h/': it must start with amqp://");
  CHECK(parse_error("amqps://h/").find("TLS (amqps) is not supported") != std::string::npos);
  CHECK(parse_error("").find("must start with amqp://") != std::string::npos);
  CHECK(parse_error("amqp://h:/").find("the port is empty") != std::string::npos);
  CHECK(parse_error("amqp://h:abc/").find("the port 'abc' is not a number") != std::string::npos);
  CHECK(parse_error("amqp://h:0/").find("the port '0'") != std::string::npos);
  CHECK(parse_error("amqp://h:65536/").find("the port '65536'") != std::string::npos);
  CHECK(parse_error("amqp://h:56x/").find("the port '56x'") != std::string::npos);
  CHECK(parse_error("amqp://h/a/b").find("single path segment") != std::string::npos);
  CHECK(parse_error("amqp://h/%2").find("bad percent-encoding in the vhost") != std::string::npos);
  CHECK(parse_error("amqp://h/%zz").find("bad percent-encoding in the vhost") != std::string::npos);
  CHECK(parse_error("amqp://u:%g1@h/").find("bad percent-encoding in the password") !=
        std::string::npos);
  CHECK(parse_error("amqp://:pw@h/").find("the user name is empty") != std::string::npos);
  CHECK(parse_error("amqp://h/?heartbeat=10").find("query parameters") != std::string::npos);
  CHECK(parse_error("amqp://[::1/").find("unterminated '['") != std::string::npos);
}

TEST_CASE("Url::parse never shows the password in its errors") {
  const std::string e = parse_error("amqp://user:s3cret@h:abc/");
  CHECK(e.find("s3cret") == std::string::npos);
  CHECK(e.find("amqp://user:***@h:abc/") != std::string::npos);
}

TEST_CASE("Url::parse: escapes are exactly two hex digits; bytes above %7F are refused") {
  // rabbitmq-c reads escapes with sscanf("%2x"), which would take a sign or a space.
  CHECK(parse_error("amqp://h/%+1").find("bad percent-encoding in the vhost") != std::string::npos);
  CHECK(parse_error("amqp://h/% 1").find("bad percent-encoding in the vhost") != std::string::npos);
  const std::string e = parse_error("amqp://u:p%C3%A4ss@h/");
  CHECK(e.find("the password holds a percent-encoded byte above %7F") != std::string::npos);
  CHECK(e.find("p%C3") == std::string::npos);
}
