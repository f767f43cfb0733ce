#pragma once
// Render: Mustache templates from files under the templates directory.
// A template is a folder (e.g. templates/email/welcome/) holding subject.mustache,
// text.mustache and html.mustache; a locale may override any part in a subfolder
// (templates/email/welcome/de/subject.mustache), with fallback "de-AT" -> "de" -> default.

#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>

#include <nlohmann/json.hpp>

#include "notify/posting.hpp"

namespace etl {

// A template is missing, its name is not allowed, or it does not parse or render.
class TemplateError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class TemplateStore {
 public:
  explicit TemplateStore(std::string root);
  ~TemplateStore();

  // Subject and text are rendered verbatim; in HTML every value is HTML-escaped.
  notify::Content render(const std::string& name, const std::string& locale,
                         const nlohmann::json& context);

  // Only lowercase letters, digits, '_', '-' and '/' between segments: a name never leaves the
  // templates directory.
  static bool valid_name(const std::string& name);

 private:
  struct Compiled;
  Compiled* load(const std::string& path, bool escape_html);  // nullptr: no such file
  Compiled* part(const std::string& name, const std::string& locale, const std::string& part,
                 bool required);

  std::string root_;
  std::map<std::string, std::unique_ptr<Compiled>> cache_;  // by path; null when absent
};

}  // namespace etl
