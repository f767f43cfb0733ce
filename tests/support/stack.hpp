#pragma once
// Test support: the broker stack of this test run (started once by tests/harness/stack.sh as a
// CTest fixture), child processes of the services, the web inbox, and waiting.

#include <chrono>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace notify::testing {

// Values of the stack.env file named by $NOTIFY_STACK_ENV: RABBITMQ_URL,
// KAFKA_BOOTSTRAP_SERVERS, SMTP_HOST, SMTP_PORT, INBOX_URL, AUTH_URL, UNSUBSCRIBE_SECRET and
// UNSUBSCRIBE_URL (the development Auth service's one-click unsubscribe), LEDGER_URL (the stack's
// Redis, redis://127.0.0.1:REDIS_PORT/0, for the worker's delivery ledger), REDIS_PORT,
// STACK_DIR, BIN_DIR, SOURCE_DIR. Redis keeps an append-only file in STACK_DIR/redis, so
// control("restart", "redis") keeps the ledger; its pid is in STACK_DIR/redis/redis.pid.
class Stack {
 public:
  static const Stack& get();  // loads once; throws std::runtime_error when not available
  const std::string& value(const std::string& key) const;
  const std::map<std::string, std::string>& values() const { return values_; }
  // supervisorctl on the stack: action is "stop", "start" or "restart"; program is one of
  // "rabbitmq", "kafka", "redis", "maildev", "auth". After a start or restart it returns once the
  // program answers again (Kafka on a new port: KAFKA_BOOTSTRAP_SERVERS in stack.env changes,
  // not in this object's values).
  void control(const std::string& action, const std::string& program) const;

 private:
  std::map<std::string, std::string> values_;
};

// A unique name for queues, topics and groups, so tests never see each other's data.
std::string unique_name(const std::string& prefix);

// A child process (a service binary) with its own environment; output goes to log_file. It
// inherits only PATH, HOME, TZ, LANG, LC_ALL and TMPDIR, gets METRICS_HOST=127.0.0.1 and
// METRICS_PORT=0 (a free port) unless env says otherwise, and env.
class Process {
 public:
  Process(const std::string& path, const std::vector<std::string>& args,
          const std::map<std::string, std::string>& env, const std::string& log_file);
  ~Process();  // terminate() if still running
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  bool running();
  int terminate(
      std::chrono::milliseconds grace = std::chrono::seconds(10));  // SIGTERM, wait, SIGKILL
  void kill();                                                      // SIGKILL and reap
  std::optional<int> wait(std::chrono::milliseconds timeout);       // exit status
  std::string log() const;                                          // what it printed so far
  int pid() const { return pid_; }

 private:
  int pid_ = -1;
  std::string log_file_;
  std::optional<int> status_;
};

// The maildev web inbox (REST API at INBOX_URL).
class Inbox {
 public:
  explicit Inbox(std::string base_url);
  std::vector<nlohmann::json> messages() const;  // GET /email
  void clear() const;                            // DELETE /email/all
 private:
  std::string base_url_;
};

// A loopback port nobody listens on right now (bound to 0, read back, closed).
int free_port();
// The status of GET http://127.0.0.1:port/path; 0 when nothing answers.
int http_status(int port, const std::string& path);
// The /metrics text of a service on 127.0.0.1:port; empty when it does not answer 200.
std::string scrape_metrics(int port);
// The value of one series (name{labels} exactly as exposed) in metrics text, if present.
std::optional<double> metric_value(const std::string& text, const std::string& series);

// Polls pred every 50 ms until it holds or the timeout passes.
bool wait_until(const std::function<bool()>& pred, std::chrono::milliseconds timeout);

}  // namespace notify::testing
