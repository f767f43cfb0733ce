// The ETL's operability endpoints on real brokers: /healthz, /readyz following the broker
// connections, and /metrics counting what the pipeline did.

#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fstream>
#include <optional>
#include <sstream>
#include <thread>

#include <httplib.h>

#include "etl_process.hpp"
#include "notify/amqp.hpp"
#include "notify/kafka.hpp"
#include "notify/posting.hpp"
#include "stack.hpp"

using namespace std::chrono_literals;
using notify::testing::free_port;
using notify::testing::http_status;
using notify::testing::metric_value;
using notify::testing::Process;
using notify::testing::scrape_metrics;
using notify::testing::Stack;
using notify::testing::wait_until;

namespace {

struct Fixture : notify::testing::EtlNames {
  int port = free_port();

  std::unique_ptr<Process> start_etl(const std::string& rabbitmq_url) const {
    return notify::testing::start_etl(*this, {{"RABBITMQ_URL", rabbitmq_url},
                                              {"AUTH_MAX_ATTEMPTS", "2"},
                                              {"ETL_RETRY_MAX_BACKOFF", "1s"},
                                              {"METRICS_HOST", "127.0.0.1"},
                                              {"METRICS_PORT", std::to_string(port)}});
  }

  std::unique_ptr<notify::amqp::Consumer> postings() const {
    return notify::testing::postings_consumer(*this, "email", 10);
  }

  // The first fixture user signs up; then an event that is not JSON. Returns the partition.
  std::int32_t emit() const {
    std::ifstream in(Stack::get().value("SOURCE_DIR") + "/dev/users.json");
    const auto user = nlohmann::json::parse(in).at(0);
    notify::kafka::Producer producer(Stack::get().value("KAFKA_BOOTSTRAP_SERVERS"));
    const nlohmann::json value = {
        {"id", user["id"]},
        {"event_type", "user_signed_up"},
        {"priority", "immediate"},
        {"from_service", "auth"},
        {"details", {{"email", user["email"]}, {"confirm_link", "/s/1"}}}};
    const auto d = producer.produce(topic, std::string("one-partition"), value.dump());
    producer.produce(topic, std::string("one-partition"), "this is not an event");
    return d.partition;
  }
};

}  // namespace

TEST_CASE("etl metrics: ready once connected; counters follow an event and a rejection") {
  Fixture f;
  auto queue = f.postings();
  const auto partition = f.emit();
  auto etl = f.start_etl(Stack::get().value("RABBITMQ_URL"));
  INFO("etl log:\n" << etl->log());

  REQUIRE(wait_until([&] { return http_status(f.port, "/healthz") == 200; }, 10s));
  CHECK(wait_until([&] { return http_status(f.port, "/readyz") == 200; }, 30s));

  // The posting arrives in RabbitMQ.
  std::optional<notify::amqp::Delivery> delivery;
  wait_until([&] { return (delivery = queue->next(200ms)).has_value(); }, 30s);
  REQUIRE(delivery);
  queue->ack(delivery->delivery_tag);

  const std::string processed =
      "notify_etl_events_total{outcome=\"processed\",type=\"user_signed_up\"}";
  const std::string rejected = "notify_etl_events_total{outcome=\"rejected\",type=\"other\"}";
  std::string text;
  const bool counted = wait_until(
      [&] {
        text = scrape_metrics(f.port);
        return metric_value(text, processed) == 1.0 && metric_value(text, rejected) == 1.0;
      },
      20s);
  INFO("metrics:\n" << text);
  CHECK(counted);
  CHECK(metric_value(text,
                     "notify_etl_postings_published_total{channel=\"email\",template=\"email/"
                     "welcome\"}") == 1.0);
  CHECK(metric_value(text, "notify_etl_publish_confirm_seconds_count") == 1.0);
  CHECK(metric_value(text, "notify_etl_dead_lettered_total{reason_class=\"invalid_event\"}") ==
        1.0);
  CHECK(metric_value(text, "notify_etl_auth_request_seconds_count{call=\"get_user\"}") == 1.0);
  // Known from the start at zero, and no error since.
  CHECK(metric_value(
            text, "notify_etl_auth_errors_total{call=\"get_user\",kind=\"unavailable\"}") == 0.0);

  // Both events consumed: no lag on the partition (updated about once a second).
  const std::string lag = "notify_etl_consumer_lag{partition=\"" + std::to_string(partition) +
                          "\",topic=\"" + f.topic + "\"}";
  CHECK(wait_until([&] { return metric_value(scrape_metrics(f.port), lag) == 0.0; }, 10s));

  CHECK(etl->terminate() == 0);
  CHECK(http_status(f.port, "/healthz") == 0);  // the endpoints go with the process
}

TEST_CASE("etl metrics: alive but not ready while RabbitMQ is unreachable") {
  Fixture f;
  // A port nobody listens on: the publisher cannot connect.
  auto etl = f.start_etl("amqp://guest:guest@127.0.0.1:" + std::to_string(free_port()) + "/%2f");
  INFO("etl log:\n" << etl->log());
  REQUIRE(wait_until([&] { return http_status(f.port, "/healthz") == 200; }, 10s));
  // Long enough for Kafka to assign partitions: still not ready without RabbitMQ.
  std::this_thread::sleep_for(3s);
  CHECK(http_status(f.port, "/readyz") == 503);
  CHECK(etl->log().find("intake paused") != std::string::npos);
  CHECK(etl->terminate() == 0);
}

TEST_CASE("etl metrics: a refused login is an error, counted, and the reason of /readyz") {
  Fixture f;
  notify::amqp::Url url = notify::amqp::Url::parse(Stack::get().value("RABBITMQ_URL"));
  auto etl = f.start_etl("amqp://" + url.user + ":not-the-password@" + url.host + ":" +
                         std::to_string(url.port) + "/%2f");
  INFO("etl log:\n" << etl->log());
  REQUIRE(wait_until([&] { return http_status(f.port, "/healthz") == 200; }, 10s));

  httplib::Client client("127.0.0.1", f.port);
  std::string body;
  const bool refused = wait_until(
      [&] {
        auto r = client.Get("/readyz");
        body = r ? r->body : "";
        return r && r->status == 503 && body.find("403 ACCESS_REFUSED") != std::string::npos;
      },
      15s);
  INFO("readyz: " << body);
  CHECK(refused);
  CHECK(body.starts_with("not ready: rabbitmq refused: 403 ACCESS_REFUSED"));
  CHECK(body.find("not-the-password") == std::string::npos);
  // Retried (an operator may fix the user), and counted each time.
  CHECK(wait_until(
      [&] {
        auto n =
            metric_value(scrape_metrics(f.port), "notify_etl_amqp_refusals_total{code=\"403\"}");
        return n && *n >= 2;
      },
      15s));
  CHECK(etl->log().find("\"msg\":\"rabbitmq refused\"") != std::string::npos);
  CHECK(etl->log().find("\"reply_code\":403") != std::string::npos);
  CHECK(etl->terminate() == 0);
}
