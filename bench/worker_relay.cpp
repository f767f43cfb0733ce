// bench_worker_relay: the ceiling of the worker (bench/run.py drives it). What the worker does
// with a posting, minus the worker's own work: consume it with rabbitmq-c, send a mail's bytes
// with libcurl, acknowledge it. No decoding, no policy, no MIME building, no ledger.
//
//   bench_worker_relay --rabbitmq-url URL --queue Q --count N --prefetch P --connections C
//                      --port SMTP_PORT --message FILE [--host H] [--envelope FILE]
//
// As the worker: C threads, each with its own AMQP connection (prefetch P, WORKER_PREFETCH) and
// its own SMTP connection (libcurl, kept from one mail to the next); the mail is FILE as it is
// (one the sink captured from the worker), its envelope FILE.envelope. Acknowledgements may
// cover several deliveries (multiple): one per batch the connection had buffered. Stops once N
// mails are accepted; prints {"sent": …, "failed": …, "seconds": …}.
//
// Like bench_amqp, this tool includes <amqp.h> itself on purpose: the ceiling measures the
// libraries and the brokers without the project's code.

#include <amqp.h>
#include <amqp_tcp_socket.h>
#include <curl/curl.h>
#include <signal.h>
#include <sys/time.h>
#include <CLI/CLI.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <iterator>
#include <string>
#include <thread>
#include <vector>

namespace {

[[noreturn]] void fail(const std::string& what) {
  std::cerr << "bench_worker_relay: " << what << "\n";
  std::exit(1);
}

struct Options {
  std::string rabbitmq_url, queue, host = "127.0.0.1", message_path, envelope_path;
  long long count = 0;
  int prefetch = 32;
  int connections = 1;
  int port = 0;
};

Options parse(int argc, char** argv) {
  Options o;
  CLI::App app{
      "bench_worker_relay: the worker's ceiling, RabbitMQ to SMTP without the worker's work"};
  app.add_option("--rabbitmq-url", o.rabbitmq_url)->required();
  app.add_option("--queue", o.queue)->required();
  app.add_option("--count", o.count)->required()->check(CLI::PositiveNumber);
  app.add_option("--prefetch", o.prefetch)->check(CLI::PositiveNumber);
  app.add_option("--connections", o.connections)->check(CLI::PositiveNumber);
  app.add_option("--port", o.port)->required()->check(CLI::PositiveNumber);
  app.add_option("--host", o.host);
  app.add_option("--message", o.message_path)->required();
  app.add_option("--envelope", o.envelope_path);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    std::exit(app.exit(e));
  }
  if (o.envelope_path.empty()) o.envelope_path = o.message_path + ".envelope";
  return o;
}

struct Mail {
  std::string data;
  std::string from;
  std::vector<std::string> to;
};

Mail load(const Options& o) {
  Mail mail;
  std::ifstream in(o.message_path, std::ios::binary);
  if (!in) fail("cannot read " + o.message_path);
  mail.data.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  std::ifstream envelope(o.envelope_path);
  if (!envelope || !std::getline(envelope, mail.from)) fail("cannot read " + o.envelope_path);
  for (std::string line; std::getline(envelope, line);) {
    if (!line.empty()) mail.to.push_back(line);
  }
  if (mail.to.empty()) fail(o.envelope_path + " names no recipient");
  return mail;
}

void check_reply(amqp_rpc_reply_t reply, const std::string& what) {
  if (reply.reply_type == AMQP_RESPONSE_NORMAL) return;
  if (reply.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION) {
    fail(what + ": " + amqp_error_string2(reply.library_error));
  }
  fail(what + ": the broker refused (reply " + std::to_string(reply.reply.id) + ")");
}

amqp_connection_state_t consume(const Options& o) {
  std::vector<char> buffer(o.rabbitmq_url.begin(), o.rabbitmq_url.end());
  buffer.push_back('\0');
  amqp_connection_info info{};
  if (amqp_parse_url(buffer.data(), &info) != AMQP_STATUS_OK) fail("bad URL " + o.rabbitmq_url);
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
  amqp_basic_qos(state, 1, 0, static_cast<std::uint16_t>(o.prefetch), 0);
  check_reply(amqp_get_rpc_reply(state), "basic.qos");
  amqp_basic_consume(state, 1, amqp_cstring_bytes(o.queue.c_str()), amqp_empty_bytes, 0, 0, 0,
                     amqp_empty_table);
  check_reply(amqp_get_rpc_reply(state), "basic.consume " + o.queue);
  return state;
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

std::atomic<long long> g_claimed{0};  // deliveries taken for sending, never more than --count
std::atomic<long long> g_sent{0};
std::atomic<long long> g_failed{0};

// One sender: its own AMQP and SMTP connections, as one of the worker's sender threads.
void relay(const Options& o, const Mail& mail) {
  amqp_connection_state_t amqp = consume(o);
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

  std::uint64_t unacked = 0;  // the highest delivery tag sent and not yet acknowledged
  std::uint64_t acked = 0;
  // Half the prefetch at most, so the broker never waits for an acknowledgement to send more.
  const std::uint64_t ack_every = static_cast<std::uint64_t>(std::max(1, o.prefetch / 2));
  while (g_claimed.load() < o.count) {
    amqp_maybe_release_buffers(amqp);
    timeval wait{0, 100000};
    amqp_envelope_t envelope;
    const amqp_rpc_reply_t reply = amqp_consume_message(amqp, &envelope, &wait, 0);
    if (reply.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION &&
        reply.library_error == AMQP_STATUS_TIMEOUT) {
      continue;
    }
    check_reply(reply, "consume");
    const std::uint64_t tag = envelope.delivery_tag;
    amqp_destroy_envelope(&envelope);
    if (g_claimed.fetch_add(1) >= o.count) break;  // left unacknowledged: back to the queue
    upload.offset = 0;
    const CURLcode rc = curl_easy_perform(h);
    if (rc == CURLE_OK) {
      ++g_sent;
    } else if (g_failed.fetch_add(1) < 5) {
      std::fprintf(stderr, "bench_worker_relay: %s\n", curl_easy_strerror(rc));
    }
    unacked = tag;
    // One acknowledgement for several deliveries: once nothing else is buffered, or half the
    // prefetch is waiting for it.
    if ((amqp_frames_enqueued(amqp) == 0 && amqp_data_in_buffer(amqp) == 0) ||
        unacked - acked >= ack_every) {
      amqp_basic_ack(amqp, 1, unacked, 1);
      acked = unacked;
      unacked = 0;
    }
  }
  if (unacked > acked) amqp_basic_ack(amqp, 1, unacked, 1);
  curl_slist_free_all(rcpt);
  curl_easy_cleanup(h);
  amqp_connection_close(amqp, AMQP_REPLY_SUCCESS);
  amqp_destroy_connection(amqp);
}

}  // namespace

int main(int argc, char** argv) {
  signal(SIGPIPE, SIG_IGN);
  const Options o = parse(argc, argv);
  const Mail mail = load(o);
  curl_global_init(CURL_GLOBAL_DEFAULT);
  const auto start = std::chrono::steady_clock::now();
  std::vector<std::thread> threads;
  for (int i = 0; i < o.connections; ++i)
    threads.emplace_back(relay, std::cref(o), std::cref(mail));
  for (auto& t : threads) t.join();
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  curl_global_cleanup();
  std::printf("{\"sent\": %lld, \"failed\": %lld, \"seconds\": %.6f}\n", g_sent.load(),
              g_failed.load(), seconds);
  return g_failed.load() == 0 ? 0 : 1;
}
