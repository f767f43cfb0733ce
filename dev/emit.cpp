// notify_emit: publishes events into Kafka exactly as the Auth service does, for development and
// tests.
//
//   notify_emit [--bootstrap ADDR] [--topic T] [--count N] [--users PATH] [--user-id ID]
//   notify_emit [--bootstrap ADDR] [--topic T] --raw JSON [--key KEY]
//
// --bootstrap defaults to $KAFKA_BOOTSTRAP_SERVERS. Each event is printed as one line:
// topic, partition, offset and key.

#include <cstdlib>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "notify/kafka.hpp"
#include "notify/log.hpp"

namespace {

struct Args {
  std::string bootstrap;
  std::string topic = "notify_events";
  int count = 1;
  std::string users_path = "dev/users.json";
  std::optional<std::string> user_id;
  std::optional<std::string> raw;
  std::optional<std::string> key;
};

[[noreturn]] void usage(const std::string& problem) {
  std::cerr << "notify_emit: " << problem << "\n"
            << "usage: notify_emit [--bootstrap ADDR] [--topic T] [--count N] [--users PATH]\n"
            << "                   [--user-id ID] | [--raw JSON [--key KEY]]\n";
  std::exit(2);
}

Args parse(int argc, char** argv) {
  Args args;
  if (const char* env = std::getenv("KAFKA_BOOTSTRAP_SERVERS")) args.bootstrap = env;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--help" || flag == "-h") usage("help");
    if (i + 1 >= argc) usage(flag + " needs a value");
    const std::string value = argv[++i];
    if (flag == "--bootstrap") {
      args.bootstrap = value;
    } else if (flag == "--topic") {
      args.topic = value;
    } else if (flag == "--count") {
      try {
        args.count = std::stoi(value);
      } catch (const std::exception&) {
        usage("--count: not a number: " + value);
      }
      if (args.count < 1) usage("--count must be at least 1");
    } else if (flag == "--users") {
      args.users_path = value;
    } else if (flag == "--user-id") {
      args.user_id = value;
    } else if (flag == "--raw") {
      args.raw = value;
    } else if (flag == "--key") {
      args.key = value;
    } else {
      usage("unknown flag " + flag);
    }
  }
  if (args.bootstrap.empty()) usage("no --bootstrap and no KAFKA_BOOTSTRAP_SERVERS");
  if (args.key && !args.raw) usage("--key goes with --raw");
  return args;
}

struct User {
  std::string id;
  std::string email;
};

std::vector<User> load_users(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot read users file " + path);
  const auto doc = nlohmann::json::parse(in);
  std::vector<User> users;
  for (const auto& u : doc) users.push_back({u.at("id"), u.at("email")});
  if (users.empty()) throw std::runtime_error("no users in " + path);
  return users;
}

// The Auth service's confirmation links are short paths with a random 5-character code.
std::string random_code(std::mt19937& rng) {
  static constexpr char kAlnum[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
  std::uniform_int_distribution<std::size_t> pick(0, sizeof kAlnum - 2);
  std::string code;
  for (int i = 0; i < 5; ++i) code += kAlnum[pick(rng)];
  return code;
}

nlohmann::ordered_json signed_up_event(const User& user, std::mt19937& rng) {
  return {{"id", user.id},
          {"event_type", "user_signed_up"},
          {"priority", "immediate"},
          {"from_service", "auth"},
          {"details", {{"email", user.email}, {"confirm_link", "/s/" + random_code(rng)}}}};
}

void print(const notify::kafka::Delivery& d, const std::optional<std::string>& key) {
  std::cout << d.topic << " partition " << d.partition << " offset " << d.offset;
  if (key) std::cout << " key " << *key;
  std::cout << std::endl;
}

}  // namespace

int main(int argc, char** argv) {
  const Args args = parse(argc, argv);
  notify::log::init("notify_emit", notify::log::Level::kWarn);
  try {
    notify::kafka::Producer producer(args.bootstrap);
    if (args.raw) {
      print(producer.produce(args.topic, args.key, *args.raw), args.key);
      return 0;
    }
    std::vector<User> users;
    if (args.user_id) {
      users.push_back({*args.user_id, "u-" + *args.user_id + "@example.com"});
      // A fixture user keeps its real address.
      std::ifstream probe(args.users_path);
      if (probe) {
        for (const auto& u : load_users(args.users_path)) {
          if (u.id == *args.user_id) users.front().email = u.email;
        }
      }
    } else {
      users = load_users(args.users_path);
    }
    std::mt19937 rng(std::random_device{}());
    for (int i = 0; i < args.count; ++i) {
      const User& user = users[static_cast<std::size_t>(i) % users.size()];
      const std::string key = user.id + "+user_signed_up";
      print(producer.produce(args.topic, key, signed_up_event(user, rng).dump()), key);
    }
  } catch (const std::exception& e) {
    std::cerr << "notify_emit: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
