// notify_emit: publishes events into Kafka exactly as the Auth service does, for development and
// tests.
//
//   notify_emit [--bootstrap ADDR] [--topic T] [--count N] [--users PATH] [--user-id ID]
//   notify_emit [--bootstrap ADDR] [--topic T] --raw JSON [--key KEY]
//
// --bootstrap defaults to $KAFKA_BOOTSTRAP_SERVERS. Each event is printed as one line:
// topic, partition, offset and key.

#include <CLI/CLI.hpp>

#include <cstdlib>
#include <fstream>
#include <iostream>
#include <limits>
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

// CLI11 prints what is wrong (or the help); a usage error exits with 2.
Args parse(int argc, char** argv) {
  Args args;
  CLI::App app{"Publishes events into Kafka exactly as the Auth service does.", "notify_emit"};
  app.add_option("--bootstrap", args.bootstrap, "Kafka bootstrap servers")
      ->envname("KAFKA_BOOTSTRAP_SERVERS");
  app.add_option("--topic", args.topic, "topic to publish to")->capture_default_str();
  app.add_option("--count", args.count, "events to publish, one user after the other")
      ->check(CLI::Range(1, std::numeric_limits<int>::max()))
      ->capture_default_str();
  app.add_option("--users", args.users_path, "users file")->capture_default_str();
  app.add_option("--user-id", args.user_id, "one user (its address from the users file if there)");
  CLI::Option* raw = app.add_option("--raw", args.raw, "publish this JSON as it is");
  app.add_option("--key", args.key, "message key of --raw")->needs(raw);
  try {
    app.parse(argc, argv);
    if (args.bootstrap.empty()) {
      throw CLI::ValidationError("--bootstrap", "not given, and no KAFKA_BOOTSTRAP_SERVERS");
    }
  } catch (const CLI::ParseError& e) {
    std::exit(app.exit(e) == 0 ? 0 : 2);
  }
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
