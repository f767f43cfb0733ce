#include "edges.hpp"

#include <memory>
#include <random>
#include <thread>

namespace worker {

SystemSteadyClock::TimePoint SystemSteadyClock::now() const {
  return std::chrono::steady_clock::now();
}

void SystemSteadyClock::sleep_for(std::chrono::milliseconds duration) {
  std::this_thread::sleep_for(duration);
}

std::function<double()> system_random01() {
  auto rng = std::make_shared<std::mt19937_64>(std::random_device{}());
  return [rng] { return std::uniform_real_distribution<double>(0.0, 1.0)(*rng); };
}

}  // namespace worker
