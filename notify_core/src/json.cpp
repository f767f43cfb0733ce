#include "notify/json.hpp"

namespace notify {

std::size_t json_depth(std::string_view text, std::size_t stop_above) {
  std::size_t depth = 0;
  std::size_t deepest = 0;
  bool in_string = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') {
        ++i;  // the escaped character cannot end the string
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    switch (c) {
      case '"':
        in_string = true;
        break;
      case '[':
      case '{':
        if (++depth > deepest) {
          deepest = depth;
          if (deepest > stop_above) return deepest;
        }
        break;
      case ']':
      case '}':
        // Unbalanced closers are the parser's business; the depth never goes below zero.
        if (depth > 0) --depth;
        break;
      default:
        break;
    }
  }
  return deepest;
}

nlohmann::json parse_json(std::string_view text, const JsonLimits& limits) {
  if (const auto nul = text.find('\0'); nul != std::string_view::npos) {
    throw JsonError("not valid JSON: NUL byte at offset " + std::to_string(nul));
  }
  if (json_depth(text, limits.max_depth) > limits.max_depth) {
    throw JsonError("JSON nested deeper than MAX_JSON_DEPTH=" + std::to_string(limits.max_depth));
  }
  // Strict: the whole input must be the one value (trailing bytes are an error).
  nlohmann::json value = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (value.is_discarded()) throw JsonError("not valid JSON");
  return value;
}

std::string shorten(std::string_view text, std::size_t max_bytes) {
  if (text.size() <= max_bytes) return std::string(text);
  std::size_t cut = max_bytes;
  // Back up over UTF-8 continuation bytes (10xxxxxx) so that no character is split.
  while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) --cut;
  std::string out(text.substr(0, cut));
  out += "… (" + std::to_string(text.size()) + " bytes)";
  return out;
}

std::string quote(std::string_view text, std::size_t max_bytes) {
  const nlohmann::json value = shorten(text, max_bytes);
  // Invalid UTF-8 (from a Kafka key, say) is replaced rather than thrown on.
  return value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace notify
