#include "notify/metrics.hpp"

#include <httplib.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <mutex>
#include <stdexcept>
#include <thread>

#include "notify/log.hpp"

namespace notify {
namespace {

using namespace std::chrono_literals;

// A scrape and two probes at a time are plenty; httplib's default pool is eight threads.
constexpr std::size_t kServerThreads = 2;
constexpr std::size_t kMaxReason = 1000;

}  // namespace

std::string render_metrics(prometheus::Registry& registry) {
  return prometheus::TextSerializer().Serialize(registry.Collect());
}

struct MetricsServer::Impl {
  std::shared_ptr<prometheus::Registry> registry;
  httplib::Server server;
  std::thread thread;
  std::atomic<bool> done{false};  // the accept loop has returned
  int port = 0;
  std::mutex check_mutex;
  Readiness readiness;

  // Nothing when ready, else why not (one line, bounded: it is shown as the body of /readyz).
  std::optional<std::string> not_ready() {
    Readiness check;
    {
      std::lock_guard lock(check_mutex);
      check = readiness;
    }
    if (!check) return "";
    std::optional<std::string> why;
    try {
      why = check();
    } catch (const std::exception& e) {
      why = std::string("readiness check failed: ") + e.what();
    } catch (...) {
      why = "readiness check failed";
    }
    if (why) {
      std::replace_if(
          why->begin(), why->end(), [](char c) { return c == '\n' || c == '\r'; }, ' ');
      if (why->size() > kMaxReason) *why = why->substr(0, kMaxReason) + "...";
    }
    return why;
  }
};

MetricsServer::MetricsServer(const Options& options, std::shared_ptr<prometheus::Registry> registry)
    : impl_(std::make_unique<Impl>()) {
  impl_->registry = registry ? std::move(registry) : std::make_shared<prometheus::Registry>();
  Impl* self = impl_.get();
  auto& server = impl_->server;
  server.new_task_queue = [] { return new httplib::ThreadPool(kServerThreads); };
  // httplib's default is SO_REUSEPORT, which lets a second process share the port and answer
  // half the scrapes: a port taken must be an error instead.
  server.set_socket_options([](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  });
  server.Get("/metrics", [self](const httplib::Request&, httplib::Response& res) {
    res.set_content(render_metrics(*self->registry), kMetricsContentType);
  });
  server.Get("/healthz", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("ok\n", "text/plain");
  });
  server.Get("/readyz", [self](const httplib::Request&, httplib::Response& res) {
    const std::optional<std::string> why = self->not_ready();
    res.status = why ? 503 : 200;
    if (!why) {
      res.set_content("ready\n", "text/plain");
    } else {
      res.set_content(why->empty() ? "not ready\n" : "not ready: " + *why + "\n", "text/plain");
    }
  });

  if (options.port == 0) {
    impl_->port = server.bind_to_any_port(options.host);
  } else if (server.bind_to_port(options.host, options.port)) {
    impl_->port = options.port;
  } else {
    impl_->port = -1;
  }
  if (impl_->port <= 0) {
    throw std::runtime_error("metrics server: cannot listen on " + options.host + ":" +
                             std::to_string(options.port));
  }
  impl_->thread = std::thread([self] {
    self->server.listen_after_bind();
    self->done.store(true);
  });
}

MetricsServer::~MetricsServer() {
  // stop() does nothing before the accept loop runs, and must be called once: wait for the loop.
  while (!impl_->server.is_running() && !impl_->done.load()) std::this_thread::sleep_for(1ms);
  if (!impl_->done.load()) impl_->server.stop();
  impl_->thread.join();
}

int MetricsServer::port() const { return impl_->port; }

std::shared_ptr<prometheus::Registry> MetricsServer::registry() const { return impl_->registry; }

void MetricsServer::set_readiness(Readiness check) {
  std::lock_guard lock(impl_->check_mutex);
  impl_->readiness = std::move(check);
}

void MetricsServer::set_ready_check(std::function<bool()> check) {
  if (!check) return set_readiness(nullptr);
  set_readiness([check = std::move(check)]() -> std::optional<std::string> {
    if (check()) return std::nullopt;
    return "";
  });
}

std::unique_ptr<MetricsServer> start_metrics_server(
    MetricsServer::Options options, std::shared_ptr<prometheus::Registry> registry) {
  try {
    auto server = std::make_unique<MetricsServer>(options, std::move(registry));
    log::info("metrics listening", {{"host", options.host},
                                    {"port", server->port()},
                                    {"paths", {"/metrics", "/healthz", "/readyz"}}});
    return server;
  } catch (const std::exception& e) {
    log::error("metrics server not started", {{"error", e.what()}});
    return nullptr;
  }
}

}  // namespace notify
