#pragma once
// Postings on their way to RabbitMQ: rendered postings wait here until the publisher takes
// them, and each one's confirm is booked on its event's ticket. A posting RabbitMQ returned
// unroutable or nacked too often is kept, not lost: it goes in line again after a pause, and
// its event's offset is not stored until it is acked.

#include <chrono>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "job.hpp"
#include "metrics.hpp"
#include "notify/amqp.hpp"
#include "ports.hpp"

namespace etl {

class Publishing {
 public:
  // Every posting of a sealed event is confirmed: its offset is finished.
  using Finished = std::function<void(const Ticket&)>;

  Publishing(PostingPublisher& publisher, EtlMetrics& metrics, const MonotonicClock& monotonic,
             Finished finished)
      : publisher_(publisher),
        metrics_(metrics),
        monotonic_(monotonic),
        finished_(std::move(finished)) {}

  // A rendered posting of the ticket's event; counted on the ticket until confirmed.
  void add(notify::amqp::Message message, const std::shared_ptr<Ticket>& ticket);
  // Rendered postings the publisher has not taken yet.
  std::size_t waiting() const { return waiting_.size(); }
  // Hands every waiting posting to the publisher. Throws notify::amqp::Error: the posting in
  // hand stays with the publisher, which sends it again after connect().
  void publish_waiting();
  // Postings returned or nacked since the last call go in line again; returns why the first
  // of them came back (intake pauses on it), nothing when none came back.
  std::optional<std::string> requeue_given_back();
  // Partitions were revoked: their waiting postings are dropped (the new owner makes them).
  void drop(const std::function<bool(const notify::kafka::TopicPartition&)>& revoked);

 private:
  struct Outgoing {
    notify::amqp::Message message;
    std::shared_ptr<Ticket> ticket;
    std::chrono::steady_clock::time_point published_at{};  // handed to the publisher
  };
  void confirmed(const Outgoing& copy, PostingPublisher::Result result);

  PostingPublisher& publisher_;
  EtlMetrics& metrics_;
  const MonotonicClock& monotonic_;
  Finished finished_;
  std::deque<Outgoing> waiting_;      // rendered, not yet handed to the publisher
  std::vector<Outgoing> given_back_;  // returned unroutable or nacked too often
  std::string given_back_reason_;     // why the first of given_back_ came back
};

}  // namespace etl
