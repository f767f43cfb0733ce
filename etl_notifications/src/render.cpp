#include "render.hpp"

#include <kainjow/mustache.hpp>

#include <fstream>
#include <sstream>

namespace etl {
namespace {

namespace mustache = kainjow::mustache;

mustache::data to_data(const nlohmann::json& value) {
  switch (value.type()) {
    case nlohmann::json::value_t::object: {
      mustache::data out{mustache::data::type::object};
      for (const auto& [key, item] : value.items()) out.set(key, to_data(item));
      return out;
    }
    case nlohmann::json::value_t::array: {
      mustache::data out{mustache::data::type::list};
      for (const auto& item : value) out.push_back(to_data(item));
      return out;
    }
    case nlohmann::json::value_t::string: return mustache::data{value.get<std::string>()};
    case nlohmann::json::value_t::boolean: return mustache::data{value.get<bool>()};
    case nlohmann::json::value_t::null: return mustache::data{false};
    default: return mustache::data{value.dump()};  // numbers
  }
}

constexpr const char* kLocaleChars =
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_";

std::string verbatim(const std::string& s) { return s; }

}  // namespace

// Parsed once, rendered many times; the escape follows the part (HTML or verbatim).
struct TemplateStore::Compiled {
  std::string path;
  mustache::mustache tmpl;
};

TemplateStore::TemplateStore(std::string root) : root_(std::move(root)) {}
TemplateStore::~TemplateStore() = default;

bool TemplateStore::valid_name(const std::string& name) {
  if (name.empty() || name.front() == '/' || name.back() == '/') return false;
  char previous = '/';
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-' ||
                    c == '/';
    if (!ok) return false;
    if (c == '/' && previous == '/') return false;
    previous = c;
  }
  return true;
}

TemplateStore::Compiled* TemplateStore::load(const std::string& path, bool escape_html) {
  auto it = cache_.find(path);
  if (it != cache_.end()) return it->second.get();
  std::unique_ptr<Compiled> compiled;
  std::ifstream in(path, std::ios::binary);
  if (in) {
    std::ostringstream text;
    text << in.rdbuf();
    compiled = std::make_unique<Compiled>(Compiled{path, mustache::mustache{text.str()}});
    if (!compiled->tmpl.is_valid()) {
      throw TemplateError("template " + path.substr(root_.size() + 1) + ": " +
                          compiled->tmpl.error_message());
    }
    if (!escape_html) compiled->tmpl.set_custom_escape(verbatim);
  }
  return cache_.emplace(path, std::move(compiled)).first->second.get();
}

TemplateStore::Compiled* TemplateStore::part(const std::string& name, const std::string& locale,
                                             const std::string& part, bool required) {
  const bool escape_html = part == "html";
  const std::string base = root_ + "/" + name + "/";
  std::string candidate = locale;
  while (!candidate.empty()) {
    if (candidate.find_first_not_of(kLocaleChars) == std::string::npos) {
      if (Compiled* c = load(base + candidate + "/" + part + ".mustache", escape_html)) return c;
    }
    auto dash = candidate.find_last_of("-_");
    candidate = dash == std::string::npos ? "" : candidate.substr(0, dash);
  }
  if (Compiled* c = load(base + part + ".mustache", escape_html)) return c;
  if (required) throw TemplateError("template '" + name + "' has no " + part + ".mustache");
  return nullptr;
}

notify::Content TemplateStore::render(const std::string& name, const std::string& locale,
                                      const nlohmann::json& context) {
  if (!valid_name(name)) throw TemplateError("template name not allowed: '" + name + "'");
  const mustache::data data = to_data(context);

  auto render_part = [&](const std::string& which, bool required) {
    Compiled* c = part(name, locale, which, required);
    if (c == nullptr) return std::string();
    std::string out = c->tmpl.render(data);
    if (!c->tmpl.is_valid()) {
      throw TemplateError("template " + c->path.substr(root_.size() + 1) + ": " +
                          c->tmpl.error_message());
    }
    return out;
  };

  notify::Content content;
  content.subject = render_part("subject", true);
  // A subject is one line: a trailing newline in the file is not part of it.
  while (!content.subject.empty() &&
         (content.subject.back() == '\n' || content.subject.back() == '\r')) {
    content.subject.pop_back();
  }
  content.text = render_part("text", true);
  content.html = render_part("html", false);
  return content;
}

}  // namespace etl
