// bench_produce: produces events one at a time, for latency runs (bench/run.py drives it).
//
//   bench_produce --bootstrap HOST:PORT --topic T
//
// Reads "key|value" lines from stdin; produces each at once (linger.ms=0), waits until the broker
// acknowledged it and prints {"produced": …, "acked": …}: the CLOCK_MONOTONIC seconds (Python's
// time.monotonic()) of the produce call and of the acknowledgement. The connection is made
// before the first line, so no event waits for it.

#include <librdkafka/rdkafka.h>
#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>

namespace {

double seconds_now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

[[noreturn]] void fail(const std::string& what) {
  std::cerr << "bench_produce: " << what << "\n";
  std::exit(1);
}

void set(rd_kafka_conf_t* conf, const char* name, const std::string& value) {
  char errstr[512];
  if (rd_kafka_conf_set(conf, name, value.c_str(), errstr, sizeof errstr) != RD_KAFKA_CONF_OK) {
    fail(std::string(name) + ": " + errstr);
  }
}

int g_delivered = 0;
rd_kafka_resp_err_t g_error = RD_KAFKA_RESP_ERR_NO_ERROR;

void on_delivery(rd_kafka_t*, const rd_kafka_message_t* m, void*) {
  ++g_delivered;
  g_error = m->err;
}

}  // namespace

int main(int argc, char** argv) {
  std::string bootstrap, topic;
  CLI::App app{"bench_produce: produces events one at a time, for latency runs"};
  app.add_option("--bootstrap", bootstrap)->required();
  app.add_option("--topic", topic)->required();
  CLI11_PARSE(app, argc, argv);
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  set(conf, "bootstrap.servers", bootstrap);
  set(conf, "linger.ms", "0");
  rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
  char errstr[512];
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
  if (rk == nullptr) fail(errstr);
  // Connects and learns the topic's leader before the first event.
  const rd_kafka_metadata_t* metadata = nullptr;
  rd_kafka_topic_t* rkt = rd_kafka_topic_new(rk, topic.c_str(), nullptr);
  if (rd_kafka_metadata(rk, 0, rkt, &metadata, 10000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
    rd_kafka_metadata_destroy(metadata);
  }
  rd_kafka_topic_destroy(rkt);
  std::printf("ready\n");
  std::fflush(stdout);

  for (std::string line; std::getline(std::cin, line);) {
    const auto bar = line.find('|');
    if (bar == std::string::npos) fail("a line is not key|value");
    // Whole expressions into librdkafka's macros, which cast their arguments unparenthesised.
    char* key = line.data();
    char* value = line.data() + bar + 1;
    const std::size_t value_size = line.size() - bar - 1;
    const double produced = seconds_now();
    const int before = g_delivered;
    const auto err =
        rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic.c_str()), RD_KAFKA_V_KEY(key, bar),
                          RD_KAFKA_V_VALUE(value, value_size),
                          RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
    if (err) fail(std::string("produce: ") + rd_kafka_err2str(err));
    while (g_delivered == before) rd_kafka_poll(rk, 1);
    if (g_error) fail(std::string("delivery: ") + rd_kafka_err2str(g_error));
    std::printf("{\"produced\": %.6f, \"acked\": %.6f}\n", produced, seconds_now());
    std::fflush(stdout);
  }
  rd_kafka_flush(rk, 5000);
  // Every event is acknowledged; rd_kafka_destroy can wait long for its threads (see
  // etl_relay.cpp).
  std::_Exit(0);
}
