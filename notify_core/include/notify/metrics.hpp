#pragma once
// Operability endpoints of a service on one port: /metrics (Prometheus text format, from a
// prometheus-cpp registry), /healthz (the process answers) and /readyz (connected to its
// brokers). prometheus-cpp's own Exposer serves /metrics only, so cpp-httplib serves all three.

#include <functional>
#include <memory>
#include <optional>
#include <string>

namespace prometheus {
class Registry;
}

namespace notify {

inline constexpr const char* kMetricsContentType = "text/plain; version=0.0.4";

// Everything in the registry in the Prometheus text exposition format.
std::string render_metrics(prometheus::Registry& registry);

// Serves the three endpoints on its own thread from construction to destruction.
class MetricsServer {
 public:
  struct Options {
    std::string host = "0.0.0.0";
    int port = 0;  // 0: any free port (see port())
  };

  // Throws std::runtime_error when it cannot listen (port taken, bad host). A null registry
  // gets a fresh one.
  explicit MetricsServer(const Options& options,
                         std::shared_ptr<prometheus::Registry> registry = nullptr);
  ~MetricsServer();  // stops the server and joins its thread
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  int port() const;  // the port it listens on
  std::shared_ptr<prometheus::Registry> registry() const;

  // /readyz answers 200 "ready" when the check returns nothing, else 503 "not ready: <why>"
  // (e.g. "rabbitmq refused: 403 ACCESS_REFUSED - ..."); without a check, 503. The check runs
  // on the HTTP thread: it must only read what is safe from any thread (atomics, a string under
  // a mutex), never broker handles.
  using Readiness = std::function<std::optional<std::string>()>;
  void set_readiness(Readiness check);
  // The same without a reason: 200 when the check holds, else 503 "not ready".
  void set_ready_check(std::function<bool()> check);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// For the services: the server, or none when it cannot listen (logged as an error). Metrics
// and probes must not stop the delivery of notifications. Logs the address it listens on.
std::unique_ptr<MetricsServer> start_metrics_server(MetricsServer::Options options,
                                                    std::shared_ptr<prometheus::Registry> registry);

}  // namespace notify
