// bench_etl_relay: the ceiling of the ETL (bench/run.py drives it). What the ETL does with an
// event, minus the ETL's own work: consume it from Kafka with librdkafka, publish a posting's
// bytes with rabbitmq-c, and commit the offset once the broker confirmed it. No decoding, no
// rendering, no Auth lookup.
//
//   bench_etl_relay --bootstrap HOST:PORT --topic T --group G --count N --rabbitmq-url URL
//                   --exchange X --routing-key K --window W --body FILE --priority P
//                   [--message-id ID] [--header name=value]... [--consumer-config name=value,...]
//                   [--commit-interval-ms 250]
//
// --message-id and --header give each message the properties of a posting the ETL made (its
// message id made unique per message, as long as the sampled one).
//
// As the ETL by default: a consumer group, offsets stored only past confirmed publishes
// (enable.auto.offset.store=false) and committed asynchronously, coalesced, at most every
// --commit-interval-ms (KAFKA_COMMIT_INTERVAL), then synchronously at the end; publishes
// persistent and mandatory with at most W unconfirmed (RABBITMQ_CONFIRM_WINDOW). Stops once N
// publishes are confirmed; prints {"first": …, "done": …, "confirmed": …} (CLOCK_MONOTONIC
// seconds of the first consumed event and of the last confirm).
//
// Like bench_amqp, this tool includes <amqp.h> and <librdkafka/rdkafka.h> itself on purpose: the
// ceiling measures the libraries and the brokers without the project's code.

#include <amqp.h>
#include <amqp_tcp_socket.h>
#include <librdkafka/rdkafka.h>
#include <signal.h>
#include <sys/time.h>
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <fstream>
#include <iostream>
#include <iterator>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace {

double seconds_now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

[[noreturn]] void fail(const std::string& what) {
  std::cerr << "bench_etl_relay: " << what << "\n";
  std::exit(1);
}

struct Options {
  std::string bootstrap, topic, group, rabbitmq_url, exchange, routing_key, body_path;
  std::string consumer_config;
  // The properties of a posting the ETL made: each message carries these headers and a
  // message id of the same length, unique per message.
  std::string message_id;
  std::vector<std::string> headers;  // name=value
  long long count = 0;
  long long window = 512;
  int priority = 0;
  int commit_interval_ms = 250;
};

Options parse(int argc, char** argv) {
  Options o;
  CLI::App app{"bench_etl_relay: the ETL's ceiling, Kafka to RabbitMQ without the ETL's work"};
  app.add_option("--bootstrap", o.bootstrap)->required();
  app.add_option("--topic", o.topic)->required();
  app.add_option("--group", o.group)->required();
  app.add_option("--count", o.count)->required()->check(CLI::PositiveNumber);
  app.add_option("--rabbitmq-url", o.rabbitmq_url)->required();
  app.add_option("--exchange", o.exchange)->required();
  app.add_option("--routing-key", o.routing_key)->required();
  app.add_option("--window", o.window)->check(CLI::PositiveNumber);
  app.add_option("--body", o.body_path)->required();
  app.add_option("--priority", o.priority);
  app.add_option("--consumer-config", o.consumer_config);
  app.add_option("--commit-interval-ms", o.commit_interval_ms);
  app.add_option("--message-id", o.message_id, "a posting's message id (made unique per message)");
  app.add_option("--header", o.headers, "a posting's header, name=value (repeatable)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    std::exit(app.exit(e));
  }
  return o;
}

void set(rd_kafka_conf_t* conf, const std::string& name, const std::string& value) {
  char errstr[512];
  if (rd_kafka_conf_set(conf, name.c_str(), value.c_str(), errstr, sizeof errstr) !=
      RD_KAFKA_CONF_OK) {
    fail(name + "=" + value + ": " + errstr);
  }
}

rd_kafka_t* make_consumer(const Options& o) {
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  set(conf, "bootstrap.servers", o.bootstrap);
  set(conf, "group.id", o.group);
  set(conf, "enable.auto.offset.store", "false");
  set(conf, "enable.auto.commit", "false");
  set(conf, "auto.offset.reset", "earliest");
  std::size_t begin = 0;
  while (begin < o.consumer_config.size()) {
    std::size_t comma = o.consumer_config.find(',', begin);
    if (comma == std::string::npos) comma = o.consumer_config.size();
    const std::string item = o.consumer_config.substr(begin, comma - begin);
    const auto eq = item.find('=');
    if (eq == std::string::npos) fail("--consumer-config: " + item + " is not name=value");
    set(conf, item.substr(0, eq), item.substr(eq + 1));
    begin = comma + 1;
  }
  char errstr[512];
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
  if (rk == nullptr) fail(std::string("rd_kafka_new: ") + errstr);
  rd_kafka_poll_set_consumer(rk);
  rd_kafka_topic_partition_list_t* topics = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(topics, o.topic.c_str(), RD_KAFKA_PARTITION_UA);
  if (const auto err = rd_kafka_subscribe(rk, topics)) {
    fail(std::string("subscribe: ") + rd_kafka_err2str(err));
  }
  rd_kafka_topic_partition_list_destroy(topics);
  return rk;
}

void check_reply(amqp_rpc_reply_t reply, const std::string& what) {
  if (reply.reply_type == AMQP_RESPONSE_NORMAL) return;
  if (reply.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION) {
    fail(what + ": " + amqp_error_string2(reply.library_error));
  }
  fail(what + ": the broker refused (reply " + std::to_string(reply.reply.id) + ")");
}

amqp_connection_state_t connect_amqp(const std::string& url) {
  std::vector<char> buffer(url.begin(), url.end());
  buffer.push_back('\0');
  amqp_connection_info info{};
  if (amqp_parse_url(buffer.data(), &info) != AMQP_STATUS_OK) fail("bad URL " + url);
  amqp_connection_state_t state = amqp_new_connection();
  amqp_socket_t* socket = amqp_tcp_socket_new(state);
  if (socket == nullptr || amqp_socket_open(socket, info.host, info.port) != AMQP_STATUS_OK) {
    fail("cannot connect to RabbitMQ at " + std::string(info.host));
  }
  check_reply(
      amqp_login(state, info.vhost, 0, 131072, 0, AMQP_SASL_METHOD_PLAIN, info.user, info.password),
      "login");
  amqp_channel_open(state, 1);
  check_reply(amqp_get_rpc_reply(state), "channel.open");
  amqp_confirm_select(state, 1);
  check_reply(amqp_get_rpc_reply(state), "confirm.select");
  return state;
}

// A publish waiting for its confirm, with the event it carries.
struct InFlight {
  std::uint64_t tag;
  std::int32_t partition;
  std::int64_t offset;
  bool confirmed = false;
};

}  // namespace

int main(int argc, char** argv) {
  signal(SIGPIPE, SIG_IGN);
  const Options o = parse(argc, argv);
  std::ifstream in(o.body_path, std::ios::binary);
  if (!in) fail("cannot read " + o.body_path);
  const std::string body{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};

  amqp_connection_state_t amqp = connect_amqp(o.rabbitmq_url);
  rd_kafka_t* rk = make_consumer(o);

  amqp_basic_properties_t props{};
  props._flags =
      AMQP_BASIC_DELIVERY_MODE_FLAG | AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_PRIORITY_FLAG;
  props.delivery_mode = 2;
  props.content_type = amqp_cstring_bytes("application/json");
  props.priority = static_cast<std::uint8_t>(o.priority);
  std::vector<amqp_table_entry_t> header_entries;
  for (const std::string& h : o.headers) {
    const auto eq = h.find('=');
    if (eq == std::string::npos) fail("--header " + h + ": not name=value");
    amqp_table_entry_t& entry = header_entries.emplace_back();
    entry.key = amqp_bytes_t{eq, const_cast<char*>(h.data())};
    entry.value.kind = AMQP_FIELD_KIND_UTF8;
    entry.value.value.bytes = amqp_bytes_t{h.size() - eq - 1, const_cast<char*>(h.data() + eq + 1)};
  }
  if (!header_entries.empty()) {
    props._flags |= AMQP_BASIC_HEADERS_FLAG;
    props.headers = amqp_table_t{static_cast<int>(header_entries.size()), header_entries.data()};
  }
  // The sampled id with its last digits replaced by the message's number: the same length.
  std::string message_id = o.message_id;
  if (!message_id.empty()) props._flags |= AMQP_BASIC_MESSAGE_ID_FLAG;
  const amqp_bytes_t exchange = amqp_cstring_bytes(o.exchange.c_str());
  const amqp_bytes_t routing_key = amqp_cstring_bytes(o.routing_key.c_str());
  const amqp_bytes_t payload{body.size(), const_cast<char*>(body.data())};

  std::deque<InFlight> in_flight;
  std::uint64_t next_tag = 1;
  long long consumed = 0, confirmed = 0, nacked = 0, returned = 0;
  double first = 0;
  bool stored_since_commit = false;
  auto last_commit = std::chrono::steady_clock::now();
  const auto commit_interval = std::chrono::milliseconds(o.commit_interval_ms);

  // Marks what one confirm frame covers, then stores the offsets of the confirmed prefix.
  auto on_confirm = [&](std::uint64_t tag, bool multiple, bool nack) {
    for (auto& f : in_flight) {
      if (f.tag > tag) break;
      if ((multiple || f.tag == tag) && !f.confirmed) {
        f.confirmed = true;
        ++confirmed;
        if (nack) ++nacked;
      }
    }
    std::map<std::int32_t, std::int64_t> next_offsets;
    while (!in_flight.empty() && in_flight.front().confirmed) {
      next_offsets[in_flight.front().partition] = in_flight.front().offset + 1;
      in_flight.pop_front();
    }
    if (next_offsets.empty()) return;
    // A list of its own each time: librdkafka keeps references in a list it was given.
    rd_kafka_topic_partition_list_t* to_store =
        rd_kafka_topic_partition_list_new(static_cast<int>(next_offsets.size()));
    for (const auto& [partition, next] : next_offsets) {
      rd_kafka_topic_partition_list_add(to_store, o.topic.c_str(), partition)->offset = next;
    }
    const auto err = rd_kafka_offsets_store(rk, to_store);
    if (err) fail(std::string("offsets_store: ") + rd_kafka_err2str(err));
    stored_since_commit = true;
  };

  // Handles one frame from RabbitMQ; with wait false, returns at once when none is there.
  auto read_frame = [&](bool wait) {
    amqp_frame_t frame;
    timeval zero{0, 0};
    const int status = wait ? amqp_simple_wait_frame(amqp, &frame)
                            : amqp_simple_wait_frame_noblock(amqp, &frame, &zero);
    if (status == AMQP_STATUS_TIMEOUT) return false;
    if (status != AMQP_STATUS_OK)
      fail(std::string("wait for confirms: ") + amqp_error_string2(status));
    if (frame.frame_type != AMQP_FRAME_METHOD) return true;  // a basic.return's content
    const amqp_method_number_t id = frame.payload.method.id;
    if (id == AMQP_BASIC_ACK_METHOD) {
      const auto* ack = static_cast<amqp_basic_ack_t*>(frame.payload.method.decoded);
      on_confirm(ack->delivery_tag, ack->multiple != 0, false);
    } else if (id == AMQP_BASIC_NACK_METHOD) {
      const auto* nack = static_cast<amqp_basic_nack_t*>(frame.payload.method.decoded);
      on_confirm(nack->delivery_tag, nack->multiple != 0, true);
    } else if (id == AMQP_BASIC_RETURN_METHOD) {
      ++returned;
    } else if (id == AMQP_CHANNEL_CLOSE_METHOD) {
      fail("the broker closed the channel (does the exchange exist?)");
    }
    return true;
  };

  while (confirmed < o.count) {
    // The window is full, or every event is out: wait for the broker.
    if (static_cast<long long>(in_flight.size()) >= o.window || consumed >= o.count) {
      read_frame(true);
    } else {
      while (read_frame(false)) {
      }
      // Without publishes in flight nothing else can happen: wait for Kafka a little.
      rd_kafka_message_t* m = rd_kafka_consumer_poll(rk, in_flight.empty() ? 100 : 0);
      if (m != nullptr) {
        if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
          if (first == 0) first = seconds_now();
          if (!message_id.empty()) {
            const std::string number = std::to_string(consumed);
            const std::size_t n = std::min(number.size(), message_id.size());
            message_id.replace(message_id.size() - n, n, number, number.size() - n, n);
            props.message_id = amqp_bytes_t{message_id.size(), message_id.data()};
          }
          const int status =
              amqp_basic_publish(amqp, 1, exchange, routing_key, 1, 0, &props, payload);
          if (status != AMQP_STATUS_OK) fail(std::string("publish: ") + amqp_error_string2(status));
          in_flight.push_back({next_tag++, m->partition, m->offset});
          ++consumed;
        } else if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
          std::cerr << "bench_etl_relay: consume: " << rd_kafka_message_errstr(m) << "\n";
        }
        rd_kafka_message_destroy(m);
      }
    }
    const auto now = std::chrono::steady_clock::now();
    if (stored_since_commit && now - last_commit >= commit_interval) {
      rd_kafka_commit(rk, nullptr, 1);  // asynchronous; the next one coalesces what follows
      stored_since_commit = false;
      last_commit = now;
    }
  }
  const double done = seconds_now();
  std::printf(
      "{\"first\": %.6f, \"done\": %.6f, \"confirmed\": %lld, \"nacked\": %lld, "
      "\"returned\": %lld}\n",
      first, done, confirmed, nacked, returned);
  std::fflush(stdout);
  rd_kafka_commit(rk, nullptr, 0);
  rd_kafka_consumer_close(rk);
  amqp_connection_close(amqp, AMQP_REPLY_SUCCESS);
  amqp_destroy_connection(amqp);
  // Not rd_kafka_destroy: against the development broker it waited for its threads for ever
  // (librdkafka 2.0.2); the group is left and the offsets committed, the process ends now.
  std::_Exit(nacked == 0 && returned == 0 ? 0 : 1);
}
