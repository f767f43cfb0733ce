// A development Kafka broker: librdkafka's in-process mock cluster, kept alive until SIGTERM or
// SIGINT. The mock cluster listens on a random port of 127.0.0.1 (it cannot bind a chosen one),
// so the address is printed and, with --bootstrap-file, written to a file for scripts to read.
//
//   dev_kafka_broker [--bootstrap-file PATH] [--partitions N] [--topics a,b]
//                    [--data-dir DIR] [--groups g1,g2]
//
// The mock cluster lives in memory only. With --data-dir the broker keeps its data anyway: a
// recorder (a consumer of its own, on every partition of every topic) appends each message to
// DIR/topics/<topic>/<partition>.log, and at start the logs are produced into the new cluster
// again, partition by partition in order from offset 0, so every message gets its old offset
// back. The committed offsets of the --groups (and of every group found in DIR/offsets.json)
// are read every second and at SIGTERM into DIR/offsets.json, and committed again at start
// before the bootstrap file is written, so a consumer group resumes where it stopped. See
// documentation/architecture.md for the limits.

#include <librdkafka/rdkafka.h>
#include <CLI/CLI.hpp>
// rdkafka_mock.h must come after rdkafka.h.
#include <librdkafka/rdkafka_mock.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "notify/log.hpp"

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

struct Args {
  std::string bootstrap_file;
  int partitions = 3;
  std::vector<std::string> topics = {"notify_events", "notify_events.dlq"};
  std::string data_dir;             // empty: nothing kept
  std::vector<std::string> groups;  // consumer groups whose committed offsets are kept
};

// Readers poll for the file: they must never see it half written.
bool write_atomically(const std::string& path, const std::string& content) {
  const std::string tmp = path + ".tmp." + std::to_string(getpid());
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << content << "\n";
    if (!out.flush()) return false;
  }
  return std::rename(tmp.c_str(), path.c_str()) == 0;
}

void log_cb(const rd_kafka_t*, int level, const char* fac, const char* buf) {
  if (level <= 4) notify::log::warn(buf, {{"facility", fac}});
}

// --- The record of a partition -------------------------------------------------------------
// One file per partition, records back to back, integers little-endian:
//   offset i64, timestamp i64 (-1: none), key, value, header count i32, per header name, value
// where a string is its length i32 (-1: null) and its bytes. A record cut short by a crash is
// dropped (and cut off the file) when the file is read at the next start.

using Bytes = std::optional<std::string>;

struct Record {
  std::int64_t offset = 0;
  std::int64_t timestamp = -1;
  Bytes key;
  Bytes value;
  std::vector<std::pair<std::string, Bytes>> headers;
};

void put_int(std::string& out, std::uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

void put_bytes(std::string& out, const char* data, std::int64_t len) {
  put_int(out, static_cast<std::uint32_t>(static_cast<std::int32_t>(data ? len : -1)), 4);
  if (data) out.append(data, static_cast<std::size_t>(len));
}

std::string encode(const rd_kafka_message_t& m) {
  std::string out;
  put_int(out, static_cast<std::uint64_t>(m.offset), 8);
  rd_kafka_timestamp_type_t type;
  const std::int64_t ts = rd_kafka_message_timestamp(&m, &type);
  put_int(out, static_cast<std::uint64_t>(type == RD_KAFKA_TIMESTAMP_NOT_AVAILABLE ? -1 : ts), 8);
  put_bytes(out, static_cast<const char*>(m.key), static_cast<std::int64_t>(m.key_len));
  put_bytes(out, static_cast<const char*>(m.payload), static_cast<std::int64_t>(m.len));
  rd_kafka_headers_t* headers = nullptr;
  if (rd_kafka_message_headers(&m, &headers) != RD_KAFKA_RESP_ERR_NO_ERROR) headers = nullptr;
  const std::size_t count = headers ? rd_kafka_header_cnt(headers) : 0;
  put_int(out, count, 4);
  for (std::size_t i = 0; i < count; ++i) {
    const char* name = nullptr;
    const void* value = nullptr;
    std::size_t size = 0;
    rd_kafka_header_get_all(headers, i, &name, &value, &size);
    put_bytes(out, name, static_cast<std::int64_t>(std::string(name).size()));
    put_bytes(out, static_cast<const char*>(value), static_cast<std::int64_t>(size));
  }
  return out;
}

class Reader {
 public:
  explicit Reader(const std::string& data) : data_(data) {}
  bool done() const { return pos_ == data_.size(); }
  std::size_t pos() const { return pos_; }
  bool get_int(std::uint64_t& v, int bytes) {
    if (data_.size() - pos_ < static_cast<std::size_t>(bytes)) return false;
    v = 0;
    for (int i = 0; i < bytes; ++i) {
      v |= static_cast<std::uint64_t>(static_cast<unsigned char>(data_[pos_ + i])) << (8 * i);
    }
    pos_ += static_cast<std::size_t>(bytes);
    return true;
  }
  bool get_bytes(Bytes& out) {
    std::uint64_t raw = 0;
    if (!get_int(raw, 4)) return false;
    const auto len = static_cast<std::int32_t>(static_cast<std::uint32_t>(raw));
    if (len < 0) {
      out.reset();
      return true;
    }
    if (data_.size() - pos_ < static_cast<std::size_t>(len)) return false;
    out = data_.substr(pos_, static_cast<std::size_t>(len));
    pos_ += static_cast<std::size_t>(len);
    return true;
  }
  bool get_record(Record& r) {
    std::uint64_t offset = 0, ts = 0, count = 0;
    if (!get_int(offset, 8) || !get_int(ts, 8) || !get_bytes(r.key) || !get_bytes(r.value) ||
        !get_int(count, 4)) {
      return false;
    }
    r.offset = static_cast<std::int64_t>(offset);
    r.timestamp = static_cast<std::int64_t>(ts);
    r.headers.clear();
    for (std::uint64_t i = 0; i < count; ++i) {
      Bytes name, value;
      if (!get_bytes(name) || !name || !get_bytes(value)) return false;
      r.headers.emplace_back(*name, value);
    }
    return true;
  }

 private:
  const std::string& data_;
  std::size_t pos_ = 0;
};

struct PartitionLog {
  std::string topic;
  std::int32_t partition = 0;
  fs::path path;
  std::FILE* file = nullptr;
  std::int64_t next_offset = 0;  // of the next message to record

  PartitionLog() = default;
  PartitionLog(const PartitionLog&) = delete;
  PartitionLog& operator=(const PartitionLog&) = delete;
  ~PartitionLog() {
    if (file) std::fclose(file);
  }
};

fs::path partition_path(const fs::path& dir, const std::string& topic, std::int32_t partition) {
  return dir / "topics" / topic / (std::to_string(partition) + ".log");
}

// Reads a partition's records (cutting off a torn last one) and opens the file for appending.
std::unique_ptr<PartitionLog> open_log(const fs::path& dir, const std::string& topic,
                                       std::int32_t partition, std::vector<Record>* records) {
  auto log = std::make_unique<PartitionLog>();
  log->topic = topic;
  log->partition = partition;
  log->path = partition_path(dir, topic, partition);
  fs::create_directories(log->path.parent_path());
  std::string data;
  {
    std::ifstream in(log->path, std::ios::binary);
    data.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  Reader reader(data);
  std::size_t good = 0;
  Record r;
  while (!reader.done() && reader.get_record(r)) {
    good = reader.pos();
    log->next_offset = r.offset + 1;
    if (records) records->push_back(r);
  }
  if (good != data.size()) {
    notify::log::warn("dropping a record cut short",
                      {{"topic", topic}, {"partition", partition}, {"bytes", data.size() - good}});
    fs::resize_file(log->path, good);
  }
  log->file = std::fopen(log->path.c_str(), "ab");
  if (!log->file) throw std::runtime_error("cannot open " + log->path.string());
  return log;
}

// --- Clients of the mock cluster -------------------------------------------------------------

struct KafkaDeleter {
  void operator()(rd_kafka_t* rk) const { rd_kafka_destroy(rk); }
};
using Kafka = std::unique_ptr<rd_kafka_t, KafkaDeleter>;
struct ListDeleter {
  void operator()(rd_kafka_topic_partition_list_t* l) const {
    rd_kafka_topic_partition_list_destroy(l);
  }
};
using PartitionList = std::unique_ptr<rd_kafka_topic_partition_list_t, ListDeleter>;

Kafka make_client(rd_kafka_type_t type, const std::string& bootstrap,
                  const std::map<std::string, std::string>& props) {
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  rd_kafka_conf_set_log_cb(conf, log_cb);
  char errstr[512];
  std::map<std::string, std::string> all = props;
  all["bootstrap.servers"] = bootstrap;
  for (const auto& [k, v] : all) {
    if (rd_kafka_conf_set(conf, k.c_str(), v.c_str(), errstr, sizeof errstr) != RD_KAFKA_CONF_OK) {
      rd_kafka_conf_destroy(conf);
      throw std::runtime_error(k + ": " + errstr);
    }
  }
  rd_kafka_t* rk = rd_kafka_new(type, conf, errstr, sizeof errstr);
  if (!rk) {
    rd_kafka_conf_destroy(conf);
    throw std::runtime_error(errstr);
  }
  return Kafka(rk);
}

// A consumer that only reads and commits a group's offsets: it never subscribes, so it never
// joins the group.
Kafka group_client(const std::string& bootstrap, const std::string& group) {
  return make_client(RD_KAFKA_CONSUMER, bootstrap,
                     {{"group.id", group}, {"enable.auto.commit", "false"}});
}

using Offsets = std::map<std::string, std::map<std::string, std::map<std::int32_t, std::int64_t>>>;

// Produces the recorded messages into the new cluster, in order per partition: the mock gives
// them the offsets 0, 1, ... they had, provided the record has no gaps (it is checked).
void replay(const std::string& bootstrap,
            const std::map<std::pair<std::string, std::int32_t>, std::vector<Record>>& records) {
  std::size_t total = 0;
  for (const auto& [tp, list] : records) total += list.size();
  if (total == 0) return;
  static std::atomic<int> failed{0};
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  rd_kafka_conf_set_log_cb(conf, log_cb);
  rd_kafka_conf_set_dr_msg_cb(conf, [](rd_kafka_t*, const rd_kafka_message_t* m, void*) {
    if (m->err) failed.fetch_add(1);
  });
  char errstr[512];
  // One request in flight: a retry can never overtake the batch before it.
  for (const auto& [k, v] :
       std::map<std::string, std::string>{{"bootstrap.servers", bootstrap},
                                          {"max.in.flight.requests.per.connection", "1"},
                                          {"acks", "all"},
                                          {"linger.ms", "5"}}) {
    rd_kafka_conf_set(conf, k.c_str(), v.c_str(), errstr, sizeof errstr);
  }
  Kafka producer(rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr));
  if (!producer) throw std::runtime_error(std::string("replay producer: ") + errstr);

  const auto started = Clock::now();
  for (const auto& [tp, list] : records) {
    std::int64_t expected = 0;
    for (const auto& r : list) {
      if (r.offset != expected) {
        notify::log::warn("gap in the record: later offsets move down", {{"topic", tp.first},
                                                                         {"partition", tp.second},
                                                                         {"expected", expected},
                                                                         {"recorded", r.offset}});
      }
      expected = r.offset + 1;
      rd_kafka_headers_t* headers = rd_kafka_headers_new(r.headers.size());
      for (const auto& [name, value] : r.headers) {
        rd_kafka_header_add(headers, name.data(), static_cast<ssize_t>(name.size()),
                            value ? value->data() : nullptr,
                            value ? static_cast<ssize_t>(value->size()) : 0);
      }
      // The macros of rd_kafka_producev cast their arguments: plain names only.
      const char* key = r.key ? r.key->data() : nullptr;
      const std::size_t key_len = r.key ? r.key->size() : 0;
      char* value = r.value ? const_cast<char*>(r.value->data()) : nullptr;
      const std::size_t value_len = r.value ? r.value->size() : 0;
      const std::int64_t timestamp = r.timestamp < 0 ? 0 : r.timestamp;
      while (true) {
        const rd_kafka_resp_err_t err = rd_kafka_producev(
            producer.get(), RD_KAFKA_V_TOPIC(tp.first.c_str()), RD_KAFKA_V_PARTITION(tp.second),
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_KEY(key, key_len),
            RD_KAFKA_V_VALUE(value, value_len), RD_KAFKA_V_TIMESTAMP(timestamp),
            RD_KAFKA_V_HEADERS(headers), RD_KAFKA_V_END);
        if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
          rd_kafka_poll(producer.get(), 100);
          continue;
        }
        if (err) {
          rd_kafka_headers_destroy(headers);
          throw std::runtime_error(std::string("replay: ") + rd_kafka_err2str(err));
        }
        break;
      }
    }
  }
  if (rd_kafka_flush(producer.get(), 60000) != RD_KAFKA_RESP_ERR_NO_ERROR || failed.load() > 0) {
    throw std::runtime_error("replay: " + std::to_string(failed.load()) +
                             " messages not delivered to the mock cluster");
  }
  for (const auto& [tp, list] : records) {
    if (list.empty()) continue;
    std::int64_t low = 0, high = 0;
    rd_kafka_query_watermark_offsets(producer.get(), tp.first.c_str(), tp.second, &low, &high,
                                     5000);
    if (high != list.back().offset + 1) {
      notify::log::warn("replayed partition ends elsewhere than recorded",
                        {{"topic", tp.first},
                         {"partition", tp.second},
                         {"end", high},
                         {"recorded_end", list.back().offset + 1}});
    }
  }
  notify::log::info(
      "recorded messages replayed",
      {{"messages", total},
       {"ms",
        std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started).count()}});
}

Offsets load_offsets(const fs::path& file) {
  Offsets out;
  std::ifstream in(file);
  if (!in) return out;
  try {
    const auto j = nlohmann::json::parse(in);
    for (const auto& [group, topics] : j.at("groups").items()) {
      for (const auto& [topic, parts] : topics.items()) {
        for (const auto& [p, offset] : parts.items()) {
          out[group][topic][std::stoi(p)] = offset.get<std::int64_t>();
        }
      }
    }
  } catch (const std::exception& e) {
    notify::log::warn("ignoring unreadable committed offsets",
                      {{"path", file.string()}, {"error", e.what()}});
    out.clear();
  }
  return out;
}

bool save_offsets(const fs::path& file, const Offsets& offsets) {
  nlohmann::json groups = nlohmann::json::object();
  for (const auto& [group, topics] : offsets) {
    for (const auto& [topic, parts] : topics) {
      for (const auto& [p, offset] : parts) groups[group][topic][std::to_string(p)] = offset;
    }
  }
  return write_atomically(file.string(), nlohmann::json{{"groups", groups}}.dump(2));
}

// --- The recorder ----------------------------------------------------------------------------
// Follows every partition of every topic of the cluster (new topics within a second) and
// appends what arrives to the partition's file; every second, and when it stops, writes the
// groups' committed offsets.
class Recorder {
 public:
  Recorder(fs::path dir, std::string bootstrap, const std::vector<std::string>& groups,
           Offsets offsets,
           std::map<std::pair<std::string, std::int32_t>, std::unique_ptr<PartitionLog>> logs)
      : dir_(std::move(dir)),
        bootstrap_(std::move(bootstrap)),
        offsets_(std::move(offsets)),
        logs_(std::move(logs)) {
    for (const auto& g : groups) groups_.insert(g);
    for (const auto& [g, topics] : offsets_) groups_.insert(g);
    // A group id only so that librdkafka's consumer poll works: the recorder assigns its
    // partitions itself and commits nothing, so the group never exists on the broker.
    consumer_ = make_client(RD_KAFKA_CONSUMER, bootstrap_,
                            {{"group.id", "dev_kafka_broker.recorder"},
                             {"enable.auto.commit", "false"},
                             {"enable.auto.offset.store", "false"},
                             {"auto.offset.reset", "earliest"},
                             {"isolation.level", "read_uncommitted"},
                             {"fetch.wait.max.ms", "50"}});
    for (const auto& g : groups_) group_clients_[g] = group_client(bootstrap_, g);
  }

  // Commits the kept offsets, before anyone else talks to the cluster (the mock takes a commit
  // from outside a group only while the group does not exist yet).
  void restore_offsets() {
    for (const auto& [group, topics] : offsets_) {
      PartitionList list(rd_kafka_topic_partition_list_new(0));
      for (const auto& [topic, parts] : topics) {
        for (const auto& [p, offset] : parts) {
          rd_kafka_topic_partition_list_add(list.get(), topic.c_str(), p)->offset = offset;
        }
      }
      if (list->cnt == 0) continue;
      const auto err = rd_kafka_commit(group_clients_.at(group).get(), list.get(), 0);
      if (err) {
        throw std::runtime_error("restoring the offsets of group " + group + ": " +
                                 rd_kafka_err2str(err));
      }
      notify::log::info("committed offsets restored",
                        {{"group", group}, {"partitions", list->cnt}});
    }
  }

  void start() {
    refresh_partitions();
    thread_ = std::thread([this] { run(); });
  }

  void stop() {
    stop_.store(true);
    if (thread_.joinable()) thread_.join();
    if (consumer_) rd_kafka_consumer_close(consumer_.get());
    consumer_.reset();
    for (auto& [g, client] : group_clients_) rd_kafka_consumer_close(client.get());
    group_clients_.clear();
    logs_.clear();
  }

 private:
  void run() {
    auto next_check = Clock::now();
    while (!stop_.load()) {
      poll_once(std::chrono::milliseconds(100));
      if (Clock::now() >= next_check) {
        refresh_partitions();
        snapshot_offsets();
        next_check = Clock::now() + std::chrono::seconds(1);
      }
    }
    // What arrived until now is recorded too: up to each partition's end, for a few seconds.
    std::map<PartitionLog*, std::int64_t> ends;
    for (auto& [tp, log] : logs_) {
      std::int64_t low = 0, high = 0;
      if (!rd_kafka_query_watermark_offsets(consumer_.get(), tp.first.c_str(), tp.second, &low,
                                            &high, 1000)) {
        ends[log.get()] = high;
      }
    }
    const auto deadline = Clock::now() + std::chrono::seconds(5);
    auto behind = [&] {
      for (const auto& [log, end] : ends) {
        if (log->next_offset < end) return true;
      }
      return false;
    };
    while (behind() && Clock::now() < deadline) poll_once(std::chrono::milliseconds(100));
    if (behind()) notify::log::warn("stopping before the last messages were recorded");
    snapshot_offsets();
  }

  void poll_once(std::chrono::milliseconds timeout) {
    rd_kafka_message_t* m =
        rd_kafka_consumer_poll(consumer_.get(), static_cast<int>(timeout.count()));
    while (m) {
      const bool ok = m->err == RD_KAFKA_RESP_ERR_NO_ERROR;
      record(*m);
      rd_kafka_message_destroy(m);
      if (!ok) return;  // an error does not go away by asking again at once
      m = rd_kafka_consumer_poll(consumer_.get(), 0);
    }
  }

  void record(const rd_kafka_message_t& m) {
    if (m.err) {
      if (m.err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
        notify::log::warn("recorder: consume error", {{"error", rd_kafka_err2str(m.err)}});
      }
      return;
    }
    const auto it = logs_.find({rd_kafka_topic_name(m.rkt), m.partition});
    if (it == logs_.end()) return;
    PartitionLog& log = *it->second;
    if (m.offset < log.next_offset) return;  // read again after a reassignment
    if (m.offset > log.next_offset) {
      notify::log::warn("recorder: messages missed (the mock dropped them before they were read)",
                        {{"topic", log.topic},
                         {"partition", log.partition},
                         {"from", log.next_offset},
                         {"to", m.offset}});
    }
    const std::string bytes = encode(m);
    // Flushed at once: a crash of this process loses nothing written so far.
    if (std::fwrite(bytes.data(), 1, bytes.size(), log.file) != bytes.size() ||
        std::fflush(log.file) != 0) {
      notify::log::error("recorder: cannot write", {{"path", log.path.string()}});
      return;
    }
    log.next_offset = m.offset + 1;
  }

  // Topics created since (by a producer or a consumer asking for them) are followed too.
  void refresh_partitions() {
    const rd_kafka_metadata_t* md = nullptr;
    if (rd_kafka_metadata(consumer_.get(), 1, nullptr, &md, 2000) != RD_KAFKA_RESP_ERR_NO_ERROR) {
      return;
    }
    bool added = false;
    for (int t = 0; t < md->topic_cnt; ++t) {
      const auto& topic = md->topics[t];
      if (topic.err || std::string(topic.topic).rfind("__", 0) == 0) continue;
      for (int p = 0; p < topic.partition_cnt; ++p) {
        const std::pair<std::string, std::int32_t> key{topic.topic, topic.partitions[p].id};
        if (logs_.count(key)) continue;
        logs_[key] = open_log(dir_, key.first, key.second, nullptr);
        added = true;
      }
    }
    rd_kafka_metadata_destroy(md);
    if (!added && assigned_) return;
    PartitionList list(rd_kafka_topic_partition_list_new(static_cast<int>(logs_.size())));
    for (const auto& [tp, log] : logs_) {
      rd_kafka_topic_partition_list_add(list.get(), tp.first.c_str(), tp.second)->offset =
          log->next_offset;
    }
    if (const auto err = rd_kafka_assign(consumer_.get(), list.get())) {
      notify::log::warn("recorder: cannot assign", {{"error", rd_kafka_err2str(err)}});
      return;
    }
    assigned_ = true;
  }

  void snapshot_offsets() {
    if (logs_.empty()) return;
    Offsets next = offsets_;
    for (const auto& [group, client] : group_clients_) {
      PartitionList list(rd_kafka_topic_partition_list_new(static_cast<int>(logs_.size())));
      for (const auto& [tp, log] : logs_) {
        rd_kafka_topic_partition_list_add(list.get(), tp.first.c_str(), tp.second);
      }
      if (rd_kafka_committed(client.get(), list.get(), 2000) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        continue;  // kept as it was: the next round asks again
      }
      for (int i = 0; i < list->cnt; ++i) {
        const auto& e = list->elems[i];
        if (e.err == RD_KAFKA_RESP_ERR_NO_ERROR && e.offset >= 0) {
          next[group][e.topic][e.partition] = e.offset;
        }
      }
    }
    if (next == offsets_ && saved_once_) return;
    if (save_offsets(dir_ / "offsets.json", next)) {
      offsets_ = std::move(next);
      saved_once_ = true;
    } else {
      notify::log::error("cannot write the committed offsets",
                         {{"path", (dir_ / "offsets.json").string()}});
    }
  }

  fs::path dir_;
  std::string bootstrap_;
  std::set<std::string> groups_;
  Offsets offsets_;
  std::map<std::pair<std::string, std::int32_t>, std::unique_ptr<PartitionLog>> logs_;
  Kafka consumer_;
  std::map<std::string, Kafka> group_clients_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  bool assigned_ = false;
  bool saved_once_ = false;
};

// Topic -> partition count of what the data folder holds.
std::map<std::string, int> recorded_topics(const fs::path& dir) {
  std::map<std::string, int> out;
  const fs::path topics = dir / "topics";
  if (!fs::is_directory(topics)) return out;
  for (const auto& t : fs::directory_iterator(topics)) {
    if (!t.is_directory()) continue;
    int count = 0;
    for (const auto& f : fs::directory_iterator(t.path())) {
      if (f.path().extension() != ".log") continue;
      try {
        count = std::max(count, std::stoi(f.path().stem().string()) + 1);
      } catch (const std::exception&) {
      }
    }
    if (count > 0) out[t.path().filename().string()] = count;
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  Args args;
  CLI::App app{
      "A development Kafka broker: librdkafka's mock cluster, its data kept with --data-dir."};
  app.add_option("--bootstrap-file", args.bootstrap_file, "where to write the broker's address");
  app.add_option("--partitions", args.partitions, "partitions of each topic created")
      ->check(CLI::Range(1, 1000));
  app.add_option("--topics", args.topics, "topics created at start (a,b)")->delimiter(',');
  app.add_option("--data-dir", args.data_dir, "where the broker keeps its data (none: in memory)");
  app.add_option("--groups", args.groups, "consumer groups whose committed offsets are kept (a,b)")
      ->delimiter(',');
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  notify::log::init("dev_kafka_broker", notify::log::Level::kInfo);

  // Block the stop signals before librdkafka starts its threads (they inherit the mask), so that
  // sigwait() below is the only place they are delivered.
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);

  // The mock cluster needs a client instance to live in; it is not used otherwise.
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  rd_kafka_conf_set_log_cb(conf, log_cb);
  char errstr[512];
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
  if (rk == nullptr) {
    rd_kafka_conf_destroy(conf);
    notify::log::error("cannot create the client for the mock cluster", {{"error", errstr}});
    return 1;
  }
  rd_kafka_mock_cluster_t* cluster = rd_kafka_mock_cluster_new(rk, 1);
  if (cluster == nullptr) {
    notify::log::error("cannot create the mock cluster");
    rd_kafka_destroy(rk);
    return 1;
  }
  const std::string bootstrap = rd_kafka_mock_cluster_bootstraps(cluster);
  auto fail = [&](const std::string& what, const nlohmann::json& fields) {
    notify::log::error(what, fields);
    rd_kafka_mock_cluster_destroy(cluster);
    rd_kafka_destroy(rk);
    return 1;
  };

  std::map<std::string, int> topics;
  for (const auto& topic : args.topics) topics[topic] = args.partitions;
  const fs::path dir = args.data_dir;
  if (!args.data_dir.empty()) {
    for (const auto& [topic, count] : recorded_topics(dir)) {
      topics[topic] = std::max(topics[topic], count);
    }
  }
  for (const auto& [topic, count] : topics) {
    if (const auto err = rd_kafka_mock_topic_create(cluster, topic.c_str(), count, 1)) {
      return fail("cannot create topic", {{"topic", topic}, {"error", rd_kafka_err2name(err)}});
    }
  }

  std::unique_ptr<Recorder> recorder;
  if (!args.data_dir.empty()) {
    try {
      fs::create_directories(dir);
      std::map<std::pair<std::string, std::int32_t>, std::vector<Record>> records;
      std::map<std::pair<std::string, std::int32_t>, std::unique_ptr<PartitionLog>> logs;
      for (const auto& [topic, count] : recorded_topics(dir)) {
        for (std::int32_t p = 0; p < count; ++p) {
          auto& list = records[{topic, p}];
          logs[{topic, p}] = open_log(dir, topic, p, &list);
        }
      }
      replay(bootstrap, records);
      recorder = std::make_unique<Recorder>(dir, bootstrap, args.groups,
                                            load_offsets(dir / "offsets.json"), std::move(logs));
      recorder->restore_offsets();
      recorder->start();
    } catch (const std::exception& e) {
      if (recorder) recorder->stop();
      return fail("cannot restore the kept data", {{"data_dir", args.data_dir},
                                                   {"error", e.what()},
                                                   {"hint", "make clean-data starts afresh"}});
    }
  }

  if (!args.bootstrap_file.empty() && !write_atomically(args.bootstrap_file, bootstrap)) {
    if (recorder) recorder->stop();
    return fail("cannot write the bootstrap file", {{"path", args.bootstrap_file}});
  }
  std::cout << "KAFKA_BOOTSTRAP_SERVERS=" << bootstrap << std::endl;
  std::vector<std::string> topic_names;
  for (const auto& [topic, count] : topics) topic_names.push_back(topic);
  notify::log::info(
      "mock Kafka broker listening",
      {{"bootstrap_servers", bootstrap},
       {"topics", topic_names},
       {"partitions", args.partitions},
       {"data_dir", args.data_dir.empty() ? nlohmann::json() : nlohmann::json(args.data_dir)}});

  int signal = 0;
  sigwait(&stop, &signal);
  notify::log::info("stopping", {{"signal", signal}});
  if (!args.bootstrap_file.empty()) std::remove(args.bootstrap_file.c_str());
  if (recorder) recorder->stop();
  rd_kafka_mock_cluster_destroy(cluster);
  rd_kafka_destroy(rk);
  return 0;
}
