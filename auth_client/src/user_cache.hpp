#pragma once
// A bounded TTL cache of found users, keyed by the id that was looked up. Least recently used
// entries are evicted when full; an expired entry is dropped when it is next looked up (or
// when it drifts to the cold end and is evicted). Not thread-safe: the Client owns one.

#include <chrono>
#include <list>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "auth_client/auth_client.hpp"

namespace auth {

class UserCache {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;

  UserCache(std::chrono::milliseconds ttl, std::size_t capacity) : ttl_(ttl), capacity_(capacity) {}

  bool enabled() const { return ttl_.count() > 0 && capacity_ > 0; }
  std::size_t size() const { return index_.size(); }

  std::optional<User> get(std::string_view id, TimePoint now) {
    if (!enabled()) return std::nullopt;
    auto it = index_.find(std::string(id));
    if (it == index_.end()) return std::nullopt;
    if (now - it->second->stored_at >= ttl_) {
      entries_.erase(it->second);
      index_.erase(it);
      return std::nullopt;
    }
    entries_.splice(entries_.begin(), entries_, it->second);
    return it->second->user;
  }

  void put(std::string_view id, const User& user, TimePoint now) {
    if (!enabled()) return;
    const std::string key(id);
    if (auto it = index_.find(key); it != index_.end()) {
      it->second->user = user;
      it->second->stored_at = now;
      entries_.splice(entries_.begin(), entries_, it->second);
      return;
    }
    entries_.push_front(Entry{key, user, now});
    index_.emplace(key, entries_.begin());
    if (index_.size() > capacity_) {
      index_.erase(entries_.back().id);
      entries_.pop_back();
    }
  }

 private:
  struct Entry {
    std::string id;
    User user;
    TimePoint stored_at;
  };

  std::chrono::milliseconds ttl_;
  std::size_t capacity_;
  std::list<Entry> entries_;  // most recently used first
  std::unordered_map<std::string, std::list<Entry>::iterator> index_;
};

}  // namespace auth
