// bench_smtp_client: sends one mail many times over several SMTP connections.
//
//   bench_smtp_client --port N --connections C --count M --message FILE [--host H]
//                     [--envelope FILE] [--pipelined]
//
// Default mode, the ceiling of the worker: one thread and one libcurl easy handle per connection
// (the library the worker sends with), the connection kept from one mail to the next, the mail
// uploaded as it is (FILE, e.g. a mail the sink captured from the worker; the envelope from
// FILE.envelope: the sender, then the recipients, one a line).
// --pipelined: raw sockets writing batches of whole transactions without waiting for replies
// (more than RFC 2920 allows: DATA's content too), to show how fast the sink itself is.
// Prints {"sent": …, "failed": …, "seconds": …}.

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <iterator>
#include <string>
#include <thread>
#include <vector>

namespace {

struct Options {
  std::string host = "127.0.0.1";
  int port = 0;
  int connections = 1;
  long long count = 0;
  std::string message_path;
  std::string envelope_path;  // default: message_path + ".envelope"
  bool pipelined = false;
};

struct Mail {
  std::string data;  // CRLF line ends, not dot-stuffed
  std::string from;
  std::vector<std::string> to;
};

[[noreturn]] void usage(const std::string& problem) {
  std::cerr << "bench_smtp_client: " << problem << "\n"
            << "usage: bench_smtp_client --port N --connections C --count M --message FILE\n"
            << "                         [--host H] [--envelope FILE] [--pipelined]\n";
  std::exit(2);
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--pipelined") {
      o.pipelined = true;
      continue;
    }
    if (i + 1 >= argc) usage(flag + " needs a value");
    const std::string value = argv[++i];
    if (flag == "--host") {
      o.host = value;
    } else if (flag == "--port") {
      o.port = std::atoi(value.c_str());
    } else if (flag == "--connections") {
      o.connections = std::atoi(value.c_str());
    } else if (flag == "--count") {
      o.count = std::atoll(value.c_str());
    } else if (flag == "--message") {
      o.message_path = value;
    } else if (flag == "--envelope") {
      o.envelope_path = value;
    } else {
      usage("unknown flag " + flag);
    }
  }
  if (o.port <= 0 || o.connections <= 0 || o.count <= 0 || o.message_path.empty()) {
    usage("--port, --connections, --count and --message are required");
  }
  if (o.envelope_path.empty()) o.envelope_path = o.message_path + ".envelope";
  return o;
}

Mail load(const Options& o) {
  Mail mail;
  std::ifstream in(o.message_path, std::ios::binary);
  if (!in) usage("cannot read " + o.message_path);
  mail.data.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  std::ifstream envelope(o.envelope_path);
  if (!envelope || !std::getline(envelope, mail.from)) usage("cannot read " + o.envelope_path);
  for (std::string line; std::getline(envelope, line);) {
    if (!line.empty()) mail.to.push_back(line);
  }
  if (mail.to.empty()) usage(o.envelope_path + " names no recipient");
  return mail;
}

struct Upload {
  const std::string* data;
  std::size_t offset = 0;
};

size_t read_upload(char* buffer, size_t size, size_t nitems, void* userp) {
  auto* up = static_cast<Upload*>(userp);
  const std::size_t n = std::min(size * nitems, up->data->size() - up->offset);
  std::copy_n(up->data->data() + up->offset, n, buffer);
  up->offset += n;
  return n;
}

size_t discard(char*, size_t size, size_t nmemb, void*) { return size * nmemb; }

// One connection through libcurl, as the worker's SMTP sender uses it.
long long send_with_curl(const Options& o, const Mail& mail, long long count,
                         std::atomic<long long>& failed) {
  CURL* h = curl_easy_init();
  const std::string url = "smtp://" + o.host + ":" + std::to_string(o.port);
  const std::string from = "<" + mail.from + ">";
  curl_slist* rcpt = nullptr;
  for (const auto& to : mail.to) rcpt = curl_slist_append(rcpt, ("<" + to + ">").c_str());
  Upload upload{&mail.data};
  curl_easy_setopt(h, CURLOPT_URL, url.c_str());
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_MAIL_FROM, from.c_str());
  curl_easy_setopt(h, CURLOPT_MAIL_RCPT, rcpt);
  curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
  curl_easy_setopt(h, CURLOPT_READFUNCTION, read_upload);
  curl_easy_setopt(h, CURLOPT_READDATA, &upload);
  curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, static_cast<curl_off_t>(mail.data.size()));
  curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, discard);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, discard);
  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 30000L);
  long long sent = 0;
  for (long long i = 0; i < count; ++i) {
    upload.offset = 0;
    const CURLcode rc = curl_easy_perform(h);
    if (rc == CURLE_OK) {
      ++sent;
    } else if (failed.fetch_add(1) < 5) {
      std::fprintf(stderr, "bench_smtp_client: %s\n", curl_easy_strerror(rc));
    }
  }
  curl_slist_free_all(rcpt);
  curl_easy_cleanup(h);
  return sent;
}

// Replies counted by their final lines ("250 ", not "250-").
class ReplyReader {
 public:
  explicit ReplyReader(int fd) : fd_(fd) {}
  bool read_final_replies(long long n) {
    while (n > 0) {
      const auto eol = buffer_.find('\n', pos_);
      if (eol == std::string::npos) {
        buffer_.erase(0, pos_);
        pos_ = 0;
        char chunk[1 << 14];
        const ssize_t got = ::recv(fd_, chunk, sizeof chunk, 0);
        if (got <= 0) return false;
        buffer_.append(chunk, static_cast<std::size_t>(got));
        continue;
      }
      if (eol - pos_ >= 4 && buffer_[pos_ + 3] == ' ') --n;
      pos_ = eol + 1;
    }
    return true;
  }

 private:
  int fd_;
  std::string buffer_;
  std::size_t pos_ = 0;
};

std::string dot_stuffed(const std::string& data) {
  std::string out;
  bool line_start = true;
  for (char c : data) {
    if (line_start && c == '.') out += '.';
    out += c;
    line_start = c == '\n';
  }
  if (out.size() < 2 || out.compare(out.size() - 2, 2, "\r\n") != 0) out += "\r\n";
  return out;
}

long long send_pipelined(const Options& o, const Mail& mail, long long count,
                         std::atomic<long long>& failed) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(o.port));
  inet_pton(AF_INET, o.host.c_str(), &addr.sin_addr);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    failed += count;
    return 0;
  }
  const int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  ReplyReader replies(fd);
  std::string transaction = "MAIL FROM:<" + mail.from + ">\r\n";
  for (const auto& to : mail.to) transaction += "RCPT TO:<" + to + ">\r\n";
  transaction += "DATA\r\n" + dot_stuffed(mail.data) + ".\r\n";
  const long long replies_per_mail = 3 + static_cast<long long>(mail.to.size());
  const std::string hello = "EHLO bench\r\n";
  if (!replies.read_final_replies(1) || ::send(fd, hello.data(), hello.size(), MSG_NOSIGNAL) <= 0 ||
      !replies.read_final_replies(1)) {
    failed += count;
    ::close(fd);
    return 0;
  }
  constexpr long long kBatch = 64;
  long long sent = 0;
  std::string batch;
  while (sent < count) {
    const long long k = std::min(kBatch, count - sent);
    batch.clear();
    for (long long i = 0; i < k; ++i) batch += transaction;
    std::size_t done = 0;
    while (done < batch.size()) {
      const ssize_t n = ::send(fd, batch.data() + done, batch.size() - done, MSG_NOSIGNAL);
      if (n <= 0) break;
      done += static_cast<std::size_t>(n);
    }
    if (done < batch.size() || !replies.read_final_replies(k * replies_per_mail)) {
      failed += count - sent;
      break;
    }
    sent += k;
  }
  ::close(fd);
  return sent;
}

}  // namespace

int main(int argc, char** argv) {
  signal(SIGPIPE, SIG_IGN);
  const Options options = parse(argc, argv);
  const Mail mail = load(options);
  curl_global_init(CURL_GLOBAL_DEFAULT);

  std::atomic<long long> sent{0}, failed{0};
  std::vector<std::thread> threads;
  const auto start = std::chrono::steady_clock::now();
  for (int c = 0; c < options.connections; ++c) {
    // The first connections take the remainder.
    const long long share =
        options.count / options.connections + (c < options.count % options.connections ? 1 : 0);
    threads.emplace_back([&, share] {
      sent += options.pipelined ? send_pipelined(options, mail, share, failed)
                                : send_with_curl(options, mail, share, failed);
    });
  }
  for (auto& t : threads) t.join();
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  curl_global_cleanup();
  std::printf("{\"sent\": %lld, \"failed\": %lld, \"seconds\": %.6f, \"bytes\": %zu}\n",
              sent.load(), failed.load(), seconds, mail.data.size());
  return failed.load() == 0 ? 0 : 1;
}
