#pragma once
// The AMQP edge: the only place that includes <amqp.h>. One connection per object, one
// channel, not thread-safe (rabbitmq-c is not): give each thread its own.

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace notify::amqp {

// The connection or channel failed (socket closed, broker restarted, connection forced
// closed). Transient from the caller's point of view: reconnect and carry on.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The broker refused an operation and closed the channel or connection with an error reply
// code (4xx channel errors, 5xx connection errors), e.g. 403 ACCESS_REFUSED for a bad login,
// 404 NOT_FOUND for a missing queue, 406 PRECONDITION_FAILED for a declaration that does not
// match. Still an Error (callers reconnect and retry: an operator may fix the permissions),
// but a permanent one is worth an error in the log and on /readyz: waiting will not cure it.
class Refused : public Error {
 public:
  Refused(const std::string& what, std::uint16_t reply_code, std::string reply_text,
          std::uint16_t class_id, std::uint16_t method_id);

  std::uint16_t reply_code() const { return reply_code_; }
  const std::string& reply_text() const { return reply_text_; }  // "ACCESS_REFUSED - ..."
  std::uint16_t class_id() const { return class_id_; }           // of the method refused; 0 if none
  std::uint16_t method_id() const { return method_id_; }
  // No retry cures it without a change on the broker's side (credentials, permissions,
  // topology): 402, 403, 404, 406, 530 and the protocol errors 501-505, 540. Not permanent:
  // 405 RESOURCE_LOCKED, 506 RESOURCE_ERROR, 541 INTERNAL_ERROR.
  bool is_permanent() const;
  // "403 ACCESS_REFUSED - Login was refused ...", bounded: for logs and /readyz.
  std::string summary() const;

 private:
  std::uint16_t reply_code_;
  std::string reply_text_;
  std::uint16_t class_id_;
  std::uint16_t method_id_;
};

struct Url {
  std::string host = "127.0.0.1";
  int port = 5672;
  std::string user = "guest";
  std::string password = "guest";
  std::string vhost = "/";
  // amqp://user:pass@host:port/vhost (vhost percent-encoded, "%2f" is "/"). Throws
  // std::invalid_argument naming what is wrong.
  static Url parse(std::string_view url);
};

using Headers = std::map<std::string, std::string>;

struct Message {
  std::string routing_key;
  std::string body;
  std::string message_id;
  std::uint8_t priority = 0;
  Headers headers;  // string-valued application headers
  std::string content_type = "application/json";
};

// Names of the exchanges and queues both services agree on. Declared idempotently by both.
struct Topology {
  std::string exchange = "notifications";         // direct, durable; routing key = channel
  std::vector<std::string> channels = {"email"};  // queue "<exchange>.<channel>" per channel
  std::int32_t max_priority = 9;                  // x-max-priority of the work queues
  std::string queue_for(std::string_view channel) const {
    return exchange + "." + std::string(channel);
  }
  // Rejected (requeue=false) deliveries of a work queue go to "<exchange>.dead" bound with the
  // channel name, into the queue "<exchange>.<channel>.dead".
  std::string dead_letter_exchange() const { return exchange + ".dead"; }
  std::string dead_letter_queue_for(std::string_view channel) const {
    return queue_for(channel) + ".dead";
  }
  // Durable deferral without a broker plugin: per channel and tier a queue
  // "<exchange>.<channel>.delay.<tier>" whose one queue-level TTL is the tier, dead-lettering
  // back through the exchange into the work queue. Declared only when tiers are given.
  std::vector<std::chrono::milliseconds> delay_tiers;
  std::string delay_queue_for(std::string_view channel, std::chrono::milliseconds tier) const;
};

struct ConnectionOptions {
  Url url;
  std::chrono::milliseconds connect_timeout{5000};
  std::chrono::seconds heartbeat{30};
  std::string connection_name;  // shown in the management UI
};

class Connection;

// Declares exchanges, queues and bindings of the topology (durable). Throws Error (Refused
// when a queue exists with other arguments, or the user may not configure it).
void declare_topology(Connection& connection, const Topology& topology);

// Owns one rabbitmq-c connection with channel 1 open. Throws Error if it cannot connect,
// Refused when the broker refuses the login (403) or the vhost (530, 402).
class Connection {
 public:
  explicit Connection(const ConnectionOptions& options);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  struct Impl;
  Impl& impl() { return *impl_; }

 private:
  std::unique_ptr<Impl> impl_;
};

// Publishes persistent messages to an exchange with publisher confirms, pipelined: up to
// `window` messages may await their confirm. A message is forgotten once the broker acked it,
// or once it was nacked max_nacks times (reported as kNacked: the caller decides). A nacked
// message, and every unconfirmed message after a connection loss, is published again (after
// connect()). on_confirmed runs inside publish()/pump()/flush() and must not call back into
// the publisher.
class ConfirmedPublisher {
 public:
  enum class Result {
    kAcked,
    kReturned,  // acked, but no queue was bound for its routing key
    kNacked,    // the broker nacked it max_nacks times (queue full, disk alarm...): not stored
  };
  using OnConfirmed = std::function<void(Result)>;

  struct Options {
    ConnectionOptions connection;
    std::string exchange;
    std::size_t window = 256;
    std::optional<Topology> declare;  // declared on every connect when set
    int max_nacks = 5;  // nacks of one message before it is reported as kNacked (at least 1)
  };

  explicit ConfirmedPublisher(Options options);  // does not connect yet
  ~ConfirmedPublisher();

  bool connected() const;
  // Connects (throws Error), declares the topology if asked, then republishes in order every
  // message still unconfirmed.
  void connect();
  // Sends one message; while the window is full, waits for confirms first. Requires
  // connected(). Throws Error on connection loss: the message is kept and goes out again after
  // connect().
  void publish(Message message, OnConfirmed on_confirmed);
  // Waits up to `wait` for the first confirm (0: does not wait), then reads whatever else is
  // already there; also serves heartbeats. Throws Error.
  void pump(std::chrono::milliseconds wait);
  // Waits until nothing is outstanding or the timeout passes; true when all are confirmed.
  bool flush(std::chrono::milliseconds timeout);
  std::size_t outstanding() const;  // published or waiting to be, not yet confirmed

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

struct Delivery {
  std::uint64_t delivery_tag = 0;
  std::string routing_key;
  std::string body;
  std::string message_id;
  std::uint8_t priority = 0;
  bool redelivered = false;
  Headers headers;  // string, integer and boolean headers, as strings
};

// Consumes one queue with manual acks and a prefetch window.
class Consumer {
 public:
  struct Options {
    ConnectionOptions connection;
    std::string queue;
    std::uint16_t prefetch = 32;
    std::optional<Topology> declare;  // declared on every connect when set
  };

  explicit Consumer(Options options);  // does not connect yet
  ~Consumer();

  bool connected() const;
  void connect();     // throws Error
  void disconnect();  // unacked deliveries return to the queue
  // The next delivery, or nothing when none arrives within timeout. A timeout of 0 never
  // waits: only a delivery already received (or readable from the socket at once). Throws Error.
  std::optional<Delivery> next(std::chrono::milliseconds timeout);
  // Throw Error. A delivery of an earlier, closed connection is ignored: the broker already
  // returned it to the queue (its tag must not ack another message of the new channel).
  // With `multiple`, every earlier delivery of this connection not yet acked or rejected is
  // acknowledged too (basic.ack multiple=true): the caller vouches that all of them are done.
  void ack(std::uint64_t delivery_tag, bool multiple = false);
  void reject(std::uint64_t delivery_tag, bool requeue);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace notify::amqp
