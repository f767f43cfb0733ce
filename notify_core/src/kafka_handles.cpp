// The shared part of the Kafka edge: librdkafka's error codes become notify::kafka::Error here,
// once, and librdkafka's own logging goes through notify::log.

#include "kafka_handles.hpp"

#include <cstring>

#include "notify/log.hpp"

namespace notify::kafka::impl {
namespace {

// Errors about the message itself: no retry can make the broker take it.
bool permanent_error(rd_kafka_resp_err_t err) {
  switch (err) {
    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_INVALID_MSG_SIZE:
    case RD_KAFKA_RESP_ERR_INVALID_MSG:
    case RD_KAFKA_RESP_ERR_INVALID_RECORD:
    case RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_INVALID_TIMESTAMP:
    case RD_KAFKA_RESP_ERR__BAD_MSG:
    case RD_KAFKA_RESP_ERR__INVALID_ARG:
      return true;
    default:
      return false;
  }
}

// librdkafka logs with syslog levels from its own threads.
void log_cb(const rd_kafka_t* rk, int level, const char* fac, const char* buf) {
  nlohmann::json fields = {{"client", rd_kafka_name(rk)}, {"facility", fac}};
  // Connection failures repeat until the broker is back; the error callback reports them once.
  if (std::strcmp(fac, "FAIL") == 0) level = 7;
  if (level <= 3) {
    log::error(buf, fields);
  } else if (level == 4) {
    log::warn(buf, fields);
  } else if (level <= 6) {
    log::info(buf, fields);
  } else {
    log::debug(buf, fields);
  }
}

}  // namespace

std::string err_name(rd_kafka_resp_err_t err) { return rd_kafka_err2name(err); }

[[noreturn]] void fail(const std::string& what, rd_kafka_resp_err_t err) {
  throw Error(what + ": " + rd_kafka_err2str(err) + " (" + err_name(err) + ")",
              permanent_error(err));
}

void set(rd_kafka_conf_t* conf, const std::string& name, const std::string& value) {
  char errstr[512];
  if (rd_kafka_conf_set(conf, name.c_str(), value.c_str(), errstr, sizeof errstr) !=
      RD_KAFKA_CONF_OK) {
    throw Error("Kafka property " + name + "=" + value + ": " + errstr);
  }
}

bool is_transport_noise(rd_kafka_resp_err_t err) {
  return err == RD_KAFKA_RESP_ERR__TRANSPORT || err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN ||
         err == RD_KAFKA_RESP_ERR__RESOLVE;
}

ConfPtr base_conf(const std::string& bootstrap_servers) {
  ConfPtr conf(rd_kafka_conf_new());
  rd_kafka_conf_set_log_cb(conf.get(), log_cb);
  set(conf.get(), "bootstrap.servers", bootstrap_servers);
  return conf;
}

HandlePtr new_handle(rd_kafka_type_t type, ConfPtr conf) {
  char errstr[512];
  rd_kafka_t* rk = rd_kafka_new(type, conf.get(), errstr, sizeof errstr);
  if (rk == nullptr) throw Error(std::string("Kafka client: ") + errstr);
  (void)conf.release();  // rd_kafka_new took ownership
  return HandlePtr(rk);
}

std::optional<std::int64_t> timestamp_of(const rd_kafka_message_t* msg) {
  rd_kafka_timestamp_type_t type;
  const std::int64_t ts = rd_kafka_message_timestamp(msg, &type);
  if (type == RD_KAFKA_TIMESTAMP_NOT_AVAILABLE || ts < 0) return std::nullopt;
  return ts;
}

Message to_message(const rd_kafka_message_t* msg) {
  Message out;
  out.topic = rd_kafka_topic_name(msg->rkt);
  out.partition = msg->partition;
  out.offset = msg->offset;
  if (msg->key != nullptr) out.key.emplace(static_cast<const char*>(msg->key), msg->key_len);
  if (msg->payload != nullptr) out.value.assign(static_cast<const char*>(msg->payload), msg->len);
  out.timestamp_ms = timestamp_of(msg);
  rd_kafka_headers_t* hdrs = nullptr;  // owned by the message
  if (rd_kafka_message_headers(msg, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR) {
    const char* name;
    const void* value;
    size_t size;
    for (size_t i = 0;
         rd_kafka_header_get_all(hdrs, i, &name, &value, &size) == RD_KAFKA_RESP_ERR_NO_ERROR;
         ++i) {
      out.headers.emplace_back(name, value == nullptr
                                         ? std::string()
                                         : std::string(static_cast<const char*>(value), size));
    }
  }
  return out;
}

}  // namespace notify::kafka::impl
