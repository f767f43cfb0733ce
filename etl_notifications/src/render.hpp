#pragma once
// Render: Mustache templates from files under the templates directory
// (documentation/templates.md).
//
// A template is a folder (e.g. templates/email/welcome/) holding subject.mustache,
// text.mustache and html.mustache; a locale may override any part in a subfolder
// (templates/email/welcome/de/subject.mustache), with fallback "de-AT" -> "de" -> default.
// The channel (the name's first segment) may have a layout that wraps the rendered text and
// HTML: templates/<channel>/_layout/{text,html}.mustache, per locale like the parts. Partials
// live in templates/_partials/<name>.mustache (per locale in _partials/<locale>/) and are
// used as {{> name}}. A file (or folder) that is a symlink leading out of the templates
// directory is refused with a TemplateError.

#include <filesystem>
#include <initializer_list>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>

#include <nlohmann/json.hpp>

#include "notify/posting.hpp"

namespace kainjow::mustache {
template <typename StringType>
class basic_data;
}

namespace etl {

class LazyValues;  // a render's values, converted for kainjow where templates look them up
class ValueCache;  // the values of shared layers, converted for kainjow once for many renders

// A template is missing, its name is not allowed, or it does not parse or render; what()
// names the template or the file.
class TemplateError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Not thread-safe: parsed files are cached on first use.
class TemplateStore {
 public:
  explicit TemplateStore(std::string root);
  ~TemplateStore();

  // Subject and text are rendered verbatim, HTML with every value HTML-escaped. The subject is
  // one line (line breaks become spaces). The HTML part is optional (empty when absent). When
  // the channel has a layout, it is rendered with the same context plus `content` (the rendered
  // part, to be inserted with {{{content}}}) and `subject`.
  notify::Content render(const std::string& name, const std::string& locale,
                         const nlohmann::json& context);
  // The same with the context in layers (JSON objects), the first layer that has a top-level
  // key giving its value, as if the later ones were merged under it: what every recipient of a
  // mailing shares is not copied for each of them. The `shared` layers come after `layers` and
  // are those that many renders are given (a mailing's request): the values templates look up
  // in them are converted for kainjow once and used again while they are the same JSON.
  notify::Content render(const std::string& name, const std::string& locale_name,
                         std::initializer_list<const nlohmann::json*> layers,
                         std::initializer_list<const nlohmann::json*> shared = {});
  // The same with the render's own values (a recipient's) given as kainjow data, an object
  // (kainjow/mustache.hpp), in place of `layers`: built for each recipient, they are not built
  // as JSON first and then converted.
  using Values = kainjow::mustache::basic_data<std::string>;
  notify::Content render(const std::string& name, const std::string& locale_name, const Values& own,
                         std::initializer_list<const nlohmann::json*> shared);

  // Segments of lowercase letters, digits, '_' and '-' joined by '/', none starting with '_':
  // a name never leaves the templates directory and never names a layout or partial folder.
  static bool valid_name(const std::string& name);

  const std::string& root() const { return root_; }

 private:
  struct Prepared;
  struct Compiled;
  struct Partials;
  struct Locale;
  enum class Part { kSubject, kText, kHtml };
  Compiled* load(const std::string& path, bool escape_html);  // nullptr: no such file
  // What render() works out for a locale once: its partial folders, which file each part of a
  // template is, and the parsed template it renders with.
  Locale& locale(const std::string& name);
  Compiled* localized(Locale& locale, const std::string& folder,
                      Part part);  // nullptr: neither localized nor default
  const Partials& partials();
  using Data = kainjow::mustache::basic_data<std::string>;
  notify::Content render_with(const std::string& name, const std::string& locale_name,
                              LazyValues& values);
  std::string render_one(Compiled& compiled, Locale& locale, LazyValues& values, const Data* extra);

  std::string root_;
  std::filesystem::path canonical_root_;  // symlinks resolved: where every file must lie
  std::map<std::string, std::unique_ptr<Compiled>> cache_;  // by path; null when absent
  std::unique_ptr<Partials> partials_;                      // loaded on first render
  std::map<std::string, std::unique_ptr<Locale>, std::less<>> locales_;  // bounded
  std::unique_ptr<ValueCache> value_cache_;
};

}  // namespace etl
