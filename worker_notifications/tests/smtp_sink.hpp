#pragma once
// A tiny in-process SMTP server for tests: listens on 127.0.0.1 (a free port), speaks enough
// ESMTP for libcurl (greeting, EHLO/HELO, optional STARTTLS refusal and AUTH PLAIN, MAIL, RCPT,
// DATA, RSET, NOOP, QUIT), keeps what it received, counts connections, and answers as a test
// scripts it ("451 to the next two MAIL FROM", "550 to RCPT", hang, or drop the connection).
// Header-only so both the unit and the integration test binaries can use it.

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace notify::testing {

// Where in the SMTP dialogue a scripted answer applies.
enum class SmtpStage {
  kGreeting,  // on connect
  kEhlo,      // EHLO (a non-2xx answer makes clients fall back to HELO)
  kHelo,
  kStartTls,   // only when the sink advertises STARTTLS
  kAuth,       // the answer to the credentials
  kMail,       // MAIL FROM
  kRcpt,       // RCPT TO
  kData,       // the DATA command (normally 354)
  kEndOfData,  // the final "." (normally 250: the message is accepted and stored)
  kRset,
  kNoop,
};

struct SinkMessage {
  int connection = 0;     // 1-based number of the connection it arrived on
  std::string helo;       // the EHLO/HELO argument
  std::string mail_from;  // the address inside MAIL FROM:<...>
  std::vector<std::string> rcpt_to;
  std::string data;  // the message as sent: CRLF line ends, dot-unstuffed, without the "."

  // The first header of that name (case-insensitive), unfolded; nullopt when absent.
  std::optional<std::string> header(std::string_view name) const {
    const std::size_t end = data.find("\r\n\r\n");
    const std::string head = data.substr(0, end == std::string::npos ? data.size() : end + 2);
    std::vector<std::string> fields;
    std::size_t pos = 0;
    while (pos < head.size()) {
      std::size_t eol = head.find("\r\n", pos);
      if (eol == std::string::npos) eol = head.size();
      const std::string line = head.substr(pos, eol - pos);
      if (!line.empty() && (line[0] == ' ' || line[0] == '\t') && !fields.empty()) {
        fields.back() += line;  // unfolding removes the CRLF only
      } else {
        fields.push_back(line);
      }
      pos = eol + 2;
    }
    for (const auto& f : fields) {
      const auto colon = f.find(':');
      if (colon == std::string::npos || colon != name.size()) continue;
      bool same = true;
      for (std::size_t i = 0; i < colon; ++i) {
        same = same && std::tolower(static_cast<unsigned char>(f[i])) ==
                           std::tolower(static_cast<unsigned char>(name[i]));
      }
      if (!same) continue;
      std::size_t v = colon + 1;
      while (v < f.size() && (f[v] == ' ' || f[v] == '\t')) ++v;
      return f.substr(v);
    }
    return std::nullopt;
  }

  // Everything after the blank line that ends the header.
  std::string body() const {
    const std::size_t end = data.find("\r\n\r\n");
    return end == std::string::npos ? std::string() : data.substr(end + 4);
  }
};

// Test-side decoding of what the client sent (AUTH PLAIN, encoded headers).
inline std::string base64_decode(std::string_view in) {
  auto value = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  std::string out;
  int bits = 0, acc = 0;
  for (char c : in) {
    const int v = value(c);
    if (v < 0) continue;
    acc = (acc << 6) | v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xff);
    }
  }
  return out;
}

class SmtpSink {
 public:
  struct Options {
    bool advertise_starttls = false;  // advertised, then refused with 454 (no TLS here)
    std::optional<std::pair<std::string, std::string>> credentials;  // AUTH PLAIN required
  };

  SmtpSink() : SmtpSink(Options{}) {}
  explicit SmtpSink(Options options) : options_(std::move(options)) {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (listen_fd_ < 0) throw std::runtime_error("smtp sink: socket failed");
    const int one = 1;
    ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        ::listen(listen_fd_, 16) != 0 ||
        ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0 ||
        ::pipe2(wake_, O_CLOEXEC) != 0) {
      ::close(listen_fd_);
      throw std::runtime_error("smtp sink: cannot listen on 127.0.0.1");
    }
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { run(); });
  }

  ~SmtpSink() {
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
    }
    const char c = 'x';
    (void)!::write(wake_[1], &c, 1);
    thread_.join();
    for (auto& [fd, session] : sessions_) ::close(fd);
    ::close(listen_fd_);
    ::close(wake_[0]);
    ::close(wake_[1]);
  }

  SmtpSink(const SmtpSink&) = delete;
  SmtpSink& operator=(const SmtpSink&) = delete;

  int port() const { return port_; }
  std::string host() const { return "127.0.0.1"; }

  // The next `times` commands at `stage` are answered with `reply` (one line, e.g.
  // "451 4.3.0 Try again later"; a 2xx/3xx reply keeps the normal side effects).
  void script(SmtpStage stage, const std::string& reply, int times = 1) {
    std::lock_guard lock(mu_);
    for (int i = 0; i < times; ++i) scripts_[stage].push_back({Action::kReply, reply});
  }
  // The next `times` commands at `stage` get no answer at all (the client times out).
  void hang(SmtpStage stage, int times = 1) {
    std::lock_guard lock(mu_);
    for (int i = 0; i < times; ++i) scripts_[stage].push_back({Action::kHang, {}});
  }
  // The next `times` commands at `stage` make the sink close the connection without answering.
  void close_on(SmtpStage stage, int times = 1) {
    std::lock_guard lock(mu_);
    for (int i = 0; i < times; ++i) scripts_[stage].push_back({Action::kClose, {}});
  }

  std::vector<SinkMessage> messages() const {
    std::lock_guard lock(mu_);
    return messages_;
  }
  // Every command line received, in order (AUTH credentials included, so tests can check them).
  std::vector<std::string> commands() const {
    std::lock_guard lock(mu_);
    return commands_;
  }
  int connections() const {
    std::lock_guard lock(mu_);
    return connections_;
  }
  int open_connections() const {
    std::lock_guard lock(mu_);
    return open_;
  }
  bool wait_for_messages(std::size_t n, std::chrono::milliseconds timeout) const {
    std::unique_lock lock(mu_);
    return changed_.wait_for(lock, timeout, [&] { return messages_.size() >= n; });
  }
  // Closes every open connection from the server side (as an idle timeout would).
  void drop_connections() {
    {
      std::lock_guard lock(mu_);
      drop_all_ = true;
    }
    const char c = 'd';
    (void)!::write(wake_[1], &c, 1);
    std::unique_lock lock(mu_);
    changed_.wait_for(lock, std::chrono::seconds(2), [&] { return !drop_all_; });
  }

 private:
  enum class Action { kReply, kHang, kClose };
  struct Scripted {
    Action action;
    std::string reply;
  };
  struct Session {
    int number = 0;
    std::string in;
    bool in_data = false;
    bool auth_pending = false;  // AUTH PLAIN sent without the credentials: they come next
    bool authenticated = false;
    std::string helo;
    std::optional<std::string> mail_from;
    std::vector<std::string> rcpt_to;
    std::string data;
    bool close_after_write = false;
    bool closed = false;
  };

  static std::string upper(std::string_view s) {
    std::string out(s);
    for (auto& c : out) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    return out;
  }

  // The address between < and > (parameters such as SIZE= are ignored).
  static std::string angle_address(std::string_view arg) {
    const auto open = arg.find('<');
    const auto close = arg.find('>', open == std::string_view::npos ? 0 : open);
    if (open == std::string_view::npos || close == std::string_view::npos) return std::string(arg);
    return std::string(arg.substr(open + 1, close - open - 1));
  }

  // Called with mu_ held. Returns the scripted action for the stage, if any.
  std::optional<Scripted> take_script(SmtpStage stage) {
    auto it = scripts_.find(stage);
    if (it == scripts_.end() || it->second.empty()) return std::nullopt;
    Scripted s = it->second.front();
    it->second.pop_front();
    return s;
  }

  void send(int fd, const std::string& text) {
    std::size_t sent = 0;
    while (sent < text.size()) {
      const ssize_t n = ::send(fd, text.data() + sent, text.size() - sent, MSG_NOSIGNAL);
      if (n <= 0) return;
      sent += static_cast<std::size_t>(n);
    }
  }

  // Answers with the scripted reply when there is one, else `normal`. Returns false when the
  // scripted reply is not a success (the command then has no effect).
  bool answer(int fd, Session& s, SmtpStage stage, const std::string& normal) {
    auto scripted = take_script(stage);
    if (!scripted) {
      send(fd, normal + "\r\n");
      return true;
    }
    switch (scripted->action) {
      case Action::kHang:
        return false;
      case Action::kClose:
        s.closed = true;
        return false;
      case Action::kReply:
        send(fd, scripted->reply + "\r\n");
        return !scripted->reply.empty() && (scripted->reply[0] == '2' || scripted->reply[0] == '3');
    }
    return false;
  }

  void reset_transaction(Session& s) {
    s.mail_from.reset();
    s.rcpt_to.clear();
    s.data.clear();
  }

  // Called with mu_ held, for one complete line without its CRLF.
  void handle_line(int fd, Session& s, const std::string& line) {
    if (s.in_data) {
      if (line == ".") {
        s.in_data = false;
        if (answer(fd, s, SmtpStage::kEndOfData,
                   "250 2.0.0 Ok: queued as " + std::to_string(messages_.size() + 1))) {
          messages_.push_back({s.number, s.helo, *s.mail_from, s.rcpt_to, s.data});
          changed_.notify_all();
        }
        reset_transaction(s);
        return;
      }
      s.data += (line.size() > 1 && line[0] == '.') ? line.substr(1) : line;
      s.data += "\r\n";
      return;
    }
    commands_.push_back(line);
    if (s.auth_pending) {
      s.auth_pending = false;
      check_credentials(fd, s, line);
      return;
    }
    const std::string verb = upper(line.substr(0, line.find(' ')));
    const std::string arg = line.size() > verb.size() + 1 ? line.substr(verb.size() + 1) : "";
    if (verb == "EHLO") {
      std::string reply = "250-sink.test greets " + arg + "\r\n250-8BITMIME\r\n";
      if (options_.advertise_starttls) reply += "250-STARTTLS\r\n";
      if (options_.credentials) reply += "250-AUTH PLAIN\r\n";
      reply += "250 SIZE 10485760";
      if (answer(fd, s, SmtpStage::kEhlo, reply)) s.helo = arg;
    } else if (verb == "HELO") {
      if (answer(fd, s, SmtpStage::kHelo, "250 sink.test")) s.helo = arg;
    } else if (verb == "STARTTLS" && options_.advertise_starttls) {
      answer(fd, s, SmtpStage::kStartTls, "454 4.7.0 TLS not available");
    } else if (verb == "AUTH" && options_.credentials) {
      const std::string mech = upper(arg.substr(0, arg.find(' ')));
      if (mech != "PLAIN") {
        send(fd, "504 5.5.4 Unrecognized authentication type\r\n");
      } else if (arg.find(' ') == std::string::npos) {
        s.auth_pending = true;
        send(fd, "334 \r\n");
      } else {
        check_credentials(fd, s, arg.substr(arg.find(' ') + 1));
      }
    } else if (verb == "MAIL") {
      if (options_.credentials && !s.authenticated) {
        send(fd, "530 5.7.0 Authentication required\r\n");
      } else if (answer(fd, s, SmtpStage::kMail, "250 2.1.0 Ok")) {
        reset_transaction(s);
        s.mail_from = angle_address(arg);
      }
    } else if (verb == "RCPT") {
      if (!s.mail_from) {
        send(fd, "503 5.5.1 Error: need MAIL command\r\n");
      } else if (answer(fd, s, SmtpStage::kRcpt, "250 2.1.5 Ok")) {
        s.rcpt_to.push_back(angle_address(arg));
      }
    } else if (verb == "DATA") {
      if (!s.mail_from || s.rcpt_to.empty()) {
        send(fd, "503 5.5.1 Error: need RCPT command\r\n");
      } else if (answer(fd, s, SmtpStage::kData, "354 End data with <CR><LF>.<CR><LF>")) {
        s.in_data = true;
      }
    } else if (verb == "RSET") {
      if (answer(fd, s, SmtpStage::kRset, "250 2.0.0 Ok")) reset_transaction(s);
    } else if (verb == "NOOP") {
      answer(fd, s, SmtpStage::kNoop, "250 2.0.0 Ok");
    } else if (verb == "QUIT") {
      send(fd, "221 2.0.0 Bye\r\n");
      s.closed = true;
    } else {
      send(fd, "502 5.5.2 Error: command not recognized\r\n");
    }
  }

  void check_credentials(int fd, Session& s, const std::string& b64) {
    const std::string expected =
        std::string(1, '\0') + options_.credentials->first + '\0' + options_.credentials->second;
    const bool ok = base64_decode(b64) == expected;
    if (answer(fd, s, SmtpStage::kAuth,
               ok ? "235 2.7.0 Authentication successful"
                  : "535 5.7.8 Error: authentication failed")) {
      s.authenticated = ok;
    }
  }

  void run() {
    while (true) {
      std::vector<pollfd> fds{{wake_[0], POLLIN, 0}, {listen_fd_, POLLIN, 0}};
      {
        std::lock_guard lock(mu_);
        if (stopping_) return;
        for (auto& [fd, session] : sessions_) fds.push_back({fd, POLLIN, 0});
      }
      if (::poll(fds.data(), fds.size(), 1000) < 0) continue;
      std::lock_guard lock(mu_);
      if (stopping_) return;
      if (fds[0].revents & POLLIN) {
        char buf[16];
        (void)!::read(wake_[0], buf, sizeof buf);
        if (drop_all_) {
          for (auto& [fd, session] : sessions_) session.closed = true;
          drop_all_ = false;
          changed_.notify_all();
        }
      }
      if (fds[1].revents & POLLIN) {
        const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
        if (fd >= 0) {
          Session& s = sessions_[fd];
          s.number = ++connections_;
          ++open_;
          if (answer(fd, s, SmtpStage::kGreeting, "220 sink.test ESMTP ready")) {
            // greeted
          }
        }
      }
      for (std::size_t i = 2; i < fds.size(); ++i) {
        if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
        auto it = sessions_.find(fds[i].fd);
        if (it == sessions_.end()) continue;
        char buf[4096];
        const ssize_t n = ::recv(fds[i].fd, buf, sizeof buf, 0);
        if (n <= 0) {
          it->second.closed = true;
          continue;
        }
        Session& s = it->second;
        s.in.append(buf, static_cast<std::size_t>(n));
        std::size_t eol;
        while (!s.closed && (eol = s.in.find("\r\n")) != std::string::npos) {
          const std::string line = s.in.substr(0, eol);
          s.in.erase(0, eol + 2);
          handle_line(fds[i].fd, s, line);
        }
      }
      for (auto it = sessions_.begin(); it != sessions_.end();) {
        if (it->second.closed) {
          ::close(it->first);
          --open_;
          it = sessions_.erase(it);
        } else {
          ++it;
        }
      }
    }
  }

  Options options_;
  int listen_fd_ = -1;
  int wake_[2] = {-1, -1};
  int port_ = 0;
  std::thread thread_;

  mutable std::mutex mu_;
  mutable std::condition_variable changed_;
  bool stopping_ = false;
  bool drop_all_ = false;
  std::map<SmtpStage, std::deque<Scripted>> scripts_;
  std::map<int, Session> sessions_;
  std::vector<SinkMessage> messages_;
  std::vector<std::string> commands_;
  int connections_ = 0;
  int open_ = 0;
};

}  // namespace notify::testing
