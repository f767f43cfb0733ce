#include "render.hpp"

#include <kainjow/mustache.hpp>

#include <algorithm>
#include <array>
#include <bit>
#include <charconv>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <sstream>
#include <string_view>
#include <vector>

namespace etl {
namespace {

namespace fs = std::filesystem;
namespace mustache = kainjow::mustache;

mustache::data to_data(const nlohmann::json& value) {
  switch (value.type()) {
    case nlohmann::json::value_t::object: {
      mustache::data out{mustache::data::type::object};
      // Moved in: data::set would copy each value, and so every nested value once per level.
      for (const auto& [key, item] : value.items()) out[key] = to_data(item);
      return out;
    }
    case nlohmann::json::value_t::array: {
      mustache::data out{mustache::data::type::list};
      for (const auto& item : value) out.push_back(to_data(item));
      return out;
    }
    case nlohmann::json::value_t::string:
      return mustache::data{value.get_ref<const std::string&>()};
    case nlohmann::json::value_t::boolean:
      return mustache::data{value.get<bool>()};
    case nlohmann::json::value_t::null:
      return mustache::data{false};
    default:
      return mustache::data{value.dump()};  // numbers
  }
}

constexpr const char* kLocaleChars =
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_";

// "de-AT" -> {"de-AT", "de"}; candidates with other characters (".", "/") are skipped, so a
// locale never leaves the folder it is looked up in.
std::vector<std::string> locale_chain(const std::string& locale) {
  std::vector<std::string> out;
  std::string candidate = locale;
  while (!candidate.empty()) {
    if (candidate.find_first_not_of(kLocaleChars) == std::string::npos) out.push_back(candidate);
    const auto dash = candidate.find_last_of("-_");
    candidate = dash == std::string::npos ? "" : candidate.substr(0, dash);
  }
  return out;
}

std::optional<std::string> read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// Whether `file`, with every symlink on its way resolved, lies inside `root` (canonical).
bool inside(const fs::path& root, const fs::path& file) {
  std::error_code ec;
  const fs::path real = fs::weakly_canonical(file, ec);
  if (ec) return false;
  const auto [r, f] = std::mismatch(root.begin(), root.end(), real.begin(), real.end());
  return r == root.end();
}

std::string outside_error(const std::string& rel) {
  return "template " + rel + ": leads outside the templates folder (a symlink?)";
}

std::string verbatim(const std::string& s) { return s; }

// A subject is one header line: the file's trailing newline is not part of it, and a line
// break inside a value must not start a new header.
std::string one_line(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    const bool brk = c == '\n' || c == '\r';
    if (!brk)
      out.push_back(c);
    else if (out.empty() || out.back() != ' ')
      out.push_back(' ');
  }
  return out;
}

// What kainjow renders into in place of an ostringstream: straight into the result.
struct StringSink {
  std::string& out;
  StringSink& operator<<(const std::string& piece) {
    out += piece;
    return *this;
  }
};

using PartialLookup = std::function<const mustache::data*(const std::string&)>;

// Names the static text pieces of a compiled template ({{{\x01 N}}}, see merge_static_text).
constexpr char kPieceMark = '\x01';

// Whether two JSON values convert to the same kainjow data: the same types and values. Stricter
// than JSON's equality, for which 1 and 1.0 (or 0.0 and -0.0) are equal, yet which to_data
// writes as "1" and "1.0".
bool same_values(const nlohmann::json& a, const nlohmann::json& b) {
  using value_t = nlohmann::json::value_t;
  if (a.type() != b.type()) return false;
  switch (a.type()) {
    case value_t::object: {
      const auto& x = a.get_ref<const nlohmann::json::object_t&>();
      const auto& y = b.get_ref<const nlohmann::json::object_t&>();
      return x.size() == y.size() &&
             std::equal(x.begin(), x.end(), y.begin(), [](const auto& p, const auto& q) {
               return p.first == q.first && same_values(p.second, q.second);
             });
    }
    case value_t::array: {
      const auto& x = a.get_ref<const nlohmann::json::array_t&>();
      const auto& y = b.get_ref<const nlohmann::json::array_t&>();
      return x.size() == y.size() && std::equal(x.begin(), x.end(), y.begin(), same_values);
    }
    case value_t::number_float:  // bit for bit: 0.0 and -0.0 are written differently
      return std::bit_cast<std::uint64_t>(a.get<double>()) ==
             std::bit_cast<std::uint64_t>(b.get<double>());
    default:  // strings, booleans, integers, null, binary: equal JSON is the same data
      return a == b;
  }
}

}  // namespace

// The values of shared layers (a mailing's request) as converted for kainjow, by top-level key,
// each with the JSON it was converted from: used again by later renders while the layer's value
// is the same (same_values), so a mailing's recipients do not convert its context each.
class ValueCache {
 public:
  const mustache::data& get(const std::string& key, const nlohmann::json& value) {
    auto [it, added] = entries_.try_emplace(key);
    if (added || !same_values(it->second.source, value)) {
      it->second.source = value;
      it->second.value = to_data(value);
    }
    return it->second.value;
  }
  // Bounded (keys come from events): called between renders, never while one holds its values.
  void trim() {
    constexpr std::size_t kMaxEntries = 256;
    if (entries_.size() >= kMaxEntries) entries_.clear();
  }

 private:
  struct Entry {
    nlohmann::json source;
    mustache::data value;
  };
  std::map<std::string, Entry, std::less<>> entries_;
};

// The values of one render as kainjow data, converted from the JSON context only where a
// template looks them up: each top-level value on its first lookup, then shared by the subject,
// text, HTML and layouts. Converting the whole context for every part of every mail cost more
// than rendering it.
class LazyValues {
 public:
  // The context as layers: a top-level key's value is that of the first layer that has it, as
  // if the later layers were merged under the earlier ones; the shared layers come after the
  // render's own, their values converted once for many renders (`cache`).
  LazyValues(std::initializer_list<const nlohmann::json*> own,
             std::initializer_list<const nlohmann::json*> shared, ValueCache& cache)
      : own_(own), shared_(shared), cache_(cache) {}
  // The render's own values given as kainjow data (an object) instead of JSON layers.
  LazyValues(const mustache::data& own, std::initializer_list<const nlohmann::json*> shared,
             ValueCache& cache)
      : own_values_(&own), shared_(shared), cache_(cache) {}

  // The context's value of `key` (what kainjow's data of the whole context holds under it);
  // null when there is none.
  const mustache::data* get(const std::string& key) {
    for (const auto& [name, value] : looked_up_) {
      if (name == key) return value;
    }
    const mustache::data* value = nullptr;
    if (const nlohmann::json* found = find(own_, key)) {
      converted_.push_back(std::make_unique<mustache::data>(to_data(*found)));
      value = converted_.back().get();
    } else if (const mustache::data* given = own_values_ ? own_values_->get(key) : nullptr) {
      value = given;
    } else if (const nlohmann::json* shared = find(shared_, key)) {
      value = &cache_.get(key, *shared);
    }
    looked_up_.emplace_back(key, value);
    return value;
  }
  // The whole context, for {{.}} outside any section (rare: converted then).
  const mustache::data* whole() {
    if (whole_) return whole_.get();
    if (own_values_ == nullptr && own_.size() + shared_.size() == 1) {
      const nlohmann::json* only = own_.size() == 1 ? *own_.begin() : *shared_.begin();
      whole_ = std::make_unique<mustache::data>(to_data(*only));
      return whole_.get();
    }
    // kainjow's data cannot be iterated: given values are copied whole, the layers' added.
    whole_ = own_values_ ? std::make_unique<mustache::data>(*own_values_)
                         : std::make_unique<mustache::data>(mustache::data::type::object);
    for (const auto* layers : {&own_, &shared_}) {
      for (const nlohmann::json* layer : *layers) {
        if (!layer->is_object()) continue;
        for (const auto& [key, value] : layer->items()) {
          if (whole_->get(key) == nullptr) whole_->set(key, to_data(value));
        }
      }
    }
    return whole_.get();
  }

 private:
  static const nlohmann::json* find(std::initializer_list<const nlohmann::json*> layers,
                                    const std::string& key) {
    for (const nlohmann::json* layer : layers) {
      if (!layer->is_object()) continue;
      if (auto found = layer->find(key); found != layer->end()) return &*found;
    }
    return nullptr;
  }

  // All live while render() runs.
  std::initializer_list<const nlohmann::json*> own_;
  const mustache::data* own_values_ = nullptr;
  std::initializer_list<const nlohmann::json*> shared_;
  ValueCache& cache_;
  std::vector<std::pair<std::string, const mustache::data*>> looked_up_;  // a few per render
  std::vector<std::unique_ptr<mustache::data>> converted_;                // of the own layers
  std::unique_ptr<mustache::data> whole_;
};

namespace {

// Values come from the context stack as kainjow's own context finds them (sections push their
// value or list items on top of the render's values); partials only from the files in
// _partials/. kainjow's own context looks partials up among the values, where a user's value
// of the same name would be parsed and rendered as a template.
class RenderContext : public mustache::basic_context<std::string> {
 public:
  // `pieces`: the static text of a template compiled with merge_static_text (null: none).
  RenderContext(LazyValues& values, PartialLookup partials,
                const std::vector<mustache::data>* pieces)
      : values_(values), partials_(std::move(partials)), static_pieces_(pieces) {}

  // Innermost first, as kainjow keeps them (a stack as deep as sections are nested).
  void push(const mustache::data* data) override { stack_.insert(stack_.begin(), data); }
  void pop() override { stack_.erase(stack_.begin()); }

  // kainjow's context::get, over the stack and then the lazy values: "." is the innermost
  // value; a plain name is looked up from the innermost value out; "a.b" is looked up as a
  // whole path in each value from the innermost out (split as kainjow splits it).
  const mustache::data* get(const std::string& name) const override {
    if (static_pieces_ != nullptr && !name.empty() && name[0] == kPieceMark) {
      if (const mustache::data* piece = static_piece(name)) return piece;
    }
    if (name.size() == 1 && name[0] == '.') {
      return stack_.empty() ? values_.whole() : stack_.front();
    }
    if (name.find('.') == std::string::npos) {
      for (const mustache::data* item : stack_) {
        if (const mustache::data* var = item->get(name)) return var;
      }
      return values_.get(name);
    }
    split(name);
    for (const mustache::data* item : stack_) {
      if (const mustache::data* var = path(item, 0)) return var;
    }
    if (pieces_.empty()) return values_.whole();
    const mustache::data* top = values_.get(pieces_.front());
    return top == nullptr ? nullptr : path(top, 1);
  }
  const mustache::data* get_partial(const std::string& name) const override {
    return partials_(name);
  }

 private:
  // What std::getline(name, '.') gives, as kainjow's split: the pieces between dots, without
  // an empty one after a trailing dot.
  void split(const std::string& name) const {
    pieces_.clear();
    std::size_t start = 0;
    while (start < name.size()) {
      const std::size_t dot = name.find('.', start);
      if (dot == std::string::npos) {
        pieces_.emplace_back(name, start);
        break;
      }
      pieces_.emplace_back(name, start, dot - start);
      start = dot + 1;
    }
  }
  // The value at pieces_[from..] below `var`, or null.
  const mustache::data* path(const mustache::data* var, std::size_t from) const {
    for (std::size_t i = from; i < pieces_.size() && var != nullptr; ++i) {
      var = var->get(pieces_[i]);
    }
    return var;
  }

  // The piece that merge_static_text named `name`, or null.
  const mustache::data* static_piece(const std::string& name) const {
    std::size_t index = 0;
    const char* first = name.data() + 1;
    const char* last = name.data() + name.size();
    const auto [end, ec] = std::from_chars(first, last, index);
    if (ec != std::errc() || end != last || first == last || index >= static_pieces_->size()) {
      return nullptr;
    }
    return &(*static_pieces_)[index];
  }

  LazyValues& values_;
  PartialLookup partials_;
  const std::vector<mustache::data>* static_pieces_;
  std::vector<const mustache::data*> stack_;  // innermost first
  mutable std::vector<std::string> pieces_;   // of the dotted name being looked up
};

// Whether text changes kainjow's delimiters ({{=<% %>=}}): then tags cannot be found by
// looking for braces, and a partial's own delimiters would leak into its surroundings.
bool sets_delimiters(const std::string& text) { return text.find("{{=") != std::string::npos; }

// text with each {{> name}} tag replaced by the text `partial(name)` gives (itself inlined, up
// to a depth), found as kainjow's parser finds tags with the default delimiters. Rendering the
// result is rendering the template with kainjow's partials: kainjow renders a partial's parts
// in place, in the same context and line buffer, with the same escape. A tag whose partial
// gives nothing (missing, refused, or setting delimiters) stays, to be looked up (and fail)
// at render time as before.
using PartialText = std::function<const std::string*(const std::string&)>;
std::string inline_partials(const std::string& text, const PartialText& partial, int depth) {
  constexpr int kMaxDepth = 8;  // deeper tags are left to kainjow, which recurses as it did
  std::string out;
  out.reserve(text.size());
  std::size_t pos = 0;
  while (true) {
    const std::size_t begin = text.find("{{", pos);
    if (begin == std::string::npos) break;
    const bool triple = begin != text.size() - 2 && text[begin + 2] == '{';
    const std::size_t contents = begin + (triple ? 3 : 2);
    const std::string closer = triple ? "}}}" : "}}";
    const std::size_t end = text.find(closer, contents);
    if (end == std::string::npos) break;  // kainjow refuses the template anyway
    const std::size_t after = end + closer.size();
    const std::string tag = mustache::trim(text.substr(contents, end - contents));
    const std::string* body = nullptr;
    if (!triple && depth < kMaxDepth && !tag.empty() && tag[0] == '>') {
      body = partial(mustache::trim(tag.substr(1)));
    }
    out.append(text, pos, body == nullptr ? after - pos : begin - pos);
    if (body != nullptr) out += inline_partials(*body, partial, depth + 1);
    pos = after;
  }
  out.append(text, pos, std::string::npos);
  return out;
}

// How many pieces kainjow's parser makes of tag-free text: one per newline ("\r\n", "\n" or
// "\r"), space and tab, and one per run of other characters. kainjow renders each through a
// std::function and appends it to its line on its own.
std::size_t kainjow_pieces(std::string_view text) {
  std::size_t pieces = 0;
  bool in_run = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
      if (c == '\r' && i + 1 < text.size() && text[i + 1] == '\n') ++i;
      ++pieces;
      in_run = false;
    } else if (!in_run) {
      ++pieces;
      in_run = true;
    }
  }
  return pieces;
}

// The template's text with its static text rendered as few pieces as kainjow allows, the same
// bytes on the same lines: a run of text between tags becomes the value of one unescaped
// variable ({{{\x01 N}}}, N indexing `pieces`) in up to three parts, the part before its first
// line break, the lines between its first and its last line break, and the part after the last.
// kainjow decides at each line break whether a line was only a standalone section tag (and
// then drops it) from the line's bytes and whether a section tag was on it; a variable adds the
// same bytes as the text it replaces and no section tag, and the line breaks where kainjow
// decides stay where they were. The lines between the first and the last break of a run hold no
// tag, so kainjow keeps them whole whether or not it sees their breaks.
// nullopt: the text is left as it is, because kainjow would read it otherwise than by its
// default delimiters (a delimiter change, an unclosed tag), it still has a partial tag (to be
// looked up and refused at render time), or it already has the mark (a template's own tag
// must never be taken for a piece).
std::optional<std::string> merge_static_text(const std::string& text,
                                             std::vector<std::string>& pieces) {
  constexpr std::size_t kWorthAVariable = 3;  // a variable costs about two pieces of text
  if (text.find(kPieceMark) != std::string::npos) return std::nullopt;
  std::string out;
  out.reserve(text.size());
  auto put = [&](std::string_view run) {
    if (kainjow_pieces(run) < kWorthAVariable) {
      out.append(run);
      return;
    }
    out.append("{{{").push_back(kPieceMark);
    out.append(std::to_string(pieces.size())).append("}}}");
    pieces.emplace_back(run);
  };
  auto put_segment = [&](std::string_view run) {
    const std::size_t first = run.find_first_of("\r\n");
    if (first == std::string_view::npos) return put(run);
    const std::size_t first_end = first + (run.substr(first, 2) == "\r\n" ? 2 : 1);
    std::size_t last = run.find_last_of("\r\n");
    const std::size_t last_end = last + 1;
    if (run[last] == '\n' && last > 0 && run[last - 1] == '\r') --last;
    put(run.substr(0, first));
    if (last < first_end) {  // a single line break
      out.append(run.substr(first, first_end - first));
    } else {
      out.append(run.substr(first, first_end - first));
      put(run.substr(first_end, last - first_end));
      out.append(run.substr(last, last_end - last));
    }
    put(run.substr(last_end));
  };
  std::size_t pos = 0;
  while (true) {
    const std::size_t begin = text.find("{{", pos);
    put_segment(std::string_view(text).substr(
        pos, begin == std::string::npos ? std::string::npos : begin - pos));
    if (begin == std::string::npos) break;
    // The tag as kainjow's parser reads it with the default delimiters.
    const bool triple = begin != text.size() - 2 && text[begin + 2] == '{';
    const std::size_t contents = begin + (triple ? 3 : 2);
    const char* closer = triple ? "}}}" : "}}";
    const std::size_t end = text.find(closer, contents);
    if (end == std::string::npos) return std::nullopt;
    if (!triple) {
      const std::string tag = mustache::trim(text.substr(contents, end - contents));
      if (!tag.empty() && (tag[0] == '=' || tag[0] == '>')) return std::nullopt;
    }
    pos = end + (triple ? 3 : 2);
    out.append(text, begin, pos - begin);
  }
  return out;
}

}  // namespace

// A template as it is rendered for a set of partial folders: its partials' text put in place
// of their tags (kainjow would parse a partial's text again at every render) and its static
// text merged into few pieces (merge_static_text), parsed once.
struct TemplateStore::Prepared {
  explicit Prepared(const std::string& text) : tmpl(text) {}
  mustache::mustache tmpl;
  std::vector<mustache::data> pieces;  // the static text the template names {{{\x01 N}}}
};

// Parsed once, rendered many times; the escape follows the part (HTML or verbatim).
struct TemplateStore::Compiled {
  std::string name;  // path relative to the root, for messages
  std::string text;
  bool escape_html = true;
  mustache::mustache tmpl;
  // The template prepared once per set of partial folders a locale uses ("de\x1f" for de and
  // de-AT, "" for the default). Null: rendered as parsed (tmpl).
  std::map<std::string, std::unique_ptr<Prepared>> prepared;
};

struct TemplateStore::Partials {
  struct Partial {
    mustache::data text;  // a string: kainjow parses it where {{> name}} stands
    std::string error;    // parse error naming the file; empty when the partial is fine
    std::string source;   // the same text, to be inlined
  };
  std::map<std::string, std::map<std::string, Partial>> by_locale;  // "" = default
};

// A locale as render() uses it. Locales come from users, so the store keeps a bounded number.
struct TemplateStore::Locale {
  std::string name;
  // The partial folders it looks in, most specific first, and which they are (the key of
  // Compiled::prepared): a partial's text depends on nothing else.
  std::vector<const std::map<std::string, Partials::Partial>*> folders;
  std::string key;
  // By template (or layout) folder: each part's file once looked for; null: there is none.
  std::map<std::string, std::array<std::optional<Compiled*>, 3>, std::less<>> files;
  // How each file renders here: prepared, or null (as parsed).
  std::map<const Compiled*, std::optional<Prepared*>> templates;
};

namespace {
constexpr std::size_t kMaxLocales = 64;     // more: forgotten and worked out again
constexpr std::size_t kMaxFolders = 1'000;  // template names remembered per locale
const char* const kPartNames[] = {"subject", "text", "html"};
}  // namespace

TemplateStore::TemplateStore(std::string root)
    : root_(std::move(root)), value_cache_(std::make_unique<ValueCache>()) {
  std::error_code ec;
  canonical_root_ = fs::weakly_canonical(root_, ec);
  if (ec) canonical_root_ = fs::absolute(root_, ec).lexically_normal();
  if (!canonical_root_.has_filename()) canonical_root_ = canonical_root_.parent_path();  // "x/"
}
TemplateStore::~TemplateStore() = default;

bool TemplateStore::valid_name(const std::string& name) {
  if (name.empty() || name.front() == '/' || name.back() == '/') return false;
  char previous = '/';
  for (char c : name) {
    const bool ok =
        (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '/';
    if (!ok) return false;
    if (c == '/' && previous == '/') return false;
    if (c == '_' && previous == '/') return false;  // _layout, _partials: not templates
    previous = c;
  }
  return true;
}

TemplateStore::Compiled* TemplateStore::load(const std::string& path, bool escape_html) {
  auto it = cache_.find(path);
  if (it != cache_.end()) return it->second.get();
  std::unique_ptr<Compiled> compiled;
  std::error_code ec;
  // A file that exists must be ours: a symlink out of the folder could show any file to
  // whoever can read the rendered mail.
  if (fs::exists(path, ec) && !inside(canonical_root_, path)) {
    throw TemplateError(outside_error(path.substr(root_.size() + 1)));
  }
  if (auto text = read_file(path)) {
    compiled = std::make_unique<Compiled>(
        Compiled{path.substr(root_.size() + 1), *text, escape_html, mustache::mustache{*text}, {}});
    if (!compiled->tmpl.is_valid()) {
      throw TemplateError("template " + compiled->name + ": " + compiled->tmpl.error_message());
    }
    if (!escape_html) compiled->tmpl.set_custom_escape(verbatim);
  }
  return cache_.emplace(path, std::move(compiled)).first->second.get();
}

TemplateStore::Compiled* TemplateStore::localized(Locale& locale, const std::string& folder,
                                                  Part part) {
  auto found = locale.files.find(folder);
  if (found == locale.files.end()) {
    if (locale.files.size() >= kMaxFolders) locale.files.clear();
    found = locale.files.try_emplace(folder).first;
  }
  std::optional<Compiled*>& file = found->second[static_cast<std::size_t>(part)];
  if (file) return *file;
  const std::string name = kPartNames[static_cast<std::size_t>(part)];
  const bool escape_html = part == Part::kHtml;
  const std::string base = root_ + "/" + folder + "/";
  Compiled* c = nullptr;
  for (const std::string& candidate : locale_chain(locale.name)) {
    if ((c = load(base + candidate + "/" + name + ".mustache", escape_html))) break;
  }
  if (c == nullptr) c = load(base + name + ".mustache", escape_html);
  file = c;
  return c;
}

const TemplateStore::Partials& TemplateStore::partials() {
  if (partials_) return *partials_;
  auto loaded = std::make_unique<Partials>();
  auto add = [&](const fs::path& file, const std::string& locale) {
    if (file.extension() != ".mustache") return;
    const std::string rel =
        "_partials/" + (locale.empty() ? "" : locale + "/") + file.filename().string();
    if (!inside(canonical_root_, file)) {  // only templates using it fail, with this error
      loaded->by_locale[locale].emplace(
          file.stem().string(), Partials::Partial{mustache::data{""}, outside_error(rel), ""});
      return;
    }
    auto text = read_file(file);
    if (!text) return;
    mustache::mustache parsed{*text};
    std::string error = parsed.is_valid() ? "" : "template " + rel + ": " + parsed.error_message();
    loaded->by_locale[locale].emplace(
        file.stem().string(), Partials::Partial{mustache::data{*text}, std::move(error), *text});
  };
  std::error_code ec;  // no _partials folder: no partials
  for (const auto& entry : fs::directory_iterator(fs::path(root_) / "_partials", ec)) {
    if (!entry.is_directory()) {
      add(entry.path(), "");
      continue;
    }
    const std::string locale = entry.path().filename().string();
    if (locale.find_first_not_of(kLocaleChars) != std::string::npos) continue;
    std::error_code sub_ec;
    for (const auto& file : fs::directory_iterator(entry.path(), sub_ec)) add(file.path(), locale);
  }
  partials_ = std::move(loaded);
  return *partials_;
}

TemplateStore::Locale& TemplateStore::locale(const std::string& name) {
  if (auto found = locales_.find(name); found != locales_.end()) return *found->second;
  if (locales_.size() >= kMaxLocales) locales_.clear();
  auto view = std::make_unique<Locale>();
  view->name = name;
  const Partials& all = partials();
  // The partial folders this locale looks in, most specific first: what a partial's text
  // depends on, and a bounded key whatever locale a user has.
  std::vector<std::string> locales = locale_chain(name);
  locales.emplace_back();  // the default
  for (const std::string& l : locales) {
    auto in_locale = all.by_locale.find(l);
    if (in_locale == all.by_locale.end()) continue;
    view->folders.push_back(&in_locale->second);
    view->key += l;
    view->key += '\x1f';
  }
  return *locales_.emplace(name, std::move(view)).first->second;
}

std::string TemplateStore::render_one(Compiled& compiled, Locale& locale, LazyValues& values,
                                      const Data* extra) {
  const auto& folders = locale.folders;
  auto find = [&](const std::string& name) -> const Partials::Partial* {
    for (const auto* folder : folders) {
      auto it = folder->find(name);
      if (it != folder->end()) return &it->second;
    }
    return nullptr;
  };

  std::optional<Prepared*>& chosen = locale.templates[&compiled];
  if (!chosen) {
    auto [slot, added] = compiled.prepared.try_emplace(locale.key);
    if (added) {
      std::string text = compiled.text;
      if (!sets_delimiters(text)) {
        text = inline_partials(
            text,
            [&](const std::string& name) -> const std::string* {
              const Partials::Partial* p = find(name);
              if (p == nullptr || !p->error.empty() || sets_delimiters(p->source)) return nullptr;
              return &p->source;
            },
            0);
      }
      std::vector<std::string> pieces;
      const std::optional<std::string> merged = merge_static_text(text, pieces);
      const std::string* merged_text = merged ? &*merged : nullptr;
      // Else rendered as written, where kainjow says what is wrong.
      for (const std::string* candidate : std::array<const std::string*, 2>{merged_text, &text}) {
        if (candidate == nullptr || *candidate == compiled.text) continue;
        auto prepared = std::make_unique<Prepared>(*candidate);
        if (!prepared->tmpl.is_valid()) continue;
        if (!compiled.escape_html) prepared->tmpl.set_custom_escape(verbatim);
        if (candidate == merged_text) {
          prepared->pieces.reserve(pieces.size());
          for (std::string& piece : pieces) prepared->pieces.emplace_back(std::move(piece));
        }
        slot->second = std::move(prepared);
        break;
      }
    }
    chosen = slot->second.get();
  }
  mustache::mustache& tmpl = *chosen ? (*chosen)->tmpl : compiled.tmpl;
  const std::vector<mustache::data>* pieces =
      *chosen && !(*chosen)->pieces.empty() ? &(*chosen)->pieces : nullptr;

  const std::string& used_by = compiled.name;
  RenderContext ctx(
      values,
      [&](const std::string& name) -> const mustache::data* {
        const Partials::Partial* p = find(name);
        // A misspelt partial would silently drop a footer or an unsubscribe link.
        if (p == nullptr) {
          throw TemplateError("template " + used_by + ": no partial '" + name + "' in _partials/");
        }
        if (!p->error.empty()) throw TemplateError(p->error);
        return &p->text;
      },
      pieces);
  if (extra != nullptr) ctx.push(extra);
  std::string out;
  out.reserve(compiled.text.size() * 2);
  StringSink sink{out};
  tmpl.render(ctx, sink);
  if (!tmpl.is_valid()) {
    const std::string message = "template " + compiled.name + ": " + tmpl.error_message();
    cache_.erase(root_ + "/" + compiled.name);  // kainjow keeps the error: parse it afresh
    locales_.clear();                           // it may point to what was just erased
    throw TemplateError(message);
  }
  return out;
}

notify::Content TemplateStore::render(const std::string& name, const std::string& locale,
                                      const nlohmann::json& context) {
  return render(name, locale, {&context});
}

notify::Content TemplateStore::render(const std::string& name, const std::string& locale_name,
                                      std::initializer_list<const nlohmann::json*> layers,
                                      std::initializer_list<const nlohmann::json*> shared) {
  value_cache_->trim();
  LazyValues values(layers, shared, *value_cache_);
  return render_with(name, locale_name, values);
}

notify::Content TemplateStore::render(const std::string& name, const std::string& locale_name,
                                      const Values& own,
                                      std::initializer_list<const nlohmann::json*> shared) {
  value_cache_->trim();
  LazyValues values(own, shared, *value_cache_);
  return render_with(name, locale_name, values);
}

notify::Content TemplateStore::render_with(const std::string& name, const std::string& locale_name,
                                           LazyValues& values) {
  if (!valid_name(name)) throw TemplateError("template name not allowed: '" + name + "'");
  Locale& view = locale(locale_name);
  const auto slash = name.find('/');
  const std::string layouts = slash == std::string::npos ? "" : name.substr(0, slash) + "/_layout";

  auto required = [&](Part part) -> Compiled& {
    Compiled* c = localized(view, name, part);
    if (c == nullptr) {
      throw TemplateError("template '" + name + "' has no " +
                          kPartNames[static_cast<std::size_t>(part)] + ".mustache");
    }
    return *c;
  };

  notify::Content content;
  auto wrap = [&](Part part, std::string body) {
    Compiled* layout = layouts.empty() ? nullptr : localized(view, layouts, part);
    if (layout == nullptr) return body;
    mustache::data extra{mustache::data::type::object};
    extra["content"] = mustache::data{body};  // not set(), which copies the value again
    extra["subject"] = mustache::data{content.subject};
    return render_one(*layout, view, values, &extra);
  };

  content.subject = one_line(render_one(required(Part::kSubject), view, values, nullptr));
  content.text = wrap(Part::kText, render_one(required(Part::kText), view, values, nullptr));
  if (Compiled* html = localized(view, name, Part::kHtml)) {
    content.html = wrap(Part::kHtml, render_one(*html, view, values, nullptr));
  }
  return content;
}

}  // namespace etl
