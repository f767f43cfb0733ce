// The development Auth service: users from a JSON file, served the way the real service does
// (GET /api/v1/users/{id}, GET /api/v1/users/?filters&paging), the platform's one-click
// unsubscribe endpoint (documentation/unsubscribe.md) at the path of UNSUBSCRIBE_URL (default
// /unsubscribe), its tokens verified with UNSUBSCRIBE_SECRET, plus hooks for tests:
// fault injection (/_dev/faults), adding users (/_dev/users, /_dev/users/bulk) and counting the
// API requests served (/_dev/stats, for benchmarks).
//
//   dev_auth_server [--host 127.0.0.1] [--port 8081] [--users users.json] [--token T] [--verbose]
//
// UNSUBSCRIBE_SECRET and UNSUBSCRIBE_URL come from the environment, as the ETL's do (a secret on
// the command line would show in ps); without the secret the endpoint answers 503.
//
// --port 0 picks a free port. The listening address is printed on start. SIGTERM/SIGINT stop it.

#include <httplib.h>
#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include <kainjow/mustache.hpp>
#include <nlohmann/json.hpp>

#include "auth_client/url.hpp"
#include "notify/unsubscribe.hpp"

namespace {

using json = nlohmann::json;
using SteadyClock = std::chrono::steady_clock;

struct Options {
  std::string host = "127.0.0.1";
  int port = 8081;
  std::string users_path;
  std::string token;
  bool verbose = false;
};

constexpr const char* kUsage =
    "usage: dev_auth_server [--host H] [--port N] [--users PATH] [--token T] [--verbose]\n";

Options parse_args(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw std::invalid_argument(arg + " needs a value");
      return argv[++i];
    };
    if (arg == "--host") {
      o.host = value();
    } else if (arg == "--port") {
      const std::string v = value();
      std::size_t used = 0;
      int port = -1;
      try {
        port = std::stoi(v, &used);
      } catch (const std::exception&) {
      }
      if (used != v.size() || port < 0 || port > 65535) {
        throw std::invalid_argument("--port: not a port number: " + v);
      }
      o.port = port;
    } else if (arg == "--users") {
      o.users_path = value();
    } else if (arg == "--token") {
      o.token = value();
    } else if (arg == "--verbose") {
      o.verbose = true;
    } else if (arg == "--help" || arg == "-h") {
      std::cout << kUsage;
      std::exit(0);
    } else {
      throw std::invalid_argument("unknown argument: " + arg);
    }
  }
  return o;
}

std::string text_field(const json& j, const char* name, bool required) {
  auto it = j.find(name);
  if (it == j.end() || it->is_null()) {
    if (required) throw std::invalid_argument(std::string("missing field '") + name + "'");
    return {};
  }
  if (it->is_number_integer()) return it->dump();
  if (!it->is_string()) throw std::invalid_argument(std::string("'") + name + "' is not a string");
  if (required && it->get<std::string>().empty()) {
    throw std::invalid_argument(std::string("empty field '") + name + "'");
  }
  return it->get<std::string>();
}

bool bool_field(const json& j, const char* name, bool fallback) {
  auto it = j.find(name);
  if (it == j.end() || it->is_null()) return fallback;
  if (!it->is_boolean())
    throw std::invalid_argument(std::string("'") + name + "' is not a boolean");
  return it->get<bool>();
}

// A user as the service answers it: every field present, defaults filled in.
json normalize_user(const json& j) {
  if (!j.is_object()) throw std::invalid_argument("a user must be a JSON object");
  return {{"id", text_field(j, "id", true)},
          {"email", text_field(j, "email", true)},
          {"first_name", text_field(j, "first_name", false)},
          {"last_name", text_field(j, "last_name", false)},
          {"timezone", text_field(j, "timezone", false)},
          {"locale", text_field(j, "locale", false)},
          {"email_notifications", bool_field(j, "email_notifications", true)},
          {"active", bool_field(j, "active", bool_field(j, "is_active", true))}};
}

// The users, in insertion order (pages are stable), guarded for httplib's thread pool.
class Directory {
 public:
  void upsert(json user) {
    std::lock_guard lock(mu_);
    const std::string id = user["id"];
    auto it = index_.find(id);
    if (it != index_.end()) {
      users_[it->second] = std::move(user);
    } else {
      index_.emplace(id, users_.size());
      users_.push_back(std::move(user));
    }
  }

  // The user with email_notifications set to `on`; nothing for an unknown user.
  std::optional<json> set_email_notifications(const std::string& id, bool on) {
    std::lock_guard lock(mu_);
    auto it = index_.find(id);
    if (it == index_.end()) return std::nullopt;
    users_[it->second]["email_notifications"] = on;
    return users_[it->second];
  }

  std::optional<json> find(const std::string& id) const {
    std::lock_guard lock(mu_);
    auto it = index_.find(id);
    if (it == index_.end()) return std::nullopt;
    return users_[it->second];
  }

  struct Filter {
    std::optional<bool> active;
    std::optional<bool> email_notifications;
  };

  json page(const Filter& filter, std::size_t page_number, std::size_t page_size) const {
    std::lock_guard lock(mu_);
    json items = json::array();
    std::size_t total = 0;
    const std::size_t first = (page_number - 1) * page_size;
    for (const auto& u : users_) {
      if (filter.active && u["active"].get<bool>() != *filter.active) continue;
      if (filter.email_notifications &&
          u["email_notifications"].get<bool>() != *filter.email_notifications) {
        continue;
      }
      if (total >= first && items.size() < page_size) items.push_back(u);
      ++total;
    }
    return {{"items", std::move(items)},
            {"page_number", page_number},
            {"page_size", page_size},
            {"total", total}};
  }

  std::size_t size() const {
    std::lock_guard lock(mu_);
    return users_.size();
  }

 private:
  mutable std::mutex mu_;
  std::vector<json> users_;
  std::map<std::string, std::size_t> index_;
};

// Injected failures for /api/ requests: a status (default 503) and/or a delay (to provoke client
// timeouts), for some seconds, for the next N requests, or until cleared.
class Faults {
 public:
  void set(const json& spec) {
    if (!spec.is_object()) throw std::invalid_argument("faults: expected a JSON object");
    const long delay_ms = spec.value("delay_ms", 0L);
    const double seconds = spec.value("seconds", 0.0);
    const long count = spec.value("count", 0L);
    if (seconds < 0 || count < 0 || delay_ms < 0) {
      throw std::invalid_argument("faults: negative value");
    }
    std::optional<int> status;
    if (spec.contains("status") || delay_ms == 0) {
      status = spec.value("status", 503);
      if (*status < 100 || *status > 599) throw std::invalid_argument("faults: bad status");
    }
    std::lock_guard lock(mu_);
    status_ = status;
    delay_ = std::chrono::milliseconds(delay_ms);
    until_.reset();
    if (seconds > 0) {
      until_ = SteadyClock::now() + std::chrono::duration_cast<SteadyClock::duration>(
                                        std::chrono::duration<double>(seconds));
    }
    remaining_ = count > 0 ? std::optional(count) : std::nullopt;
    active_ = true;
  }

  void clear() {
    std::lock_guard lock(mu_);
    active_ = false;
  }

  struct Verdict {
    std::chrono::milliseconds delay{0};
    std::optional<int> status;
  };

  // What the next /api/ request suffers; consumes one count.
  Verdict next() {
    std::lock_guard lock(mu_);
    if (!active_) return {};
    if ((until_ && SteadyClock::now() >= *until_) || (remaining_ && *remaining_ <= 0)) {
      active_ = false;
      return {};
    }
    if (remaining_) --*remaining_;
    return {delay_, status_};
  }

 private:
  std::mutex mu_;
  bool active_ = false;
  std::optional<int> status_;
  std::chrono::milliseconds delay_{0};
  std::optional<SteadyClock::time_point> until_;
  std::optional<long> remaining_;
};

void reply_json(httplib::Response& res, int status, const json& body) {
  res.status = status;
  res.set_content(body.dump(), "application/json");
}

void reply_error(httplib::Response& res, int status, const std::string& detail) {
  reply_json(res, status, {{"detail", detail}});
}

// "true"/"false" (also 1/0); nullopt when the parameter is absent. Throws on other text.
std::optional<bool> bool_param(const httplib::Request& req, const char* name) {
  if (!req.has_param(name)) return std::nullopt;
  const std::string v = req.get_param_value(name);
  if (v == "true" || v == "1") return true;
  if (v == "false" || v == "0") return false;
  throw std::invalid_argument(std::string(name) + ": expected true or false, got '" + v + "'");
}

std::size_t size_param(const httplib::Request& req, const char* name, std::size_t fallback,
                       std::size_t min, std::size_t max) {
  if (!req.has_param(name)) return fallback;
  const std::string v = req.get_param_value(name);
  std::size_t used = 0;
  unsigned long long n = 0;
  try {
    n = std::stoull(v, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != v.size() || n < min || n > max) {
    throw std::invalid_argument(std::string(name) + ": expected a number in [" +
                                std::to_string(min) + ", " + std::to_string(max) + "], got '" + v +
                                "'");
  }
  return static_cast<std::size_t>(n);
}

void load_users(Directory& directory, const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot open users file " + path);
  json all;
  try {
    all = json::parse(in);
  } catch (const json::exception& e) {
    throw std::runtime_error("users file " + path + ": " + e.what());
  }
  if (!all.is_array()) throw std::runtime_error("users file " + path + ": expected a JSON array");
  for (std::size_t i = 0; i < all.size(); ++i) {
    try {
      directory.upsert(normalize_user(all[i]));
    } catch (const std::invalid_argument& e) {
      throw std::runtime_error("users file " + path + ": user " + std::to_string(i) + ": " +
                               e.what());
    }
  }
}

// One-click unsubscribe (RFC 8058) as the platform's Auth service would serve it.
struct UnsubscribeEndpoint {
  std::string path = "/unsubscribe";
  std::optional<notify::UnsubscribeSigner> signer;  // none: UNSUBSCRIBE_SECRET not set
};

notify::TimePoint wall_now() {
  return std::chrono::time_point_cast<std::chrono::milliseconds>(std::chrono::system_clock::now());
}

// RFC 8058: the body is List-Unsubscribe=One-Click, form-encoded or multipart.
bool one_click_body(const httplib::Request& req) {
  if (req.has_param("List-Unsubscribe")) {
    return req.get_param_value("List-Unsubscribe") == "One-Click";
  }
  if (req.is_multipart_form_data() && req.has_file("List-Unsubscribe")) {
    return req.get_file_value("List-Unsubscribe").content == "One-Click";
  }
  return req.body == "List-Unsubscribe=One-Click";  // sent without a content type
}

void install_unsubscribe(httplib::Server& svr, Directory& directory,
                         const UnsubscribeEndpoint& endpoint) {
  // The claim of the request's token, or the answer already given.
  auto claim_of = [&endpoint](const httplib::Request& req,
                              httplib::Response& res) -> std::optional<notify::UnsubscribeClaim> {
    if (!endpoint.signer) {
      res.status = 503;
      res.set_content("unsubscribe not configured: UNSUBSCRIBE_SECRET is not set\n", "text/plain");
      return std::nullopt;
    }
    const std::string token = req.get_param_value("token");
    auto verified = endpoint.signer->verify(token, wall_now());
    if (const auto* refused = std::get_if<notify::TokenRefusal>(&verified)) {
      res.status = 400;
      res.set_content("cannot unsubscribe: " + refused->reason + "\n", "text/plain");
      return std::nullopt;
    }
    return std::get<notify::UnsubscribeClaim>(std::move(verified));
  };

  // The one click: turns the user's e-mail notifications off within the request.
  svr.Post(endpoint.path,
           [&directory, claim_of](const httplib::Request& req, httplib::Response& res) {
             if (!one_click_body(req)) {
               res.status = 400;
               res.set_content("cannot unsubscribe: the body must be List-Unsubscribe=One-Click\n",
                               "text/plain");
               return;
             }
             const auto claim = claim_of(req, res);
             if (!claim) return;
             const auto user = directory.set_email_notifications(claim->user_id, false);
             if (!user) {
               res.status = 404;
               res.set_content("cannot unsubscribe: unknown user\n", "text/plain");
               return;
             }
             res.status = 200;
             res.set_content("Unsubscribed: " + (*user)["email"].get<std::string>() +
                                 " gets no more of these e-mails.\n",
                             "text/plain");
           });

  // What a link scanner or a person's click fetches: a page asking to confirm, nothing changed.
  svr.Get(endpoint.path, [&directory, &endpoint, claim_of](const httplib::Request& req,
                                                           httplib::Response& res) {
    const auto claim = claim_of(req, res);
    if (!claim) return;
    const auto user = directory.find(claim->user_id);
    if (!user) {
      res.status = 404;
      res.set_content("cannot unsubscribe: unknown user\n", "text/plain");
      return;
    }
    const std::string action = endpoint.path + "?token=" + req.get_param_value("token");
    res.status = 200;
    res.set_content(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<title>Unsubscribe</title></head><body>\n<h1>Unsubscribe</h1>\n<p>Stop e-mails like "
        "this one to " +
            kainjow::mustache::html_escape<std::string>((*user)["email"].get<std::string>()) +
            "?</p>\n<form method=\"post\" action=\"" +
            kainjow::mustache::html_escape<std::string>(action) +
            "\">\n<input type=\"hidden\" name=\"List-Unsubscribe\" value=\"One-Click\">\n"
            "<button type=\"submit\">Unsubscribe</button>\n</form>\n</body></html>\n",
        "text/html; charset=utf-8");
  });
}

void install_routes(httplib::Server& svr, Directory& directory, Faults& faults,
                    std::atomic<long long>& api_requests, const Options& options) {
  // Faults and the token apply to the API only: health and the test hooks stay reachable.
  svr.set_pre_routing_handler(
      [&faults, &options, &api_requests](const httplib::Request& req, httplib::Response& res) {
        if (req.path.rfind("/api/", 0) != 0) return httplib::Server::HandlerResponse::Unhandled;
        api_requests.fetch_add(1, std::memory_order_relaxed);
        const auto verdict = faults.next();
        if (verdict.delay.count() > 0) std::this_thread::sleep_for(verdict.delay);
        if (verdict.status) {
          reply_error(res, *verdict.status, "injected fault");
          return httplib::Server::HandlerResponse::Handled;
        }
        if (!options.token.empty() &&
            req.get_header_value("Authorization") != "Bearer " + options.token) {
          reply_error(res, 401, "not authenticated");
          return httplib::Server::HandlerResponse::Handled;
        }
        return httplib::Server::HandlerResponse::Unhandled;
      });

  svr.Get("/healthz", [](const httplib::Request&, httplib::Response& res) {
    reply_json(res, 200, {{"status", "ok"}});
  });

  auto list = [&directory](const httplib::Request& req, httplib::Response& res) {
    try {
      Directory::Filter filter{bool_param(req, "is_active"),
                               bool_param(req, "email_notifications")};
      const auto page_number = size_param(req, "page_number", 1, 1, 1'000'000'000);
      const auto page_size = size_param(req, "page_size", 50, 1, 1000);
      reply_json(res, 200, directory.page(filter, page_number, page_size));
    } catch (const std::invalid_argument& e) {
      reply_error(res, 422, e.what());
    }
  };
  svr.Get("/api/v1/users/", list);
  svr.Get("/api/v1/users", list);

  svr.Get(R"(/api/v1/users/([^/]+))",
          [&directory](const httplib::Request& req, httplib::Response& res) {
            if (auto user = directory.find(req.matches[1])) {
              reply_json(res, 200, *user);
            } else {
              reply_error(res, 404, "user not found");
            }
          });

  // Requests to /api/ since start or the last DELETE: what a client really asked of the service.
  svr.Get("/_dev/stats", [&api_requests](const httplib::Request&, httplib::Response& res) {
    reply_json(res, 200, {{"requests", api_requests.load()}});
  });
  svr.Delete("/_dev/stats", [&api_requests](const httplib::Request&, httplib::Response& res) {
    api_requests.store(0);
    reply_json(res, 200, {{"requests", 0}});
  });

  svr.Post("/_dev/faults", [&faults](const httplib::Request& req, httplib::Response& res) {
    try {
      faults.set(json::parse(req.body));
      reply_json(res, 200, {{"status", "faults set"}});
    } catch (const std::exception& e) {
      reply_error(res, 400, e.what());
    }
  });
  svr.Delete("/_dev/faults", [&faults](const httplib::Request&, httplib::Response& res) {
    faults.clear();
    reply_json(res, 200, {{"status", "faults cleared"}});
  });

  // One user object, or an array of them (all are checked before any is stored).
  svr.Post("/_dev/users", [&directory](const httplib::Request& req, httplib::Response& res) {
    try {
      const json body = json::parse(req.body);
      if (body.is_array()) {
        std::vector<json> users;
        for (const auto& u : body) users.push_back(normalize_user(u));
        for (auto& u : users) directory.upsert(std::move(u));
        reply_json(res, 201, {{"created", users.size()}});
        return;
      }
      json user = normalize_user(body);
      directory.upsert(user);
      reply_json(res, 201, user);
    } catch (const std::exception& e) {
      reply_error(res, 400, e.what());
    }
  });

  // Users {prefix}1 … {prefix}N with addresses {prefix}i@example.com: the same request yields
  // the same users, so fan-out tests can predict their recipients.
  svr.Post("/_dev/users/bulk", [&directory](const httplib::Request& req, httplib::Response& res) {
    try {
      const auto count = size_param(req, "count", 0, 1, 1'000'000);
      const std::string prefix = req.has_param("prefix") ? req.get_param_value("prefix") : "bulk-";
      const std::string timezone =
          req.has_param("timezone") ? req.get_param_value("timezone") : "UTC";
      const std::string locale = req.has_param("locale") ? req.get_param_value("locale") : "en";
      for (std::size_t i = 1; i <= count; ++i) {
        const std::string id = prefix + std::to_string(i);
        directory.upsert(normalize_user({{"id", id},
                                         {"email", id + "@example.com"},
                                         {"first_name", "User"},
                                         {"last_name", std::to_string(i)},
                                         {"timezone", timezone},
                                         {"locale", locale}}));
      }
      reply_json(res, 201,
                 {{"created", count},
                  {"first_id", prefix + "1"},
                  {"last_id", prefix + std::to_string(count)},
                  {"total_users", directory.size()}});
    } catch (const std::exception& e) {
      reply_error(res, 400, e.what());
    }
  });

  if (options.verbose) {
    svr.set_logger([](const httplib::Request& req, const httplib::Response& res) {
      std::fprintf(stderr, "%s %s -> %d\n", req.method.c_str(), req.target.c_str(), res.status);
    });
  }
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  try {
    options = parse_args(argc, argv);
  } catch (const std::invalid_argument& e) {
    std::cerr << "dev_auth_server: " << e.what() << "\n" << kUsage;
    return 2;
  }

  Directory directory;
  if (!options.users_path.empty()) {
    try {
      load_users(directory, options.users_path);
    } catch (const std::exception& e) {
      std::cerr << "dev_auth_server: " << e.what() << "\n";
      return 1;
    }
  }

  // Block the stop signals in every thread (httplib's pool inherits the mask); one thread waits
  // for them and stops the server, since Server::stop is not async-signal-safe.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  UnsubscribeEndpoint unsubscribe;
  if (const char* url = std::getenv("UNSUBSCRIBE_URL"); url != nullptr && *url != '\0') {
    unsubscribe.path = auth::path_of(url).value_or(unsubscribe.path);
  }
  if (const char* secret = std::getenv("UNSUBSCRIBE_SECRET");
      secret != nullptr && *secret != '\0') {
    try {
      unsubscribe.signer.emplace(secret);
    } catch (const std::exception& e) {
      std::cerr << "dev_auth_server: UNSUBSCRIBE_SECRET: " << e.what() << "\n";
      return 2;
    }
  }

  Faults faults;
  std::atomic<long long> api_requests{0};
  httplib::Server svr;
  install_routes(svr, directory, faults, api_requests, options);
  install_unsubscribe(svr, directory, unsubscribe);
  // Clients keep one connection for many lookups; httplib closes after 5 requests by default.
  svr.set_keep_alive_max_count(100000);
  svr.set_tcp_nodelay(true);  // small answers: no Nagle delay against the client's delayed ACK

  int port = options.port;
  if (port == 0) {
    port = svr.bind_to_any_port(options.host);
  } else if (!svr.bind_to_port(options.host, port)) {
    port = -1;
  }
  if (port <= 0) {
    std::cerr << "dev_auth_server: cannot listen on " << options.host << ":" << options.port
              << "\n";
    return 1;
  }

  std::thread signal_watcher([&svr, &stop_signals] {
    int sig = 0;
    sigwait(&stop_signals, &sig);
    svr.stop();
  });

  std::cout << "dev_auth_server listening on http://" << options.host << ":" << port << " ("
            << directory.size() << " users; one-click unsubscribe at " << unsubscribe.path
            << (unsubscribe.signer ? "" : ", not configured: UNSUBSCRIBE_SECRET is not set") << ")"
            << std::endl;
  const bool ok = svr.listen_after_bind();

  // Wake the watcher if the server ended on its own: it waits in sigwait for SIGTERM, which
  // ends its wait, not the process.
  // NOLINTNEXTLINE(bugprone-bad-signal-to-kill-thread)
  pthread_kill(signal_watcher.native_handle(), SIGTERM);
  signal_watcher.join();
  std::cout << "dev_auth_server stopped" << std::endl;
  return ok ? 0 : 1;
}
