#include "stack.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <stdexcept>
#include <thread>

#include <httplib.h>

extern char** environ;

namespace notify::testing {
namespace {

using namespace std::chrono_literals;

std::map<std::string, std::string> load_env_file() {
  const char* path = std::getenv("NOTIFY_STACK_ENV");
  if (path == nullptr || *path == '\0') {
    throw std::runtime_error(
        "NOTIFY_STACK_ENV is not set: run integration tests through ctest, which starts the "
        "broker stack (tests/harness/stack.sh)");
  }
  std::ifstream in(path);
  if (!in) {
    throw std::runtime_error(std::string("cannot read the stack environment ") + path +
                             ": did the stack_up fixture run?");
  }
  std::map<std::string, std::string> values;
  std::string line;
  while (std::getline(in, line)) {
    const auto eq = line.find('=');
    if (line.empty() || line.front() == '#' || eq == std::string::npos) continue;
    values[line.substr(0, eq)] = line.substr(eq + 1);
  }
  return values;
}

// Runs path with args (no shell, so nothing needs quoting) and returns its wait status.
int run_and_wait(const std::string& path, const std::vector<std::string>& args) {
  std::vector<char*> argv;
  argv.push_back(const_cast<char*>(path.c_str()));
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  const pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error(std::string("fork: ") + std::strerror(errno));
  if (pid == 0) {
    ::execv(path.c_str(), argv.data());
    ::_exit(127);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return status;
}

// Exit code, or 128 + signal for a child killed by a signal (as a shell reports it).
int decode_status(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

}  // namespace

const Stack& Stack::get() {
  // A throwing initializer leaves the static uninitialized, so a later call tries again.
  static const Stack stack = [] {
    Stack s;
    s.values_ = load_env_file();
    return s;
  }();
  return stack;
}

const std::string& Stack::value(const std::string& key) const {
  const auto it = values_.find(key);
  if (it == values_.end()) throw std::runtime_error("the stack environment has no " + key);
  return it->second;
}

void Stack::control(const std::string& action, const std::string& program) const {
  const std::string script = value("SOURCE_DIR") + "/tests/harness/stack.sh";
  const int status = run_and_wait(script, {"ctl", value("STACK_DIR"), action, program});
  if (decode_status(status) != 0) {
    throw std::runtime_error("stack.sh ctl " + action + " " + program + " failed (status " +
                             std::to_string(decode_status(status)) + ")");
  }
}

std::string unique_name(const std::string& prefix) {
  static std::atomic<unsigned> counter{0};
  static const unsigned salt = std::random_device{}();
  std::ostringstream out;
  out << prefix << '_' << std::hex << salt << '_' << std::dec << ::getpid() << '_' << counter++;
  return out.str();
}

Process::Process(const std::string& path, const std::vector<std::string>& args,
                 const std::map<std::string, std::string>& env, const std::string& log_file)
    : log_file_(log_file) {
  const auto parent = std::filesystem::path(log_file).parent_path();
  if (!parent.empty()) std::filesystem::create_directories(parent);

  // The child sees only a few basics of the test's own environment plus env, so that settings in
  // a developer's shell (RABBITMQ_URL, ...) cannot leak into a test.
  std::map<std::string, std::string> merged;
  for (const char* name : {"PATH", "HOME", "TZ", "LANG", "LC_ALL", "TMPDIR"}) {
    if (const char* v = std::getenv(name)) merged[name] = v;
  }
  // Services under test serve their metrics on loopback, on a free port, unless a test asks:
  // several run at once, and a running `make up` holds the default ports.
  merged["METRICS_HOST"] = "127.0.0.1";
  merged["METRICS_PORT"] = "0";
  for (const auto& [k, v] : env) merged[k] = v;

  // Everything the child needs is built before fork: after it, only async-signal-safe calls.
  std::vector<std::string> env_strings;
  for (const auto& [k, v] : merged) env_strings.push_back(k + "=" + v);
  std::vector<char*> envp;
  for (auto& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::vector<std::string> argv_strings{path};
  argv_strings.insert(argv_strings.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& s : argv_strings) argv.push_back(s.data());
  argv.push_back(nullptr);

  const int log_fd = ::open(log_file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log_fd < 0) throw std::runtime_error("cannot open " + log_file + ": " + std::strerror(errno));
  const int null_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);

  // Signals stay blocked until the child has dropped the test's handlers (doctest installs some):
  // a SIGTERM from terminate() right after construction must not run them in the forked copy.
  sigset_t all, previous;
  ::sigfillset(&all);
  ::pthread_sigmask(SIG_SETMASK, &all, &previous);
  const pid_t pid = ::fork();
  if (pid < 0) {
    const int err = errno;
    ::pthread_sigmask(SIG_SETMASK, &previous, nullptr);
    ::close(log_fd);
    ::close(null_fd);
    throw std::runtime_error(std::string("fork: ") + std::strerror(err));
  }
  if (pid == 0) {
    for (int sig = 1; sig < NSIG; ++sig) ::signal(sig, SIG_DFL);
    ::sigprocmask(SIG_SETMASK, &previous, nullptr);
    // Own process group: terminate() and kill() reach whatever the child starts.
    ::setpgid(0, 0);
    ::dup2(null_fd, STDIN_FILENO);
    ::dup2(log_fd, STDOUT_FILENO);
    ::dup2(log_fd, STDERR_FILENO);
    ::execve(path.c_str(), argv.data(), envp.data());
    const char msg[] = "Process: execve failed\n";
    [[maybe_unused]] auto n = ::write(STDERR_FILENO, msg, sizeof msg - 1);
    ::_exit(127);
  }
  ::pthread_sigmask(SIG_SETMASK, &previous, nullptr);
  // Also set here: a signal sent right after the constructor returns must find the group.
  ::setpgid(pid, pid);
  ::close(log_fd);
  ::close(null_fd);
  pid_ = pid;
}

Process::~Process() {
  try {
    if (running()) terminate();
  } catch (...) {
  }
}

bool Process::running() {
  if (pid_ <= 0 || status_) return false;
  int status = 0;
  const pid_t r = ::waitpid(pid_, &status, WNOHANG);
  if (r == pid_) {
    status_ = decode_status(status);
    return false;
  }
  return r == 0;
}

std::optional<int> Process::wait(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (running()) {
    if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(10ms);
  }
  return status_;
}

int Process::terminate(std::chrono::milliseconds grace) {
  if (running()) {
    ::kill(-pid_, SIGTERM);
    if (!wait(grace)) kill();
  }
  return status_.value_or(-1);
}

void Process::kill() {
  if (pid_ <= 0 || status_) return;
  ::kill(-pid_, SIGKILL);
  int status = 0;
  while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
  status_ = decode_status(status);
}

std::string Process::log() const {
  std::ifstream in(log_file_);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

Inbox::Inbox(std::string base_url) : base_url_(std::move(base_url)) {}

std::vector<nlohmann::json> Inbox::messages() const {
  httplib::Client client(base_url_);
  client.set_connection_timeout(5s);
  client.set_read_timeout(10s);
  const auto res = client.Get("/email");
  if (!res)
    throw std::runtime_error("GET " + base_url_ + "/email: " + httplib::to_string(res.error()));
  if (res->status != 200) {
    throw std::runtime_error("GET " + base_url_ + "/email: HTTP " + std::to_string(res->status));
  }
  const auto body = nlohmann::json::parse(res->body);
  if (!body.is_array()) throw std::runtime_error("GET /email did not return an array");
  return {body.begin(), body.end()};
}

void Inbox::clear() const {
  httplib::Client client(base_url_);
  client.set_connection_timeout(5s);
  client.set_read_timeout(10s);
  const auto res = client.Delete("/email/all");
  if (!res) {
    throw std::runtime_error("DELETE " + base_url_ +
                             "/email/all: " + httplib::to_string(res.error()));
  }
  if (res->status != 200) {
    throw std::runtime_error("DELETE " + base_url_ + "/email/all: HTTP " +
                             std::to_string(res->status));
  }
}

bool wait_until(const std::function<bool()>& pred, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    if (pred()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(50ms);
  }
}

int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) throw std::runtime_error(std::string("socket: ") + std::strerror(errno));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof addr;
  const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
                  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0;
  ::close(fd);
  if (!ok) throw std::runtime_error("no free loopback port");
  return ntohs(addr.sin_port);
}

int http_status(int port, const std::string& path) {
  httplib::Client client("127.0.0.1", port);
  client.set_connection_timeout(1);
  client.set_read_timeout(2);
  auto r = client.Get(path.c_str());
  return r ? r->status : 0;
}

std::string scrape_metrics(int port) {
  httplib::Client client("127.0.0.1", port);
  client.set_connection_timeout(1);
  client.set_read_timeout(2);
  auto r = client.Get("/metrics");
  return r && r->status == 200 ? r->body : "";
}

std::optional<double> metric_value(const std::string& text, const std::string& series) {
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(series + " ", 0) == 0) return std::stod(line.substr(series.size() + 1));
  }
  return std::nullopt;
}

}  // namespace notify::testing
