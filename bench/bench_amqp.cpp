// bench_amqp: the bare rabbitmq-c side of the benchmarks (bench/run.py drives it).
//
//   bench_amqp URL publish EXCHANGE ROUTING_KEY COUNT WINDOW BODY_FILE PRIORITY [RATE] [id-at=N]
//       the publisher-only reference of the ETL: COUNT persistent, mandatory messages with
//       BODY_FILE's bytes, publisher confirms with at most WINDOW unconfirmed; prints
//       {"seconds": …}. With RATE (messages/s, 0: unpaced), paced to it: what the broker costs at
//       a service's pace. With id-at=N, the 12 bytes at offset N of the body are replaced by the
//       message's sequence number (12 digits), so that every message is another posting.
//   bench_amqp URL republish QUEUE EXCHANGE ROUTING_KEY COUNT WINDOW PREFETCH CONNECTIONS
//       the ceiling of the worker's deferrals: CONNECTIONS threads, each with its own connection,
//       consume QUEUE (PREFETCH unacknowledged each), publish a persistent copy of each message
//       (body and properties) to EXCHANGE/ROUTING_KEY with at most WINDOW unconfirmed, and
//       acknowledge the original once its copy is confirmed (multiple). Stops after COUNT copies
//       are confirmed; prints {"seconds": …}.
//   bench_amqp URL watch QUEUE COUNT TIMEOUT_S [PID]
//       polls the queue's depth until it reaches COUNT; prints the steady-clock times (seconds,
//       CLOCK_MONOTONIC, as Python's time.monotonic()) of the first message and of the COUNTth.
//       Fails after TIMEOUT_S, or as soon as process PID has ended.
//   bench_amqp URL count|purge|delete|exists QUEUE
//   bench_amqp URL sample QUEUE BODY_FILE    takes one message, writes its body; prints
//                                           {"bytes": …, "priority": …, "message_id": …,
//                                            "headers": {…}} (its string-valued headers)
//
// The project's AMQP edge (notify_core) is the only place that includes <amqp.h>; this tool is
// the exception on purpose: the ceiling measures the library and the broker without our code.

#include <amqp.h>
#include <amqp_tcp_socket.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <deque>
#include <fstream>
#include <iostream>
#include <iterator>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

namespace {

using SteadyClock = std::chrono::steady_clock;

double seconds_now() {
  return std::chrono::duration<double>(SteadyClock::now().time_since_epoch()).count();
}

amqp_bytes_t bytes_of(const std::string& s) {
  return amqp_bytes_t{s.size(), const_cast<char*>(s.data())};
}

std::string text_of(const amqp_bytes_t& b) {
  return std::string(static_cast<const char*>(b.bytes), b.len);
}

[[noreturn]] void fail(const std::string& what) {
  std::cerr << "bench_amqp: " << what << "\n";
  std::exit(1);
}

void check_reply(amqp_rpc_reply_t reply, const std::string& what) {
  switch (reply.reply_type) {
    case AMQP_RESPONSE_NORMAL:
      return;
    case AMQP_RESPONSE_LIBRARY_EXCEPTION:
      fail(what + ": " + amqp_error_string2(reply.library_error));
    default:
      fail(what + ": the broker refused (reply " + std::to_string(reply.reply.id) + ")");
  }
}

// One connection, one channel; a channel the broker closed (404 on a passive declare) is
// answered and replaced by the next one.
class Link {
 public:
  explicit Link(const std::string& url) {
    std::vector<char> buffer(url.begin(), url.end());
    buffer.push_back('\0');
    amqp_connection_info info{};
    if (amqp_parse_url(buffer.data(), &info) != AMQP_STATUS_OK) fail("bad URL " + url);
    state_ = amqp_new_connection();
    amqp_socket_t* socket = amqp_tcp_socket_new(state_);
    if (socket == nullptr) fail("cannot create a socket");
    if (amqp_socket_open(socket, info.host, info.port) != AMQP_STATUS_OK) {
      fail("cannot connect to " + std::string(info.host) + ":" + std::to_string(info.port));
    }
    check_reply(amqp_login(state_, info.vhost, 0, 131072, 0, AMQP_SASL_METHOD_PLAIN, info.user,
                           info.password),
                "login");
    open_channel();
  }
  ~Link() {
    amqp_connection_close(state_, AMQP_REPLY_SUCCESS);
    amqp_destroy_connection(state_);
  }
  Link(const Link&) = delete;
  Link& operator=(const Link&) = delete;

  amqp_connection_state_t state() const { return state_; }
  amqp_channel_t channel() const { return channel_; }

  // The queue's depth, or nothing when it does not exist (yet).
  std::optional<std::uint32_t> depth(const std::string& queue) {
    auto* ok = amqp_queue_declare(state_, channel_, bytes_of(queue), 1, 0, 0, 0, amqp_empty_table);
    const amqp_rpc_reply_t reply = amqp_get_rpc_reply(state_);
    if (ok != nullptr && reply.reply_type == AMQP_RESPONSE_NORMAL) return ok->message_count;
    if (reply.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION &&
        reply.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
      amqp_channel_close_ok_t close_ok{};
      amqp_send_method(state_, channel_, AMQP_CHANNEL_CLOSE_OK_METHOD, &close_ok);
      ++channel_;
      open_channel();
      return std::nullopt;
    }
    check_reply(reply, "queue.declare " + queue);
    return std::nullopt;
  }

 private:
  void open_channel() {
    amqp_channel_open(state_, channel_);
    check_reply(amqp_get_rpc_reply(state_), "channel.open");
  }

  amqp_connection_state_t state_ = nullptr;
  amqp_channel_t channel_ = 1;
};

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("cannot read " + path);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

long long number(const std::string& text, const char* what) {
  try {
    std::size_t used = 0;
    const long long n = std::stoll(text, &used);
    if (used == text.size() && n >= 0) return n;
  } catch (const std::exception&) {
  }
  fail(std::string(what) + ": not a number: " + text);
}

bool process_alive(long pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(stat, line)) return false;
  const auto paren = line.rfind(')');
  // A zombie has ended; only its parent has not collected it yet.
  return paren != std::string::npos && paren + 2 < line.size() && line[paren + 2] != 'Z';
}

int publish(Link& link, std::vector<std::string> a) {
  long long id_at = -1;
  if (!a.empty() && a.back().rfind("id-at=", 0) == 0) {
    id_at = number(a.back().substr(6), "id-at");
    a.pop_back();
  }
  if (a.size() != 6 && a.size() != 7) {
    fail("publish EXCHANGE ROUTING_KEY COUNT WINDOW BODY_FILE PRIORITY [RATE] [id-at=N]");
  }
  const std::string& exchange = a[0];
  const std::string& routing_key = a[1];
  const long long count = number(a[2], "COUNT");
  const long long window = std::max(1LL, number(a[3], "WINDOW"));
  std::string body = read_file(a[4]);
  const auto priority = static_cast<std::uint8_t>(number(a[5], "PRIORITY"));
  const double rate = a.size() == 7 ? static_cast<double>(number(a[6], "RATE")) : 0.0;
  if (id_at >= 0 && static_cast<std::size_t>(id_at) + 12 > body.size()) fail("id-at past the body");
  amqp_connection_state_t state = link.state();
  const amqp_channel_t channel = link.channel();

  amqp_confirm_select(state, channel);
  check_reply(amqp_get_rpc_reply(state), "confirm.select");

  amqp_basic_properties_t props{};
  props._flags = AMQP_BASIC_DELIVERY_MODE_FLAG | AMQP_BASIC_CONTENT_TYPE_FLAG |
                 AMQP_BASIC_PRIORITY_FLAG | AMQP_BASIC_MESSAGE_ID_FLAG;
  props.delivery_mode = 2;
  props.content_type = amqp_cstring_bytes("application/json");
  props.priority = priority;

  long long sent = 0, confirmed = 0, nacked = 0, returned = 0;
  // Reads one frame and counts what it confirms; basic.return content frames are skipped.
  auto read_confirm = [&] {
    amqp_frame_t frame;
    const int status = amqp_simple_wait_frame(state, &frame);
    if (status != AMQP_STATUS_OK)
      fail(std::string("wait for confirms: ") + amqp_error_string2(status));
    if (frame.frame_type != AMQP_FRAME_METHOD) return;
    const amqp_method_number_t id = frame.payload.method.id;
    if (id == AMQP_BASIC_ACK_METHOD || id == AMQP_BASIC_NACK_METHOD) {
      std::uint64_t tag = 0;
      bool multiple = false;
      if (id == AMQP_BASIC_ACK_METHOD) {
        const auto* ack = static_cast<amqp_basic_ack_t*>(frame.payload.method.decoded);
        tag = ack->delivery_tag;
        multiple = ack->multiple != 0;
      } else {
        const auto* nack = static_cast<amqp_basic_nack_t*>(frame.payload.method.decoded);
        tag = nack->delivery_tag;
        multiple = nack->multiple != 0;
        nacked += multiple ? static_cast<long long>(tag) - confirmed : 1;
      }
      confirmed = multiple ? static_cast<long long>(tag) : confirmed + 1;
    } else if (id == AMQP_BASIC_RETURN_METHOD) {
      ++returned;
    } else if (id == AMQP_CHANNEL_CLOSE_METHOD) {
      fail("the broker closed the channel (does the exchange exist?)");
    }
  };

  const double start = seconds_now();
  std::string id;
  while (sent < count) {
    while (sent - confirmed >= window) read_confirm();
    if (rate > 0) {
      const double due = start + static_cast<double>(sent) / rate;
      const double wait = due - seconds_now();
      if (wait > 0) std::this_thread::sleep_for(std::chrono::duration<double>(wait));
    }
    id = "bench-" + std::to_string(sent);
    props.message_id = bytes_of(id);
    if (id_at >= 0) {
      char digits[13];
      std::snprintf(digits, sizeof digits, "%012lld", sent % 1000000000000LL);
      body.replace(static_cast<std::size_t>(id_at), 12, digits, 12);
    }
    const int status =
        amqp_basic_publish(state, channel, amqp_cstring_bytes(exchange.c_str()),
                           amqp_cstring_bytes(routing_key.c_str()), 1, 0, &props, bytes_of(body));
    if (status != AMQP_STATUS_OK) fail(std::string("publish: ") + amqp_error_string2(status));
    ++sent;
  }
  while (confirmed < count) read_confirm();
  const double end = seconds_now();
  std::printf(
      "{\"start\": %.6f, \"end\": %.6f, \"seconds\": %.6f, \"messages\": %lld, \"bytes\": %zu, "
      "\"nacked\": %lld, \"returned\": %lld}\n",
      start, end, end - start, count, body.size(), nacked, returned);
  return nacked == 0 && returned == 0 ? 0 : 1;
}

// One connection of the republisher: consumes, copies, acknowledges after the copy's confirm.
void republish_one(const std::string& url, const std::vector<std::string>& a, long long count,
                   std::atomic<long long>& done) {
  const std::string& queue = a[0];
  const std::string& exchange = a[1];
  const std::string& routing_key = a[2];
  const long long window = std::max(1LL, number(a[4], "WINDOW"));
  const auto prefetch = static_cast<std::uint16_t>(number(a[5], "PREFETCH"));
  Link link(url);
  amqp_connection_state_t state = link.state();
  const amqp_channel_t channel = link.channel();
  amqp_confirm_select(state, channel);
  check_reply(amqp_get_rpc_reply(state), "confirm.select");
  amqp_basic_qos(state, channel, 0, prefetch, 0);
  check_reply(amqp_get_rpc_reply(state), "basic.qos");
  amqp_basic_consume(state, channel, bytes_of(queue), amqp_empty_bytes, 0, 0, 0, amqp_empty_table);
  check_reply(amqp_get_rpc_reply(state), "basic.consume " + queue);

  struct Copy {
    std::uint64_t delivery_tag;
    std::uint64_t publish_tag;
    bool confirmed;
  };
  std::deque<amqp_message_t> waiting;  // received, not yet published (the window is full)
  std::deque<std::uint64_t> waiting_tags;
  std::deque<Copy> unconfirmed;
  std::uint64_t next_publish_tag = 1;

  auto publish_waiting = [&] {
    while (!waiting.empty() && static_cast<long long>(unconfirmed.size()) < window) {
      amqp_message_t& m = waiting.front();
      const int status =
          amqp_basic_publish(state, channel, amqp_cstring_bytes(exchange.c_str()),
                             amqp_cstring_bytes(routing_key.c_str()), 0, 0, &m.properties, m.body);
      if (status != AMQP_STATUS_OK) fail(std::string("publish: ") + amqp_error_string2(status));
      unconfirmed.push_back({waiting_tags.front(), next_publish_tag++, false});
      amqp_destroy_message(&m);
      waiting.pop_front();
      waiting_tags.pop_front();
    }
  };
  while (done.load() < count) {
    publish_waiting();
    amqp_maybe_release_buffers(state);
    amqp_frame_t frame;
    timeval wait{0, 100000};
    const int status = amqp_simple_wait_frame_noblock(state, &frame, &wait);
    if (status == AMQP_STATUS_TIMEOUT) continue;
    if (status != AMQP_STATUS_OK) fail(std::string("republish: ") + amqp_error_string2(status));
    if (frame.frame_type != AMQP_FRAME_METHOD) continue;
    const amqp_method_number_t id = frame.payload.method.id;
    if (id == AMQP_BASIC_DELIVER_METHOD) {
      const auto* deliver = static_cast<amqp_basic_deliver_t*>(frame.payload.method.decoded);
      const std::uint64_t tag = deliver->delivery_tag;
      amqp_message_t message;
      check_reply(amqp_read_message(state, channel, &message, 0), "read message");
      waiting.push_back(message);
      waiting_tags.push_back(tag);
    } else if (id == AMQP_BASIC_ACK_METHOD || id == AMQP_BASIC_NACK_METHOD) {
      if (id == AMQP_BASIC_NACK_METHOD) fail("the broker refused a copy (nack)");
      const auto* ack = static_cast<amqp_basic_ack_t*>(frame.payload.method.decoded);
      for (auto& c : unconfirmed) {
        if (c.publish_tag > ack->delivery_tag) break;
        if (ack->multiple != 0 || c.publish_tag == ack->delivery_tag) c.confirmed = true;
      }
      std::uint64_t ack_up_to = 0;
      long long confirmed = 0;
      while (!unconfirmed.empty() && unconfirmed.front().confirmed) {
        ack_up_to = unconfirmed.front().delivery_tag;
        unconfirmed.pop_front();
        ++confirmed;
      }
      if (ack_up_to != 0) {
        amqp_basic_ack(state, channel, ack_up_to, 1);
        done += confirmed;
      }
    } else if (id == AMQP_CHANNEL_CLOSE_METHOD) {
      fail("the broker closed the channel (does the queue exist?)");
    }
  }
  for (auto& m : waiting) amqp_destroy_message(&m);
}

int republish(const std::string& url, const std::vector<std::string>& a) {
  if (a.size() != 7) {
    fail("republish QUEUE EXCHANGE ROUTING_KEY COUNT WINDOW PREFETCH CONNECTIONS");
  }
  const long long count = number(a[3], "COUNT");
  const long long connections = std::max(1LL, number(a[6], "CONNECTIONS"));
  std::atomic<long long> done{0};
  const double start = seconds_now();
  std::vector<std::thread> threads;
  for (long long i = 0; i < connections; ++i) {
    threads.emplace_back(republish_one, std::cref(url), std::cref(a), count, std::ref(done));
  }
  for (auto& t : threads) t.join();
  const double end = seconds_now();
  std::printf("{\"start\": %.6f, \"end\": %.6f, \"seconds\": %.6f, \"messages\": %lld}\n", start,
              end, end - start, done.load());
  return 0;
}

int watch(Link& link, const std::vector<std::string>& a) {
  if (a.size() < 3 || a.size() > 4) fail("watch QUEUE COUNT TIMEOUT_S [PID]");
  const std::string& queue = a[0];
  const long long target = number(a[1], "COUNT");
  const double timeout = static_cast<double>(number(a[2], "TIMEOUT_S"));
  const long pid = a.size() == 4 ? static_cast<long>(number(a[3], "PID")) : 0;
  const double start = seconds_now();
  double first = 0;
  long long last = 0;
  for (;;) {
    const double now = seconds_now();
    last = link.depth(queue).value_or(0);
    if (last > 0 && first == 0) first = now;
    if (last >= target) {
      std::printf("{\"first\": %.6f, \"done\": %.6f, \"count\": %lld}\n", first, now, last);
      return 0;
    }
    if (now - start > timeout) {
      std::fprintf(stderr, "bench_amqp: %s holds %lld of %lld messages after %.0f s\n",
                   queue.c_str(), last, target, timeout);
      return 3;
    }
    if (pid != 0 && !process_alive(pid)) {
      std::fprintf(stderr, "bench_amqp: process %ld ended; %s holds %lld of %lld messages\n", pid,
                   queue.c_str(), last, target);
      return 4;
    }
    // Fine enough for runs of seconds; each probe is one round trip to the broker.
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

int sample(Link& link, const std::vector<std::string>& a) {
  if (a.size() != 2) fail("sample QUEUE BODY_FILE");
  amqp_connection_state_t state = link.state();
  amqp_basic_get(state, link.channel(), bytes_of(a[0]), 1);
  const amqp_rpc_reply_t reply = amqp_get_rpc_reply(state);
  check_reply(reply, "basic.get " + a[0]);
  if (reply.reply.id != AMQP_BASIC_GET_OK_METHOD) fail("queue " + a[0] + " is empty");
  amqp_message_t message;
  check_reply(amqp_read_message(state, link.channel(), &message, 0), "read message");
  const std::string body(static_cast<const char*>(message.body.bytes), message.body.len);
  const amqp_basic_properties_t& p = message.properties;
  nlohmann::json sampled = {{"bytes", body.size()},
                            {"priority", (p._flags & AMQP_BASIC_PRIORITY_FLAG) ? p.priority : 0},
                            {"message_id", ""},
                            {"headers", nlohmann::json::object()}};
  // The relays publish messages with the same properties: their size and what the broker
  // stores of them are the same as the service's.
  if (p._flags & AMQP_BASIC_MESSAGE_ID_FLAG) sampled["message_id"] = text_of(p.message_id);
  if (p._flags & AMQP_BASIC_HEADERS_FLAG) {
    for (int i = 0; i < p.headers.num_entries; ++i) {
      const amqp_table_entry_t& entry = p.headers.entries[i];
      if (entry.value.kind == AMQP_FIELD_KIND_UTF8 || entry.value.kind == AMQP_FIELD_KIND_BYTES) {
        sampled["headers"][text_of(entry.key)] = text_of(entry.value.value.bytes);
      }
    }
  }
  amqp_destroy_message(&message);
  std::ofstream out(a[1], std::ios::binary | std::ios::trunc);
  out << body;
  if (!out.flush()) fail("cannot write " + a[1]);
  std::printf("%s\n", sampled.dump().c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  signal(SIGPIPE, SIG_IGN);
  if (argc < 4) {
    std::cerr << "usage: bench_amqp URL publish|watch|count|purge|delete|sample ARGS...\n";
    return 2;
  }
  const std::string command = argv[2];
  const std::vector<std::string> args(argv + 3, argv + argc);
  if (command == "republish") return republish(argv[1], args);
  Link link(argv[1]);
  if (command == "publish") return publish(link, args);
  if (command == "watch") return watch(link, args);
  if (command == "sample") return sample(link, args);
  if (command == "exists") {
    std::printf("%s\n", link.depth(args.at(0)) ? "yes" : "no");
    return 0;
  }
  if (command == "count") {
    std::printf("%u\n", link.depth(args.at(0)).value_or(0));
    return 0;
  }
  if (command == "purge") {
    auto* ok = amqp_queue_purge(link.state(), link.channel(), bytes_of(args.at(0)));
    check_reply(amqp_get_rpc_reply(link.state()), "queue.purge " + args[0]);
    std::printf("%u\n", ok->message_count);
    return 0;
  }
  if (command == "delete") {
    amqp_queue_delete(link.state(), link.channel(), bytes_of(args.at(0)), 0, 0);
    check_reply(amqp_get_rpc_reply(link.state()), "queue.delete " + args[0]);
    return 0;
  }
  std::cerr << "bench_amqp: unknown command " << command << "\n";
  return 2;
}
