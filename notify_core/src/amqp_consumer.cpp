// Consumer: basic.consume with manual acks and a prefetch window.
#include <amqp.h>

#include <optional>
#include <string>

#include "amqp_internal.hpp"
#include "notify/amqp.hpp"

namespace notify::amqp {
namespace {

// Delivery tags restart at 1 on every channel. The connection generation in the high bits
// keeps an ack meant for an earlier connection from acking a different message on this one.
constexpr int kGenerationShift = 48;
constexpr std::uint64_t kTagMask = (std::uint64_t{1} << kGenerationShift) - 1;

std::optional<std::string> header_value(const amqp_field_value_t& v) {
  switch (v.kind) {
    case AMQP_FIELD_KIND_UTF8:
    case AMQP_FIELD_KIND_BYTES:
      return string_of(v.value.bytes);
    case AMQP_FIELD_KIND_BOOLEAN:
      return v.value.boolean ? "true" : "false";
    case AMQP_FIELD_KIND_I8:
      return std::to_string(v.value.i8);
    case AMQP_FIELD_KIND_U8:
      return std::to_string(v.value.u8);
    case AMQP_FIELD_KIND_I16:
      return std::to_string(v.value.i16);
    case AMQP_FIELD_KIND_U16:
      return std::to_string(v.value.u16);
    case AMQP_FIELD_KIND_I32:
      return std::to_string(v.value.i32);
    case AMQP_FIELD_KIND_U32:
      return std::to_string(v.value.u32);
    case AMQP_FIELD_KIND_I64:
    case AMQP_FIELD_KIND_TIMESTAMP:
      return std::to_string(v.value.i64);
    case AMQP_FIELD_KIND_U64:
      return std::to_string(v.value.u64);
    default:
      return std::nullopt;  // tables, arrays, floats: not used by our postings
  }
}

Delivery to_delivery(const amqp_envelope_t& envelope, std::uint16_t generation) {
  Delivery d;
  d.delivery_tag = (std::uint64_t{generation} << kGenerationShift) | envelope.delivery_tag;
  d.routing_key = string_of(envelope.routing_key);
  d.body = string_of(envelope.message.body);
  d.redelivered = envelope.redelivered != 0;
  const amqp_basic_properties_t& p = envelope.message.properties;
  if (p._flags & AMQP_BASIC_MESSAGE_ID_FLAG) d.message_id = string_of(p.message_id);
  if (p._flags & AMQP_BASIC_PRIORITY_FLAG) d.priority = p.priority;
  if (p._flags & AMQP_BASIC_HEADERS_FLAG) {
    for (int i = 0; i < p.headers.num_entries; ++i) {
      const amqp_table_entry_t& entry = p.headers.entries[i];
      if (auto value = header_value(entry.value)) d.headers[string_of(entry.key)] = *value;
    }
  }
  return d;
}

}  // namespace

struct Consumer::Impl {
  explicit Impl(Options o) : options(std::move(o)) {}

  template <typename F>
  auto guarded(F&& f) {
    try {
      return f();
    } catch (const Error&) {
      connection.reset();
      throw;
    }
  }

  Connection::Impl& conn() {
    if (!connection) throw Error("AMQP consumer of '" + options.queue + "': not connected");
    return connection->impl();
  }

  // The broker tag of a delivery of this connection, or nothing for an earlier connection's.
  std::optional<std::uint64_t> broker_tag(std::uint64_t delivery_tag) const {
    if (!connection || (delivery_tag >> kGenerationShift) != generation) return std::nullopt;
    return delivery_tag & kTagMask;
  }

  Options options;
  std::unique_ptr<Connection> connection;
  std::uint16_t generation = 0;
};

Consumer::Consumer(Options options) : impl_(std::make_unique<Impl>(std::move(options))) {}

Consumer::~Consumer() = default;

bool Consumer::connected() const { return impl_->connection != nullptr; }

void Consumer::connect() {
  if (impl_->connection) return;
  impl_->connection = std::make_unique<Connection>(impl_->options.connection);
  ++impl_->generation;
  impl_->guarded([&] {
    if (impl_->options.declare) declare_topology(*impl_->connection, *impl_->options.declare);
    Connection::Impl& c = impl_->conn();
    const std::string& queue = impl_->options.queue;
    amqp_basic_qos(c.state, kChannel, 0, impl_->options.prefetch, 0);
    c.check(amqp_get_rpc_reply(c.state), "set prefetch");
    amqp_basic_consume(c.state, kChannel, bytes_of(queue), amqp_empty_bytes, /*no_local=*/0,
                       /*no_ack=*/0, /*exclusive=*/0, amqp_empty_table);
    c.check(amqp_get_rpc_reply(c.state), "consume '" + queue + "'");
  });
}

void Consumer::disconnect() { impl_->connection.reset(); }

std::optional<Delivery> Consumer::next(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  Connection::Impl& c = impl_->conn();
  return impl_->guarded([&]() -> std::optional<Delivery> {
    const std::string what = "consume '" + impl_->options.queue + "'";
    for (;;) {
      amqp_maybe_release_buffers(c.state);
      timeval wait = timeval_of(std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now()));
      amqp_envelope_t envelope;
      const amqp_rpc_reply_t reply = amqp_consume_message(c.state, &envelope, &wait, 0);
      if (reply.reply_type == AMQP_RESPONSE_NORMAL) {
        Delivery delivery = to_delivery(envelope, impl_->generation);
        amqp_destroy_envelope(&envelope);
        return delivery;
      }
      if (reply.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION &&
          reply.library_error == AMQP_STATUS_TIMEOUT) {
        return std::nullopt;
      }
      if (reply.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION &&
          reply.library_error == AMQP_STATUS_UNEXPECTED_STATE) {
        // Some other frame came first (channel.close, basic.cancel...): it is buffered.
        amqp_frame_t frame;
        c.check(amqp_simple_wait_frame(c.state, &frame), what);
        if (frame.frame_type == AMQP_FRAME_METHOD) c.handle_unsolicited(frame.payload.method, what);
        if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
        continue;
      }
      c.check(reply, what);
    }
  });
}

void Consumer::ack(std::uint64_t delivery_tag, bool multiple) {
  // A delivery of a closed connection went back to the queue when that connection closed.
  const std::optional<std::uint64_t> tag = impl_->broker_tag(delivery_tag);
  if (!tag) return;
  Connection::Impl& c = impl_->conn();
  impl_->guarded(
      [&] { c.check(amqp_basic_ack(c.state, kChannel, *tag, multiple ? 1 : 0), "ack"); });
}

void Consumer::reject(std::uint64_t delivery_tag, bool requeue) {
  const std::optional<std::uint64_t> tag = impl_->broker_tag(delivery_tag);
  if (!tag) return;
  Connection::Impl& c = impl_->conn();
  impl_->guarded(
      [&] { c.check(amqp_basic_reject(c.state, kChannel, *tag, requeue ? 1 : 0), "reject"); });
}

}  // namespace notify::amqp
