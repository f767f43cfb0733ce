#include <doctest/doctest.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>

#include <httplib.h>
#include <prometheus/counter.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include "notify/metrics.hpp"

using notify::MetricsServer;

namespace {

MetricsServer::Options loopback() {
  MetricsServer::Options o;
  o.host = "127.0.0.1";
  o.port = 0;
  return o;
}

httplib::Result get(int port, const std::string& path) {
  httplib::Client client("127.0.0.1", port);
  client.set_connection_timeout(2);
  client.set_read_timeout(2);
  return client.Get(path.c_str());
}

}  // namespace

TEST_CASE("MetricsServer: /healthz answers ok while the process runs") {
  MetricsServer server(loopback());
  REQUIRE(server.port() > 0);
  auto r = get(server.port(), "/healthz");
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(r->body == "ok\n");
}

TEST_CASE("MetricsServer: /readyz follows the ready check") {
  MetricsServer server(loopback());
  auto before = get(server.port(), "/readyz");
  REQUIRE(before);
  CHECK(before->status == 503);  // no check yet: not ready

  std::atomic<bool> connected{false};
  server.set_ready_check([&connected] { return connected.load(); });
  auto down = get(server.port(), "/readyz");
  REQUIRE(down);
  CHECK(down->status == 503);
  CHECK(down->body == "not ready\n");

  connected = true;
  auto up = get(server.port(), "/readyz");
  REQUIRE(up);
  CHECK(up->status == 200);
  CHECK(up->body == "ready\n");

  server.set_ready_check([]() -> bool { throw std::runtime_error("broken check"); });
  auto broken = get(server.port(), "/readyz");
  REQUIRE(broken);
  CHECK(broken->status == 503);
}

TEST_CASE("MetricsServer: /readyz says why it is not ready") {
  MetricsServer server(loopback());
  std::mutex mutex;
  std::optional<std::string> reason = "rabbitmq refused: 403 ACCESS_REFUSED - Login was refused";
  server.set_readiness([&]() -> std::optional<std::string> {
    std::lock_guard lock(mutex);
    return reason;
  });
  auto refused = get(server.port(), "/readyz");
  REQUIRE(refused);
  CHECK(refused->status == 503);
  CHECK(refused->body == "not ready: rabbitmq refused: 403 ACCESS_REFUSED - Login was refused\n");

  {
    std::lock_guard lock(mutex);
    reason = "line one\nline two " + std::string(5000, 'x');
  }
  auto long_reason = get(server.port(), "/readyz");
  REQUIRE(long_reason);
  CHECK(long_reason->status == 503);
  CHECK(long_reason->body.starts_with("not ready: line one line two xxx"));
  CHECK(long_reason->body.ends_with("...\n"));
  CHECK(long_reason->body.size() < 1100);

  {
    std::lock_guard lock(mutex);
    reason.reset();
  }
  auto up = get(server.port(), "/readyz");
  REQUIRE(up);
  CHECK(up->status == 200);
  CHECK(up->body == "ready\n");

  server.set_readiness([]() -> std::optional<std::string> { throw std::runtime_error("boom"); });
  auto broken = get(server.port(), "/readyz");
  REQUIRE(broken);
  CHECK(broken->status == 503);
  CHECK(broken->body == "not ready: readiness check failed: boom\n");
}

TEST_CASE("MetricsServer: /metrics renders the registry in the text format") {
  auto registry = std::make_shared<prometheus::Registry>();
  auto& sent = prometheus::BuildCounter()
                   .Name("test_postings_total")
                   .Help("postings by template")
                   .Register(*registry);
  sent.Add({{"template", "welcome"}, {"priority", "5"}}).Increment(3);
  auto& latency =
      prometheus::BuildHistogram().Name("test_latency_seconds").Help("latency").Register(*registry);
  latency.Add({}, prometheus::Histogram::BucketBoundaries{0.1, 1.0}).Observe(0.5);

  MetricsServer server(loopback(), registry);
  CHECK(server.registry() == registry);
  auto r = get(server.port(), "/metrics");
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(r->get_header_value("Content-Type") == "text/plain; version=0.0.4");
  CHECK(r->body.find("# TYPE test_postings_total counter") != std::string::npos);
  CHECK(r->body.find("test_postings_total{priority=\"5\",template=\"welcome\"} 3") !=
        std::string::npos);
  CHECK(r->body.find("test_latency_seconds_bucket{le=\"1\"} 1") != std::string::npos);
  CHECK(r->body.find("test_latency_seconds_count 1") != std::string::npos);

  // A counter moved after the first scrape shows in the next one.
  sent.Add({{"template", "welcome"}, {"priority", "5"}}).Increment();
  auto again = get(server.port(), "/metrics");
  REQUIRE(again);
  CHECK(again->body.find("test_postings_total{priority=\"5\",template=\"welcome\"} 4") !=
        std::string::npos);

  CHECK(notify::render_metrics(*registry) == again->body);
}

TEST_CASE("MetricsServer: an unknown path is 404") {
  MetricsServer server(loopback());
  auto r = get(server.port(), "/nothing");
  REQUIRE(r);
  CHECK(r->status == 404);
}

TEST_CASE("MetricsServer: the destructor stops listening and frees the port") {
  int port = 0;
  {
    MetricsServer server(loopback());
    port = server.port();
    REQUIRE(get(port, "/healthz"));
  }
  CHECK_FALSE(get(port, "/healthz"));
  // The port is free again: a new server can take it.
  MetricsServer::Options same = loopback();
  same.port = port;
  MetricsServer again(same);
  CHECK(again.port() == port);
  auto r = get(port, "/healthz");
  REQUIRE(r);
  CHECK(r->status == 200);
}

TEST_CASE("MetricsServer: a port already taken is an error naming it") {
  MetricsServer first(loopback());
  MetricsServer::Options same = loopback();
  same.port = first.port();
  try {
    MetricsServer second(same);
    FAIL("a second server listened on the same port");
  } catch (const std::runtime_error& e) {
    CHECK(std::string(e.what()).find(std::to_string(first.port())) != std::string::npos);
  }
}

TEST_CASE("MetricsServer: stops cleanly right after starting") {
  for (int i = 0; i < 20; ++i) {
    MetricsServer server(loopback());
    CHECK(server.port() > 0);
  }
}
