// The rabbitmq-c connection holder, error translation and topology declaration.
#include <amqp.h>
#include <amqp_tcp_socket.h>

#include <array>
#include <string>

#include "amqp_internal.hpp"
#include "notify/amqp.hpp"
#include "notify/config.hpp"

namespace notify::amqp {
namespace {

// Bounds every synchronous RPC (declare, qos, close...) so a hung broker cannot hang us.
constexpr std::chrono::seconds kRpcTimeout{15};
constexpr int kFrameMax = 131072;

// Reply texts come from the broker: long enough for RabbitMQ's, bounded for logs and /readyz.
constexpr std::size_t kMaxReplyText = 300;

std::string bounded(std::string text) {
  if (text.size() > kMaxReplyText) text = text.substr(0, kMaxReplyText) + "...";
  return text;
}

}  // namespace

Connection::Impl::Impl(const ConnectionOptions& options) {
  const Url& url = options.url;
  peer = url.host + ":" + std::to_string(url.port) + (url.vhost.starts_with('/') ? "" : "/") +
         url.vhost;
  state = amqp_new_connection();
  if (state == nullptr) throw Error("AMQP " + peer + ": cannot allocate a connection");
  try {
    amqp_socket_t* socket = amqp_tcp_socket_new(state);
    if (socket == nullptr) throw Error("AMQP " + peer + ": cannot create a TCP socket");
    timeval connect_timeout = timeval_of(options.connect_timeout);
    check(amqp_socket_open_noblock(socket, url.host.c_str(), url.port, &connect_timeout),
          "connect");
    timeval rpc_timeout = timeval_of(kRpcTimeout);
    check(amqp_set_handshake_timeout(state, &connect_timeout), "set handshake timeout");
    check(amqp_set_rpc_timeout(state, &rpc_timeout), "set RPC timeout");

    // connection_name shows in the management UI; consumer_cancel_notify makes the broker tell
    // a consumer when its queue is deleted instead of going silent.
    amqp_table_entry_t capability{};
    capability.key = amqp_cstring_bytes("consumer_cancel_notify");
    capability.value.kind = AMQP_FIELD_KIND_BOOLEAN;
    capability.value.value.boolean = 1;
    std::array<amqp_table_entry_t, 2> properties{};
    properties[0].key = amqp_cstring_bytes("capabilities");
    properties[0].value.kind = AMQP_FIELD_KIND_TABLE;
    properties[0].value.value.table = amqp_table_t{1, &capability};
    properties[1].key = amqp_cstring_bytes("connection_name");
    properties[1].value.kind = AMQP_FIELD_KIND_UTF8;
    properties[1].value.value.bytes = bytes_of(options.connection_name);
    const amqp_table_t table{options.connection_name.empty() ? 1 : 2, properties.data()};

    check(amqp_login_with_properties(
              state, url.vhost.c_str(), 0, kFrameMax, static_cast<int>(options.heartbeat.count()),
              &table, AMQP_SASL_METHOD_PLAIN, url.user.c_str(), url.password.c_str()),
          "log in as '" + url.user + "'");
    connection_open = true;
    amqp_channel_open(state, kChannel);
    check(amqp_get_rpc_reply(state), "open channel");
  } catch (...) {
    release();  // the destructor does not run for a half-built object
    throw;
  }
}

Connection::Impl::~Impl() { release(); }

void Connection::Impl::release() {
  if (state == nullptr) return;
  // connection.close also closes the channel; deliveries not yet acked return to their queue.
  if (socket_ok && connection_open) amqp_connection_close(state, AMQP_REPLY_SUCCESS);
  amqp_destroy_connection(state);
  state = nullptr;
}

void Connection::Impl::check(int status, std::string_view what) {
  if (status == AMQP_STATUS_OK) return;
  socket_ok = false;
  connection_open = false;
  throw Error("AMQP " + peer + ": " + std::string(what) + ": " + amqp_error_string2(status));
}

void Connection::Impl::check(amqp_rpc_reply_t reply, std::string_view what) {
  switch (reply.reply_type) {
    case AMQP_RESPONSE_NORMAL:
      return;
    case AMQP_RESPONSE_LIBRARY_EXCEPTION:
      check(reply.library_error, what);
      return;
    case AMQP_RESPONSE_SERVER_EXCEPTION:
      handle_unsolicited(reply.reply, what);
      break;
    case AMQP_RESPONSE_NONE:
      break;
  }
  socket_ok = false;
  throw Error("AMQP " + peer + ": " + std::string(what) +
              ": no or an unexpected reply from the broker");
}

void Connection::Impl::handle_unsolicited(const amqp_method_t& method, std::string_view what) {
  std::uint16_t code = 0;
  std::string text;
  std::uint16_t class_id = 0;
  std::uint16_t method_id = 0;
  std::string closed;
  switch (method.id) {
    case AMQP_CONNECTION_CLOSE_METHOD: {
      const auto* close = static_cast<const amqp_connection_close_t*>(method.decoded);
      code = close->reply_code;
      text = bounded(string_of(close->reply_text));
      class_id = close->class_id;
      method_id = close->method_id;
      closed = "connection closed by the broker";
      amqp_connection_close_ok_t ok{};
      amqp_send_method(state, 0, AMQP_CONNECTION_CLOSE_OK_METHOD, &ok);
      connection_open = false;
      break;
    }
    case AMQP_CHANNEL_CLOSE_METHOD: {
      const auto* close = static_cast<const amqp_channel_close_t*>(method.decoded);
      code = close->reply_code;
      text = bounded(string_of(close->reply_text));
      class_id = close->class_id;
      method_id = close->method_id;
      closed = "channel closed by the broker";
      amqp_channel_close_ok_t ok{};
      amqp_send_method(state, kChannel, AMQP_CHANNEL_CLOSE_OK_METHOD, &ok);
      break;
    }
    case AMQP_BASIC_CANCEL_METHOD:
      throw Error("AMQP " + peer + ": " + std::string(what) +
                  ": the broker cancelled the consumer (queue deleted?)");
    default:
      return;
  }
  const std::string message = "AMQP " + peer + ": " + std::string(what) + ": " + closed + ": " +
                              std::to_string(code) + " " + text;
  // 3xx closes (320 CONNECTION_FORCED: a broker shutting down, an operator closing connections)
  // are no refusal: the next connection will do.
  if (code >= 400) throw Refused(message, code, text, class_id, method_id);
  throw Error(message);
}

Refused::Refused(const std::string& what, std::uint16_t reply_code, std::string reply_text,
                 std::uint16_t class_id, std::uint16_t method_id)
    : Error(what),
      reply_code_(reply_code),
      reply_text_(std::move(reply_text)),
      class_id_(class_id),
      method_id_(method_id) {}

bool Refused::is_permanent() const {
  switch (reply_code_) {
    case AMQP_RESOURCE_LOCKED:  // an exclusive queue in use by another connection, for now
    case AMQP_RESOURCE_ERROR:   // the broker is short of a resource
    case AMQP_INTERNAL_ERROR:
      return false;
    default:
      return reply_code_ >= 400;
  }
}

std::string Refused::summary() const {
  // RabbitMQ's texts start with the code's name: "ACCESS_REFUSED - Login was refused ...".
  return std::to_string(reply_code_) + " " + reply_text_;
}

Connection::Connection(const ConnectionOptions& options) : impl_(std::make_unique<Impl>(options)) {}

Connection::~Connection() = default;

namespace {

amqp_table_entry_t string_entry(const char* key, std::string_view value) {
  amqp_table_entry_t entry{};
  entry.key = amqp_cstring_bytes(key);
  entry.value.kind = AMQP_FIELD_KIND_UTF8;
  entry.value.value.bytes = bytes_of(value);
  return entry;
}

}  // namespace

void declare_topology(Connection& connection, const Topology& topology) {
  Connection::Impl& c = connection.impl();
  const auto declare_exchange = [&](const std::string& name) {
    amqp_exchange_declare(c.state, kChannel, bytes_of(name), amqp_cstring_bytes("direct"),
                          /*passive=*/0, /*durable=*/1, /*auto_delete=*/0, /*internal=*/0,
                          amqp_empty_table);
    c.check(amqp_get_rpc_reply(c.state), "declare exchange '" + name + "'");
  };
  const auto declare_queue = [&](const std::string& name, const amqp_table_t& arguments) {
    amqp_queue_declare(c.state, kChannel, bytes_of(name), /*passive=*/0, /*durable=*/1,
                       /*exclusive=*/0, /*auto_delete=*/0, arguments);
    c.check(amqp_get_rpc_reply(c.state), "declare queue '" + name + "'");
  };
  const auto bind = [&](const std::string& queue, const std::string& exchange,
                        std::string_view key) {
    amqp_queue_bind(c.state, kChannel, bytes_of(queue), bytes_of(exchange), bytes_of(key),
                    amqp_empty_table);
    c.check(amqp_get_rpc_reply(c.state), "bind queue '" + queue + "' to '" + exchange + "'");
  };

  const std::string dead_letter_exchange = topology.dead_letter_exchange();
  declare_exchange(topology.exchange);
  declare_exchange(dead_letter_exchange);
  for (const std::string& channel : topology.channels) {
    const std::string dead_letter_queue = topology.dead_letter_queue_for(channel);
    declare_queue(dead_letter_queue, amqp_empty_table);
    bind(dead_letter_queue, dead_letter_exchange, channel);

    // Signed integers only: RabbitMQ rejects unsigned field kinds for queue arguments.
    std::array<amqp_table_entry_t, 3> arguments{};
    arguments[0].key = amqp_cstring_bytes("x-max-priority");
    arguments[0].value.kind = AMQP_FIELD_KIND_I32;
    arguments[0].value.value.i32 = topology.max_priority;
    arguments[1] = string_entry("x-dead-letter-exchange", dead_letter_exchange);
    arguments[2] = string_entry("x-dead-letter-routing-key", channel);
    const std::string queue = topology.queue_for(channel);
    declare_queue(queue, amqp_table_t{static_cast<int>(arguments.size()), arguments.data()});
    bind(queue, topology.exchange, channel);

    for (const auto tier : topology.delay_tiers) {
      std::array<amqp_table_entry_t, 3> delay{};
      delay[0].key = amqp_cstring_bytes("x-message-ttl");
      delay[0].value.kind = AMQP_FIELD_KIND_I64;
      delay[0].value.value.i64 = tier.count();
      // Back to the work queue: the exchange with the channel as routing key. (The system this
      // replaces dead-lettered with a key no binding matched and lost every deferred message.)
      delay[1] = string_entry("x-dead-letter-exchange", topology.exchange);
      delay[2] = string_entry("x-dead-letter-routing-key", channel);
      declare_queue(topology.delay_queue_for(channel, tier),
                    amqp_table_t{static_cast<int>(delay.size()), delay.data()});
    }
  }
}

std::string Topology::delay_queue_for(std::string_view channel,
                                      std::chrono::milliseconds tier) const {
  return queue_for(channel) + ".delay." + format_duration(tier);
}

}  // namespace notify::amqp
