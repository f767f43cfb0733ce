// notify_trace: what happened to an event, a user or a posting, from the status topic and the
// ETL's dead-letter topic (documentation/operations.md, "make trace").
//
//   notify_trace (--event ID | --user ID | --posting ID) [--bootstrap ADDR]
//                [--status-topic T] [--dlq-topic T] [--zone ZONE] [--json] [--limit N]
//
// Both topics are read from the start up to their current end, without a consumer group (so
// nobody's offsets move). The story goes to standard output, one line per happening in time
// order: times in UTC (or --zone, an IANA zone), what happened, then the channel/template and
// the ids the selection does not already name. --json prints the matching status events as
// they are on the topic, and dead letters as objects of the same field names, one per line.
// What was read, and what could not be decoded (skipped), goes to standard error.
// Exit status: 0 something found (a topic that could not be read, e.g. one nothing was written
// to yet, is named on standard error), 1 nothing found or a failure, 2 bad usage.

#include <CLI/CLI.hpp>

#include <cstdlib>
#include <iostream>
#include <limits>
#include <string>
#include <vector>

#include "notify/kafka.hpp"
#include "notify/log.hpp"
#include "trace_story.hpp"

namespace {

namespace trace = notify::trace;

struct Args {
  std::string bootstrap;
  std::string status_topic = "notify_status";
  std::string dlq_topic = "notify_events.dlq";
  trace::Selection selection;
  const date::time_zone* zone = nullptr;  // UTC
  bool json = false;
  std::size_t limit = 10000;
};

// CLI11 prints what is wrong (or the help); a usage error exits with 2.
Args parse(int argc, char** argv) {
  Args args;
  CLI::App app{"Tells what happened to an event, a user or a posting.", "notify_trace"};
  app.add_option("--bootstrap", args.bootstrap, "Kafka bootstrap servers")
      ->envname("KAFKA_BOOTSTRAP_SERVERS");
  app.add_option("--status-topic", args.status_topic, "the status topic")->capture_default_str();
  app.add_option("--dlq-topic", args.dlq_topic, "the ETL's dead-letter topic")
      ->capture_default_str();
  std::string event;
  std::string user;
  std::string posting;
  CLI::Option_group* which = app.add_option_group("selection", "exactly one of");
  which->add_option("--event", event, "an event id (or topic/partition/offset)");
  which->add_option("--user", user, "a user id");
  which->add_option("--posting", posting, "a posting id");
  which->require_option(1);
  std::string zone;
  app.add_option("--zone", zone, "show times in this IANA zone (default UTC)")
      ->check(CLI::Validator(
          [](std::string& value) {
            try {
              date::locate_zone(value);
              return std::string();
            } catch (const std::exception&) {
              return "unknown time zone \"" + value + "\"";
            }
          },
          "ZONE"));
  app.add_flag("--json", args.json, "the matching events as JSON lines");
  app.add_option("--limit", args.limit, "at most N entries (the first read)")
      ->check(CLI::Range(std::size_t{1}, std::numeric_limits<std::size_t>::max()))
      ->capture_default_str();
  try {
    app.parse(argc, argv);
    if (args.bootstrap.empty()) {
      throw CLI::ValidationError("--bootstrap", "not given, and no KAFKA_BOOTSTRAP_SERVERS");
    }
    if ((event + user + posting).empty()) {
      throw CLI::ValidationError("selection", "the id is empty");
    }
  } catch (const CLI::ParseError& e) {
    std::exit(app.exit(e) == 0 ? 0 : 2);
  }
  if (!event.empty()) {
    args.selection = {trace::Selection::By::kEvent, event};
  } else if (!user.empty()) {
    args.selection = {trace::Selection::By::kUser, user};
  } else {
    args.selection = {trace::Selection::By::kPosting, posting};
  }
  if (!zone.empty()) args.zone = date::locate_zone(zone);
  return args;
}

// Reads one topic into the story; false (and why, on standard error) when it could not be read,
// e.g. a status topic nothing was written to yet.
bool read_into(const Args& args, const std::string& topic, trace::Story& story,
               void (trace::Story::*add)(const notify::kafka::Message&)) {
  try {
    notify::kafka::read_topic_to_end(args.bootstrap, topic, [&](const notify::kafka::Message& m) {
      (story.*add)(m);
      return true;
    });
    return true;
  } catch (const notify::kafka::Error& e) {
    std::cerr << "notify_trace: could not read " << topic << ": " << e.what() << std::endl;
    return false;
  }
}

// "notify_status (12 messages, 1 undecodable skipped)", or "notify_status (not read)".
std::string what_was_read(const std::string& topic, bool read, std::size_t messages,
                          std::size_t undecodable) {
  if (!read) return topic + " (not read)";
  return topic + " (" + std::to_string(messages) + (messages == 1 ? " message" : " messages") +
         (undecodable == 0 ? "" : ", " + std::to_string(undecodable) + " undecodable skipped") +
         ")";
}

int run(const Args& args) {
  trace::Story story(args.selection, args.limit);
  const bool status_read = read_into(args, args.status_topic, story, &trace::Story::add_status);
  const bool dead_letters_read =
      read_into(args, args.dlq_topic, story, &trace::Story::add_dead_letter);
  const std::string topics =
      what_was_read(args.status_topic, status_read, story.status_read(),
                    story.status_undecodable()) +
      " and " +
      what_was_read(args.dlq_topic, dead_letters_read, story.dead_letters_read(),
                    story.dead_letters_undecodable());
  const std::string what =
      std::string(trace::to_string(args.selection.by)) + " " + args.selection.id;

  const auto entries = story.entries();
  if (entries.empty()) {
    std::cerr << "notify_trace: nothing found for " << what << " in " << topics << std::endl;
    return 1;
  }
  std::cerr << "read " << topics << std::endl;
  if (!args.json) {
    std::cout << what << ": " << story.matched() << (story.matched() == 1 ? " entry" : " entries")
              << ", times in " << (args.zone != nullptr ? args.zone->name() : "UTC") << "\n";
  }
  for (const auto& entry : entries) {
    std::cout << (args.json ? trace::json_line(entry)
                            : trace::story_line(entry, args.selection, args.zone))
              << "\n";
  }
  std::cout << std::flush;
  if (story.matched() > entries.size()) {
    std::cerr << "notify_trace: " << story.matched() << " entries found, only the first "
              << entries.size() << " read are shown (--limit)" << std::endl;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const Args args = parse(argc, argv);
  notify::log::init("notify_trace", notify::log::Level::kWarn);
  try {
    return run(args);
  } catch (const std::exception& e) {
    std::cerr << "notify_trace: " << e.what() << std::endl;
    return 1;
  }
}
