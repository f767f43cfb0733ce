// notify_replay: sends dead letters back into the pipeline once the cause is fixed.
//
//   notify_replay events   [--bootstrap ADDR] [--topic T] [--to TOPIC] [common options]
//   notify_replay postings [--rabbitmq-url URL] [--exchange X] [--channel email|webhook]
//                          [--queue Q] [common options]
//   common options: --dry-run, --match SUBSTRING, --limit N
//
// events: the ETL's dead-letter topic (default notify_events.dlq) is read from the start up to
// its current end, without a consumer group; each event goes back, with its original key and
// value, to the topic named in its `original_topic` header (or --to). It carries the dead
// letter's original_topic, original_partition and original_offset headers (where it first
// arrived), so the ETL gives it the identity of its first arrival: its postings keep their
// posting ids, and the worker's delivery ledger skips those already sent. Kafka keeps the dead
// letters: a second run replays them again, so narrow it with --match or --limit.
// postings: the worker's dead-letter queue (default notifications.email.dead, or any queue of
// postings given with --queue, e.g. a delay queue to release deferrals early) is drained; each
// posting is published to the exchange with the channel as routing key, without the worker's
// x-dead-reason / x-attempts / x-last-error / x-deliver-at / x-defer-reason headers, and its
// dead copy is acknowledged only after the broker confirmed the new one.
// --dry-run lists what would be replayed and changes nothing. --match keeps only dead letters
// whose error (events: the `error` header; postings: x-dead-reason or x-last-error) contains
// the text. Exit status: 0 done, 1 a dead letter could not be replayed or a broker failed,
// 2 bad usage.

#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdlib>
#include <iostream>
#include <limits>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "notify/amqp.hpp"
#include "notify/envelope.hpp"
#include "notify/kafka.hpp"
#include "notify/log.hpp"

namespace {

using namespace std::chrono_literals;

struct Args {
  std::string source;  // "events" or "postings"
  bool dry_run = false;
  std::string match;
  std::optional<long> limit;
  // events
  std::string bootstrap;
  std::string topic = "notify_events.dlq";
  std::string to;
  // postings
  std::string rabbitmq_url = "amqp://guest:guest@127.0.0.1:5672/%2f";
  std::string exchange = "notifications";
  notify::Channel channel = notify::Channel::kEmail;
  std::string queue;  // default: the channel's dead-letter queue
  std::chrono::milliseconds idle = 2s;
};

// CLI11 prints what is wrong (or the help); a usage error exits with 2.
Args parse(int argc, char** argv) {
  Args args;
  CLI::App app{"Sends dead letters back into the pipeline once the cause is fixed.",
               "notify_replay"};
  app.require_subcommand(1);
  CLI::App* events = app.add_subcommand("events", "the ETL's dead-letter topic, back to Kafka");
  CLI::App* postings =
      app.add_subcommand("postings",
                         "a queue of postings (the worker's dead letters), back to "
                         "the exchange");
  const auto non_negative = CLI::Range(0L, std::numeric_limits<long>::max());
  for (CLI::App* source : {events, postings}) {
    source->add_flag("--dry-run", args.dry_run, "list what would be replayed, change nothing");
    source->add_option("--match", args.match, "only dead letters whose error contains TEXT");
    source->add_option("--limit", args.limit, "at most N dead letters")->check(non_negative);
  }
  events->add_option("--bootstrap", args.bootstrap, "Kafka bootstrap servers")
      ->envname("KAFKA_BOOTSTRAP_SERVERS");
  events->add_option("--topic", args.topic, "dead-letter topic")->capture_default_str();
  events->add_option("--to", args.to, "topic to replay into (default: each one's original_topic)");

  postings->add_option("--rabbitmq-url", args.rabbitmq_url, "RabbitMQ URL")
      ->envname("RABBITMQ_URL")
      ->capture_default_str();
  postings->add_option("--exchange", args.exchange, "exchange to publish to")
      ->capture_default_str();
  std::string channel = "email";
  postings
      ->add_option("--channel", channel,
                   "channel, the routing key; its dead-letter queue is the default --queue")
      ->check(CLI::Validator(
          [](std::string& value) {
            return notify::channel_from(value) ? std::string() : "email or webhook";
          },
          "email|webhook"))
      ->capture_default_str();
  postings->add_option("--queue", args.queue,
                       "queue to drain (default: the channel's dead letters)");
  long wait_seconds = std::chrono::duration_cast<std::chrono::seconds>(args.idle).count();
  postings->add_option("--wait", wait_seconds, "seconds of an empty queue that end the run")
      ->check(non_negative)
      ->capture_default_str();

  try {
    app.parse(argc, argv);
    if (events->parsed() && args.bootstrap.empty()) {
      throw CLI::ValidationError("--bootstrap", "not given, and no KAFKA_BOOTSTRAP_SERVERS");
    }
  } catch (const CLI::ParseError& e) {
    std::exit(app.exit(e) == 0 ? 0 : 2);
  }
  args.source = events->parsed() ? "events" : "postings";
  args.channel = *notify::channel_from(channel);
  args.idle = std::chrono::seconds(wait_seconds);
  if (postings->parsed() && args.queue.empty()) {
    notify::amqp::Topology topology;
    topology.exchange = args.exchange;
    args.queue = topology.dead_letter_queue_for(notify::to_string(args.channel));
  }
  return args;
}

// One line per dead letter: no newlines or tabs from a payload, and not the whole of it.
std::string preview(const std::string& text, std::size_t max = 120) {
  std::string out;
  for (const char c : text.substr(0, max)) out += (c == '\n' || c == '\r' || c == '\t') ? ' ' : c;
  if (text.size() > max) out += "...";
  return out;
}

std::string kafka_header(const notify::kafka::Message& m, const std::string& name) {
  for (const auto& [key, value] : m.headers) {
    if (key == name) return value;
  }
  return {};
}

// The first arrival as the dead letter records it, passed on untouched (the ETL checks it and
// refuses a malformed one with the reason), and where the replay comes from.
notify::kafka::Headers replay_headers(const notify::kafka::Message& dead,
                                      const std::string& where) {
  namespace envelope = notify::envelope;
  notify::kafka::Headers out;
  for (const auto& [key, value] : dead.headers) {
    if (key == envelope::kOriginalTopicHeader || key == envelope::kOriginalPartitionHeader ||
        key == envelope::kOriginalOffsetHeader) {
      out.emplace_back(key, value);
    }
  }
  out.emplace_back(envelope::kReplayedFromHeader, where);
  return out;
}

bool matches(const std::string& match, const std::vector<std::string>& texts) {
  if (match.empty()) return true;
  for (const auto& t : texts) {
    if (t.find(match) != std::string::npos) return true;
  }
  return false;
}

bool limit_reached(const Args& args, long taken) { return args.limit && taken >= *args.limit; }

// ---------------------------------------------------------------------------------------------

int replay_events(const Args& args) {
  std::optional<notify::kafka::Producer> producer;
  if (!args.dry_run) producer.emplace(args.bootstrap);
  long seen = 0;
  long taken = 0;
  long done = 0;
  long failed = 0;
  notify::kafka::read_topic_to_end(
      args.bootstrap, args.topic, [&](const notify::kafka::Message& m) {
        ++seen;
        const std::string error = kafka_header(m, notify::envelope::kErrorHeader);
        if (!matches(args.match, {error})) return true;
        ++taken;
        const std::string where =
            m.topic + "[" + std::to_string(m.partition) + "]@" + std::to_string(m.offset);
        const std::string target =
            args.to.empty() ? kafka_header(m, notify::envelope::kOriginalTopicHeader) : args.to;
        if (args.dry_run) {
          std::cout << where << "\terror=" << error << "\tto=" << target
                    << "\tkey=" << m.key.value_or("") << "\tvalue=" << preview(m.value)
                    << std::endl;
        } else if (target.empty()) {
          std::cout << where << "\tskipped: no original_topic header (use --to)" << std::endl;
          ++failed;
        } else {
          const auto d = producer->produce(target, m.key, m.value, 10s, replay_headers(m, where));
          std::cout << where << "\treplayed to " << d.topic << "[" << d.partition << "]@"
                    << d.offset << std::endl;
          ++done;
        }
        return !limit_reached(args, taken);
      });
  std::cout << taken << " of " << seen << " dead-lettered events in " << args.topic
            << (args.match.empty() ? "" : " matched \"" + args.match + "\"")
            << (args.dry_run ? "; dry run: nothing produced"
                             : "; " + std::to_string(done) + " replayed")
            << std::endl;
  return failed == 0 ? 0 : 1;
}

// ---------------------------------------------------------------------------------------------

// The worker's bookkeeping of the failed attempts: a replayed posting starts afresh.
int replay_postings(const Args& args) {
  notify::amqp::ConnectionOptions connection;
  connection.url = notify::amqp::Url::parse(args.rabbitmq_url);
  connection.connection_name = "notify_replay";
  // No prefetch limit: every dead posting not replayed stays unacknowledged until the end, when
  // disconnecting returns them all to the queue in one go.
  notify::amqp::Consumer consumer({connection, args.queue, /*prefetch=*/0, std::nullopt});
  consumer.connect();
  std::optional<notify::amqp::ConfirmedPublisher> publisher;
  if (!args.dry_run) {
    publisher.emplace(
        notify::amqp::ConfirmedPublisher::Options{connection, args.exchange, 1, std::nullopt});
    publisher->connect();
  }

  long seen = 0;
  long taken = 0;
  int status = 0;
  long done = 0;
  std::set<std::string> replayed;  // message ids
  while (!limit_reached(args, taken)) {
    const auto d = consumer.next(args.idle);
    if (!d) break;
    // The worker dead-lettered a replayed posting again while this run goes on: stop here
    // rather than go round in circles.
    if (!d->message_id.empty() && replayed.count(d->message_id) > 0) break;
    ++seen;
    namespace envelope = notify::envelope;
    std::string reason = envelope::header(*d, envelope::kDeadReasonHeader);
    // Rejected by RabbitMQ, or from a delay queue.
    if (reason.empty()) reason = envelope::header(*d, envelope::kFirstDeathReasonHeader);
    if (reason.empty()) reason = envelope::header(*d, envelope::kDeferReasonHeader);
    const std::string last_error = envelope::header(*d, envelope::kLastErrorHeader);
    if (!matches(args.match, {reason, last_error})) continue;
    ++taken;
    const std::string line = "message_id=" + d->message_id + "\treason=" + reason +
                             "\tlast_error=" + last_error +
                             "\tattempts=" + envelope::header(*d, envelope::kAttemptsHeader) +
                             "\tdeliver_at=" + envelope::header(*d, envelope::kDeliverAtHeader);
    if (args.dry_run) {
      std::cout << line << "\tbody=" << preview(d->body) << std::endl;
      continue;
    }
    notify::amqp::Message m = envelope::replay_of(*d, args.channel);
    auto result = notify::amqp::ConfirmedPublisher::Result::kReturned;
    bool confirmed = false;
    publisher->publish(std::move(m), [&](notify::amqp::ConfirmedPublisher::Result r) {
      confirmed = true;
      result = r;
    });
    publisher->flush(10s);
    if (!confirmed || result != notify::amqp::ConfirmedPublisher::Result::kAcked) {
      std::cout << line << "\tNOT replayed: "
                << (confirmed ? "no queue is bound to " + args.exchange + " for " +
                                    std::string(notify::to_string(args.channel))
                              : std::string("the broker did not confirm it"))
                << std::endl;
      status = 1;
      break;  // it stays in the dead-letter queue; so do the others
    }
    consumer.ack(d->delivery_tag);
    replayed.insert(d->message_id);
    ++done;
    std::cout << line << "\treplayed to " << args.exchange << " / "
              << notify::to_string(args.channel) << std::endl;
  }
  consumer.disconnect();
  std::cout << taken << " of " << seen << " dead postings in " << args.queue
            << (args.match.empty() ? "" : " matched \"" + args.match + "\"")
            << (args.dry_run ? "; dry run: all left in the queue"
                             : "; " + std::to_string(done) + " replayed")
            << std::endl;
  return status;
}

}  // namespace

int main(int argc, char** argv) {
  const Args args = parse(argc, argv);
  notify::log::init("notify_replay", notify::log::Level::kWarn);
  try {
    return args.source == "events" ? replay_events(args) : replay_postings(args);
  } catch (const std::exception& e) {
    std::cerr << "notify_replay: " << e.what() << std::endl;
    return 1;
  }
}
