#pragma once
// Private to the AMQP edge (amqp_*.cpp): the rabbitmq-c connection holder and the one place
// that turns library results into notify::amqp::Error, and the broker's error replies (channel
// or connection closed with a 4xx/5xx code) into notify::amqp::Refused.

#include <amqp.h>
#include <amqp_tcp_socket.h>

#include <chrono>
#include <string>
#include <string_view>

#include "notify/amqp.hpp"

namespace notify::amqp {

inline constexpr amqp_channel_t kChannel = 1;

inline amqp_bytes_t bytes_of(std::string_view s) {
  return amqp_bytes_t{s.size(), const_cast<char*>(s.data())};
}

inline std::string string_of(amqp_bytes_t b) {
  return b.len == 0 ? std::string() : std::string(static_cast<const char*>(b.bytes), b.len);
}

inline timeval timeval_of(std::chrono::milliseconds d) {
  if (d.count() < 0) d = std::chrono::milliseconds(0);
  timeval tv{};
  tv.tv_sec = static_cast<decltype(tv.tv_sec)>(d.count() / 1000);
  tv.tv_usec = static_cast<decltype(tv.tv_usec)>((d.count() % 1000) * 1000);
  return tv;
}

struct Connection::Impl {
  explicit Impl(const ConnectionOptions& options);
  ~Impl();
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;

  // Throw Error (and mark the connection broken) unless the call succeeded; Refused when the
  // broker closed the channel or connection with an error code. `what` names the operation,
  // e.g. "declare queue 'x'".
  void check(amqp_rpc_reply_t reply, std::string_view what);
  void check(int status, std::string_view what);
  // The broker sent a method we did not ask for: answers channel.close / connection.close with
  // close-ok and throws (Refused for reply codes 400 and up, else Error); basic.cancel throws
  // Error; anything else is ignored (returns).
  void handle_unsolicited(const amqp_method_t& method, std::string_view what);
  void release();  // closes politely when still possible, frees the state

  amqp_connection_state_t state = nullptr;
  std::string peer;              // "host:port/vhost", for messages
  bool socket_ok = true;         // false after a library (socket) error: skip the polite close
  bool connection_open = false;  // logged in, no connection.close seen
};

}  // namespace notify::amqp
