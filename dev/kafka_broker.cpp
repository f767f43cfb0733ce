// A development Kafka broker: librdkafka's in-process mock cluster, kept alive until SIGTERM or
// SIGINT. The mock cluster listens on a random port of 127.0.0.1 (it cannot bind a chosen one),
// so the address is printed and, with --bootstrap-file, written to a file for scripts to read.
//
//   dev_kafka_broker [--bootstrap-file PATH] [--partitions N] [--topics a,b]

#include <librdkafka/rdkafka.h>
// rdkafka_mock.h must come after rdkafka.h.
#include <librdkafka/rdkafka_mock.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "notify/log.hpp"

namespace {

struct Args {
  std::string bootstrap_file;
  int partitions = 3;
  std::vector<std::string> topics = {"notify_events", "notify_events.dlq"};
};

[[noreturn]] void usage(const std::string& problem) {
  std::cerr << "dev_kafka_broker: " << problem << "\n"
            << "usage: dev_kafka_broker [--bootstrap-file PATH] [--partitions N] [--topics a,b]\n";
  std::exit(2);
}

std::vector<std::string> split(const std::string& text, char sep) {
  std::vector<std::string> out;
  std::stringstream in(text);
  for (std::string item; std::getline(in, item, sep);) {
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

Args parse(int argc, char** argv) {
  Args args;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--help" || flag == "-h") usage("help");
    if (i + 1 >= argc) usage(flag + " needs a value");
    const std::string value = argv[++i];
    if (flag == "--bootstrap-file") {
      args.bootstrap_file = value;
    } else if (flag == "--partitions") {
      try {
        args.partitions = std::stoi(value);
      } catch (const std::exception&) {
        usage("--partitions: not a number: " + value);
      }
      if (args.partitions < 1) usage("--partitions must be at least 1");
    } else if (flag == "--topics") {
      args.topics = split(value, ',');
    } else {
      usage("unknown flag " + flag);
    }
  }
  return args;
}

// Readers poll for the file: they must never see it half written.
bool write_atomically(const std::string& path, const std::string& content) {
  const std::string tmp = path + ".tmp." + std::to_string(getpid());
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << content << "\n";
    if (!out.flush()) return false;
  }
  return std::rename(tmp.c_str(), path.c_str()) == 0;
}

void log_cb(const rd_kafka_t*, int level, const char* fac, const char* buf) {
  if (level <= 4) notify::log::warn(buf, {{"facility", fac}});
}

}  // namespace

int main(int argc, char** argv) {
  const Args args = parse(argc, argv);
  notify::log::init("dev_kafka_broker", notify::log::Level::kInfo);

  // Block the stop signals before librdkafka starts its threads (they inherit the mask), so that
  // sigwait() below is the only place they are delivered.
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);

  // The mock cluster needs a client instance to live in; it is not used otherwise.
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  rd_kafka_conf_set_log_cb(conf, log_cb);
  char errstr[512];
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
  if (rk == nullptr) {
    rd_kafka_conf_destroy(conf);
    notify::log::error("cannot create the client for the mock cluster", {{"error", errstr}});
    return 1;
  }
  rd_kafka_mock_cluster_t* cluster = rd_kafka_mock_cluster_new(rk, 1);
  if (cluster == nullptr) {
    notify::log::error("cannot create the mock cluster");
    rd_kafka_destroy(rk);
    return 1;
  }
  const std::string bootstrap = rd_kafka_mock_cluster_bootstraps(cluster);

  for (const auto& topic : args.topics) {
    if (const auto err = rd_kafka_mock_topic_create(cluster, topic.c_str(), args.partitions, 1)) {
      notify::log::error("cannot create topic",
                         {{"topic", topic}, {"error", rd_kafka_err2name(err)}});
      rd_kafka_mock_cluster_destroy(cluster);
      rd_kafka_destroy(rk);
      return 1;
    }
  }

  if (!args.bootstrap_file.empty() && !write_atomically(args.bootstrap_file, bootstrap)) {
    notify::log::error("cannot write the bootstrap file", {{"path", args.bootstrap_file}});
    rd_kafka_mock_cluster_destroy(cluster);
    rd_kafka_destroy(rk);
    return 1;
  }
  std::cout << "KAFKA_BOOTSTRAP_SERVERS=" << bootstrap << std::endl;
  notify::log::info(
      "mock Kafka broker listening",
      {{"bootstrap_servers", bootstrap}, {"topics", args.topics}, {"partitions", args.partitions}});

  int signal = 0;
  sigwait(&stop, &signal);
  notify::log::info("stopping", {{"signal", signal}});
  if (!args.bootstrap_file.empty()) std::remove(args.bootstrap_file.c_str());
  rd_kafka_mock_cluster_destroy(cluster);
  rd_kafka_destroy(rk);
  return 0;
}
