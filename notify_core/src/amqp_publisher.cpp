// ConfirmedPublisher: publisher confirms read by hand (rabbitmq-c 0.11 has no confirm wait),
// pipelined up to a window of unconfirmed messages.
#include <amqp.h>

#include <algorithm>
#include <deque>
#include <vector>

#include "amqp_internal.hpp"
#include "notify/amqp.hpp"

namespace notify::amqp {
namespace {

// While the window is full, publish() waits for confirms in slices this long (heartbeats are
// served meanwhile; a dead broker surfaces as a heartbeat timeout).
constexpr std::chrono::milliseconds kWindowWaitSlice{1000};

struct Outgoing {
  Message message;
  ConfirmedPublisher::OnConfirmed on_confirmed;
  std::uint64_t tag = 0;   // delivery tag on the current channel; 0 while not sent
  bool returned = false;   // the broker returned it (no queue bound): report kReturned on ack
  bool confirmed = false;  // acked (or given up) out of order, waiting to be popped
  int nacks = 0;           // nacks so far; at max_nacks it is reported as kNacked
};

}  // namespace

struct ConfirmedPublisher::Impl {
  explicit Impl(Options o) : options(std::move(o)) {}

  // Runs f; on Error the connection is dropped and every unconfirmed message becomes unsent.
  template <typename F>
  auto guarded(F&& f) {
    try {
      return f();
    } catch (const Error&) {
      lose_connection();
      throw;
    }
  }

  Connection::Impl& conn() {
    if (!connection) throw Error("AMQP publisher for '" + options.exchange + "': not connected");
    return connection->impl();
  }

  void connect() {
    if (connection) return;
    connection = std::make_unique<Connection>(options.connection);
    guarded([&] {
      if (options.declare) declare_topology(*connection, *options.declare);
      Connection::Impl& c = conn();
      amqp_confirm_select(c.state, kChannel);
      c.check(amqp_get_rpc_reply(c.state), "enable publisher confirms");
      send_unsent(/*block=*/true);
    });
  }

  void lose_connection() {
    connection.reset();
    std::erase_if(queue, [](const Outgoing& o) { return o.confirmed; });
    for (Outgoing& o : queue) {
      o.tag = 0;
      o.returned = false;
    }
    sent = 0;
    in_flight = 0;
    next_tag = 1;
  }

  // Sends the unsent tail in order. With block, waits for confirms whenever the window is
  // full; without, stops there.
  void send_unsent(bool block) {
    while (sent < queue.size()) {
      if (in_flight >= options.window) {
        if (!block) return;
        read_frames(kWindowWaitSlice);
        continue;
      }
      send(queue[sent]);
    }
  }

  void send(Outgoing& o) {
    Connection::Impl& c = conn();
    const Message& m = o.message;
    headers.clear();
    for (const auto& [key, value] : m.headers) {
      amqp_table_entry_t& entry = headers.emplace_back();
      entry.key = bytes_of(key);
      entry.value.kind = AMQP_FIELD_KIND_UTF8;
      entry.value.value.bytes = bytes_of(value);
    }
    amqp_basic_properties_t properties{};
    properties._flags = AMQP_BASIC_DELIVERY_MODE_FLAG | AMQP_BASIC_PRIORITY_FLAG;
    properties.delivery_mode = 2;  // persistent
    properties.priority = m.priority;
    if (!m.content_type.empty()) {
      properties._flags |= AMQP_BASIC_CONTENT_TYPE_FLAG;
      properties.content_type = bytes_of(m.content_type);
    }
    if (!m.message_id.empty()) {
      properties._flags |= AMQP_BASIC_MESSAGE_ID_FLAG;
      properties.message_id = bytes_of(m.message_id);
    }
    if (!headers.empty()) {
      properties._flags |= AMQP_BASIC_HEADERS_FLAG;
      properties.headers = amqp_table_t{static_cast<int>(headers.size()), headers.data()};
    }
    c.check(
        amqp_basic_publish(c.state, kChannel, bytes_of(options.exchange), bytes_of(m.routing_key),
                           /*mandatory=*/1, /*immediate=*/0, &properties, bytes_of(m.body)),
        "publish to '" + options.exchange + "'");
    o.tag = next_tag++;
    ++sent;
    ++in_flight;
  }

  // Handles every frame that arrives within `wait` of the first one being awaited, then what
  // is already buffered. Returns whether any frame came.
  bool read_frames(std::chrono::milliseconds wait) {
    Connection::Impl& c = conn();
    timeval timeout = timeval_of(wait);
    bool any = false;
    for (;;) {
      amqp_maybe_release_buffers(c.state);
      amqp_frame_t frame;
      const int status = amqp_simple_wait_frame_noblock(c.state, &frame, &timeout);
      if (status == AMQP_STATUS_TIMEOUT) return any;
      c.check(status, "wait for publisher confirms");
      any = true;
      if (frame.frame_type == AMQP_FRAME_METHOD) handle_method(frame.payload.method);
      timeout = timeval{};  // the rest: only what is already there
    }
  }

  void handle_method(const amqp_method_t& method) {
    switch (method.id) {
      case AMQP_BASIC_ACK_METHOD: {
        const auto* ack = static_cast<const amqp_basic_ack_t*>(method.decoded);
        on_ack(ack->delivery_tag, ack->multiple != 0);
        break;
      }
      case AMQP_BASIC_NACK_METHOD: {
        const auto* nack = static_cast<const amqp_basic_nack_t*>(method.decoded);
        on_nack(nack->delivery_tag, nack->multiple != 0);
        break;
      }
      case AMQP_BASIC_RETURN_METHOD: {
        const auto* ret = static_cast<const amqp_basic_return_t*>(method.decoded);
        on_return(string_of(ret->routing_key));
        break;
      }
      default:
        conn().handle_unsolicited(method, "publish to '" + options.exchange + "'");
    }
  }

  // The sent prefix is ordered by tag: [first, last) of the entries a confirm covers.
  std::pair<std::size_t, std::size_t> covered(std::uint64_t tag, bool multiple) const {
    const auto begin = queue.begin();
    const auto end = begin + static_cast<std::ptrdiff_t>(sent);
    const auto upper = std::upper_bound(
        begin, end, tag, [](std::uint64_t t, const Outgoing& o) { return t < o.tag; });
    const auto last = static_cast<std::size_t>(upper - begin);
    if (multiple) return {0, last};
    if (last > 0 && queue[last - 1].tag == tag) return {last - 1, last};
    return {0, 0};
  }

  void on_ack(std::uint64_t tag, bool multiple) {
    const auto [first, last] = covered(tag, multiple);
    for (std::size_t i = first; i < last; ++i) {
      Outgoing& o = queue[i];
      if (o.confirmed) continue;
      o.confirmed = true;
      --in_flight;
      --unconfirmed;
      if (o.on_confirmed) o.on_confirmed(o.returned ? Result::kReturned : Result::kAcked);
    }
    while (!queue.empty() && queue.front().confirmed) {
      queue.pop_front();
      --sent;
    }
  }

  // A nacked message goes out again: it moves behind the sent prefix, in its original order.
  // One nacked max_nacks times is given up and reported: a broker that keeps refusing it (a
  // full queue with overflow=reject-publish, an internal error) must not be asked forever.
  void on_nack(std::uint64_t tag, bool multiple) {
    const auto [first, last] = covered(tag, multiple);
    if (first == last) return;
    for (std::size_t i = first; i < last; ++i) {
      Outgoing& o = queue[i];
      if (o.confirmed || ++o.nacks < options.max_nacks) continue;
      o.confirmed = true;
      --in_flight;
      --unconfirmed;
      if (o.on_confirmed) o.on_confirmed(Result::kNacked);
    }
    const auto begin = queue.begin() + static_cast<std::ptrdiff_t>(first);
    const auto end = queue.begin() + static_cast<std::ptrdiff_t>(sent);
    const std::uint64_t last_tag = queue[last - 1].tag;
    const auto moved = std::stable_partition(
        begin, end, [&](const Outgoing& o) { return o.confirmed || o.tag > last_tag; });
    for (auto it = moved; it != end; ++it) {
      it->tag = 0;
      it->returned = false;
      --in_flight;
    }
    sent = static_cast<std::size_t>(moved - queue.begin());
    while (!queue.empty() && sent > 0 && queue.front().confirmed) {
      queue.pop_front();
      --sent;
    }
    send_unsent(/*block=*/false);
  }

  // basic.return carries no delivery tag: it precedes the ack of its message, so it belongs to
  // the earliest unconfirmed message with the same routing key and message id.
  void on_return(const std::string& routing_key) {
    Connection::Impl& c = conn();
    amqp_message_t returned{};
    c.check(amqp_read_message(c.state, kChannel, &returned, 0), "read a returned message");
    const bool has_id = (returned.properties._flags & AMQP_BASIC_MESSAGE_ID_FLAG) != 0;
    const std::string message_id = has_id ? string_of(returned.properties.message_id) : "";
    amqp_destroy_message(&returned);
    for (std::size_t i = 0; i < sent; ++i) {
      Outgoing& o = queue[i];
      if (!o.confirmed && !o.returned && o.message.routing_key == routing_key &&
          o.message.message_id == message_id) {
        o.returned = true;
        return;
      }
    }
  }

  Options options;
  std::unique_ptr<Connection> connection;
  std::deque<Outgoing> queue;  // [0, sent): sent on this channel, by tag; then the unsent
  std::size_t sent = 0;
  std::size_t in_flight = 0;    // sent and not confirmed
  std::size_t unconfirmed = 0;  // everything not confirmed, sent or not
  std::uint64_t next_tag = 1;
  std::vector<amqp_table_entry_t> headers;  // reused for every message
};

ConfirmedPublisher::ConfirmedPublisher(Options options)
    : impl_(std::make_unique<Impl>(std::move(options))) {
  if (impl_->options.window == 0) impl_->options.window = 1;
  if (impl_->options.max_nacks < 1) impl_->options.max_nacks = 1;
}

ConfirmedPublisher::~ConfirmedPublisher() = default;

bool ConfirmedPublisher::connected() const { return impl_->connection != nullptr; }

void ConfirmedPublisher::connect() { impl_->connect(); }

void ConfirmedPublisher::publish(Message message, OnConfirmed on_confirmed) {
  impl_->queue.push_back(Outgoing{std::move(message), std::move(on_confirmed)});
  ++impl_->unconfirmed;
  impl_->conn();  // kept for connect() even when not connected now
  impl_->guarded([&] { impl_->send_unsent(/*block=*/true); });
}

void ConfirmedPublisher::pump(std::chrono::milliseconds wait) {
  impl_->conn();
  impl_->guarded([&] {
    impl_->read_frames(wait);
    impl_->send_unsent(/*block=*/false);
  });
}

bool ConfirmedPublisher::flush(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  if (impl_->unconfirmed == 0) return true;
  impl_->conn();
  return impl_->guarded([&] {
    while (impl_->unconfirmed > 0) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return false;
      impl_->read_frames(left);
      impl_->send_unsent(/*block=*/false);
    }
    return true;
  });
}

std::size_t ConfirmedPublisher::outstanding() const { return impl_->unconfirmed; }

}  // namespace notify::amqp
