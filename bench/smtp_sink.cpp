// bench_smtp_sink: an SMTP server that accepts every mail at once and only counts it, so that a
// benchmark of a sender measures the sender (maildev parses and stores each mail and tops out
// near 1,000 mails/s).
//
//   bench_smtp_sink [--port N] [--sample PATH] [--mark PREFIX]
//
// Prints "listening on 127.0.0.1:PORT" once it listens (--port 0, the default, picks a free
// port). One thread per connection; replies go out per read, so a pipelining client (RFC 2920)
// is served as fast as a waiting one. --sample writes the first mail it accepts to PATH
// (dot-unstuffed, as the sender wrote it) and its envelope to PATH.envelope (the MAIL FROM
// address, then the RCPT TO addresses, one a line), for a client that sends the same mails.
//
// Control commands on any connection, for the benchmark driver:
//   XSTAT   -> "250 <mails> <first> <last>": mails accepted since start or XRESET, and the
//              CLOCK_MONOTONIC seconds (Python's time.monotonic()) of the first and last
//   XRESET  -> "250 reset"
//   XMARK T -> "250 <time>": with --mark PREFIX, every accepted mail is searched for PREFIX and
//              the letters and digits after it (quoted-printable soft breaks skipped); XMARK
//              answers when the mail carrying PREFIX+T was accepted (CLOCK_MONOTONIC seconds),
//              or "550 not seen". For latency runs of single mails: the search costs time.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace {

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

struct Counters {
  std::atomic<long long> mails{0};
  std::atomic<std::int64_t> first_ns{0};
  std::atomic<std::int64_t> last_ns{0};
  std::mutex reset_mu;  // XRESET against a concurrent first accept

  void accepted() {
    const std::int64_t t = now_ns();
    if (mails.fetch_add(1, std::memory_order_relaxed) == 0) {
      std::int64_t none = 0;
      first_ns.compare_exchange_strong(none, t);
    }
    // Several threads: keep the latest.
    std::int64_t seen = last_ns.load(std::memory_order_relaxed);
    while (t > seen && !last_ns.compare_exchange_weak(seen, t)) {
    }
  }

  void reset() {
    std::lock_guard lock(reset_mu);
    mails.store(0);
    first_ns.store(0);
    last_ns.store(0);
  }
};

struct Sample {
  std::string path;
  std::atomic<bool> taken{false};

  void offer(const std::string& from, const std::vector<std::string>& to, std::string_view data) {
    if (path.empty() || taken.exchange(true)) return;
    // Undo the transparency dots: a line starting with ".." was "." in the mail.
    std::string mail;
    mail.reserve(data.size());
    bool line_start = true;
    for (std::size_t i = 0; i < data.size(); ++i) {
      if (line_start && data[i] == '.' && i + 1 < data.size() && data[i + 1] == '.') continue;
      mail += data[i];
      line_start = data[i] == '\n';
    }
    std::ofstream(path, std::ios::binary | std::ios::trunc) << mail;
    std::ofstream envelope(path + ".envelope", std::ios::trunc);
    envelope << from << "\n";
    for (const auto& rcpt : to) envelope << rcpt << "\n";
  }
};

// When each marked mail was accepted, by its mark (--mark).
struct Marks {
  std::string prefix;
  std::mutex mu;
  std::map<std::string, std::int64_t, std::less<>> accepted;

  void offer(std::string_view data, std::int64_t t) {
    if (prefix.empty()) return;
    for (auto at = data.find(prefix); at != std::string_view::npos;
         at = data.find(prefix, at + 1)) {
      std::string token;
      for (std::size_t i = at + prefix.size(); i < data.size();) {
        if (data.compare(i, 3, "=\r\n") == 0) {
          i += 3;
        } else if (std::isalnum(static_cast<unsigned char>(data[i]))) {
          token += data[i++];
        } else {
          break;
        }
      }
      if (token.empty()) continue;
      std::lock_guard lock(mu);
      accepted.emplace(token, t);
      return;
    }
  }

  std::int64_t when(std::string_view token) {
    std::lock_guard lock(mu);
    const auto it = accepted.find(token);
    return it == accepted.end() ? 0 : it->second;
  }
};

Counters g_counters;
Sample g_sample;
Marks g_marks;

bool starts_with_nocase(std::string_view line, std::string_view word) {
  if (line.size() < word.size()) return false;
  for (std::size_t i = 0; i < word.size(); ++i) {
    if (std::toupper(static_cast<unsigned char>(line[i])) != word[i]) return false;
  }
  return true;
}

// The address between < and >, or what follows the colon.
std::string address_of(std::string_view line) {
  const auto open = line.find('<');
  const auto close = line.find('>', open == std::string_view::npos ? 0 : open);
  if (open != std::string_view::npos && close != std::string_view::npos) {
    return std::string(line.substr(open + 1, close - open - 1));
  }
  const auto colon = line.find(':');
  return colon == std::string_view::npos ? std::string() : std::string(line.substr(colon + 1));
}

bool write_all(int fd, const std::string& out) {
  std::size_t done = 0;
  while (done < out.size()) {
    const ssize_t n = ::send(fd, out.data() + done, out.size() - done, MSG_NOSIGNAL);
    if (n <= 0) return false;
    done += static_cast<std::size_t>(n);
  }
  return true;
}

void serve(int fd) {
  const int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  std::string in;
  std::string out = "220 bench-sink ESMTP\r\n";
  std::size_t pos = 0;        // start of what is not handled yet
  std::size_t scan_from = 0;  // in DATA: where to look for the end marker next
  bool in_data = false, quit = false;
  std::string from;
  std::vector<std::string> to;
  std::vector<char> buf(1 << 16);
  while (!quit) {
    if (!out.empty()) {
      if (!write_all(fd, out)) break;
      out.clear();
    }
    const ssize_t n = ::recv(fd, buf.data(), buf.size(), 0);
    if (n <= 0) break;
    in.append(buf.data(), static_cast<std::size_t>(n));
    while (!quit) {
      if (in_data) {
        std::size_t body_end = 0, next = 0;
        if (scan_from == pos && in.compare(pos, 3, ".\r\n") == 0) {
          body_end = pos;  // an empty mail
          next = pos + 3;
        } else {
          const auto marker = in.find("\r\n.\r\n", scan_from);
          if (marker == std::string::npos) {
            if (in.size() - pos >= 4) scan_from = in.size() - 4;
            break;
          }
          body_end = marker + 2;
          next = marker + 5;
        }
        g_sample.offer(from, to, std::string_view(in).substr(pos, body_end - pos));
        g_counters.accepted();
        if (!g_marks.prefix.empty())
          g_marks.offer(std::string_view(in).substr(pos, body_end - pos), now_ns());
        out += "250 2.0.0 accepted\r\n";
        pos = next;
        in_data = false;
        continue;
      }
      const auto eol = in.find('\n', pos);
      if (eol == std::string::npos) break;
      std::string_view line(in.data() + pos, eol - pos);
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      pos = eol + 1;
      if (starts_with_nocase(line, "EHLO")) {
        out += "250-bench-sink\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SIZE 104857600\r\n";
      } else if (starts_with_nocase(line, "HELO")) {
        out += "250 bench-sink\r\n";
      } else if (starts_with_nocase(line, "MAIL")) {
        from = address_of(line);
        to.clear();
        out += "250 2.1.0 ok\r\n";
      } else if (starts_with_nocase(line, "RCPT")) {
        to.push_back(address_of(line));
        out += "250 2.1.5 ok\r\n";
      } else if (starts_with_nocase(line, "DATA")) {
        out += "354 end with <CRLF>.<CRLF>\r\n";
        in_data = true;
        scan_from = pos;
      } else if (starts_with_nocase(line, "QUIT")) {
        out += "221 2.0.0 bye\r\n";
        quit = true;
      } else if (starts_with_nocase(line, "XSTAT")) {
        char stat[128];
        std::snprintf(stat, sizeof stat, "250 %lld %.6f %.6f\r\n", g_counters.mails.load(),
                      static_cast<double>(g_counters.first_ns.load()) / 1e9,
                      static_cast<double>(g_counters.last_ns.load()) / 1e9);
        out += stat;
      } else if (starts_with_nocase(line, "XMARK ")) {
        const std::int64_t t = g_marks.when(line.substr(6));
        char reply[64];
        std::snprintf(reply, sizeof reply, "250 %.6f\r\n", static_cast<double>(t) / 1e9);
        out += t == 0 ? std::string("550 not seen\r\n") : std::string(reply);
      } else if (starts_with_nocase(line, "XRESET")) {
        g_counters.reset();
        out += "250 reset\r\n";
      } else {
        out += "250 ok\r\n";  // RSET, NOOP and anything else: agreeable, not in the way
      }
    }
    // Drop what was handled; keep a partial line or mail.
    if (pos > 0) {
      in.erase(0, pos);
      scan_from = scan_from >= pos ? scan_from - pos : 0;
      pos = 0;
    }
  }
  if (!out.empty()) write_all(fd, out);
  ::close(fd);
}

}  // namespace

int main(int argc, char** argv) {
  signal(SIGPIPE, SIG_IGN);
  int port = 0;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (i + 1 >= argc) {
      std::cerr << "usage: bench_smtp_sink [--port N] [--sample PATH]\n";
      return 2;
    }
    if (flag == "--port") {
      port = std::atoi(argv[++i]);
    } else if (flag == "--mark" && i + 1 < argc) {
      g_marks.prefix = argv[++i];
    } else if (flag == "--sample") {
      g_sample.path = argv[++i];
    } else {
      std::cerr << "bench_smtp_sink: unknown flag " << flag << "\n";
      return 2;
    }
  }

  const int listener = ::socket(AF_INET, SOCK_STREAM, 0);
  const int one = 1;
  setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  if (::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::listen(listener, 128) != 0) {
    std::perror("bench_smtp_sink: cannot listen");
    return 1;
  }
  socklen_t len = sizeof addr;
  getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len);
  std::cout << "listening on 127.0.0.1:" << ntohs(addr.sin_port) << std::endl;

  for (;;) {
    const int fd = ::accept(listener, nullptr, nullptr);
    if (fd < 0) {
      if (errno == EINTR) continue;
      std::perror("bench_smtp_sink: accept");
      return 1;
    }
    std::thread(serve, fd).detach();
  }
}
