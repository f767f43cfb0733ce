#include "render.hpp"

#include <kainjow/mustache.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <sstream>
#include <vector>

namespace etl {
namespace {

namespace fs = std::filesystem;
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
    case nlohmann::json::value_t::string:
      return mustache::data{value.get<std::string>()};
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

// Values come from the context stack as usual; partials only from the files in _partials/.
// kainjow's own context looks partials up among the values, where a user's value of the same
// name would be parsed and rendered as a template.
class RenderContext : public mustache::basic_context<std::string> {
 public:
  RenderContext(const mustache::data* data, PartialLookup partials)
      : values_(data), partials_(std::move(partials)) {}

  void push(const mustache::data* data) override { values_.push(data); }
  void pop() override { values_.pop(); }
  const mustache::data* get(const std::string& name) const override { return values_.get(name); }
  const mustache::data* get_partial(const std::string& name) const override {
    return partials_(name);
  }

 private:
  mustache::context<std::string> values_;
  PartialLookup partials_;
};

// A tag as kainjow's parser finds it with the default delimiters: the next "{{" from a
// position, closed by the next "}}" ("}}}" after "{{{"), its contents trimmed.
struct Tag {
  std::size_t begin = 0;
  std::size_t after = 0;  // just past the closing braces
  bool triple = false;
  std::string contents;
};

std::optional<Tag> next_tag(const std::string& text, std::size_t pos) {
  const std::size_t begin = text.find("{{", pos);
  if (begin == std::string::npos) return std::nullopt;
  Tag tag;
  tag.begin = begin;
  tag.triple = begin != text.size() - 2 && text[begin + 2] == '{';
  const std::size_t contents = begin + (tag.triple ? 3 : 2);
  const char* closer = tag.triple ? "}}}" : "}}";
  const std::size_t end = text.find(closer, contents);
  if (end == std::string::npos) return std::nullopt;  // kainjow refuses the template anyway
  tag.after = end + (tag.triple ? 3 : 2);
  tag.contents = mustache::trim(text.substr(contents, end - contents));
  return tag;
}

// Whether text changes kainjow's delimiters ({{=<% %>=}}, {{ =| |= }}): then tags cannot be
// found by looking for braces, and a partial's own delimiters would leak into its surroundings.
bool sets_delimiters(const std::string& text) {
  for (auto tag = next_tag(text, 0); tag; tag = next_tag(text, tag->after)) {
    if (!tag->contents.empty() && tag->contents[0] == '=') return true;
  }
  return false;
}

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
  for (auto tag = next_tag(text, 0); tag; tag = next_tag(text, pos)) {
    const std::string* body = nullptr;
    if (!tag->triple && depth < kMaxDepth && !tag->contents.empty() && tag->contents[0] == '>') {
      body = partial(mustache::trim(tag->contents.substr(1)));
    }
    out.append(text, pos, (body == nullptr ? tag->after : tag->begin) - pos);
    if (body != nullptr) out += inline_partials(*body, partial, depth + 1);
    pos = tag->after;
  }
  out.append(text, pos, std::string::npos);
  return out;
}

// A template compiled for rendering without kainjow's machinery (a std::function call and a
// string copy per space of the text), with kainjow's semantics: what compile() accepts renders
// to the very bytes kainjow renders (render_test compares the two). Text between line breaks is
// one piece; a line that held a section tag and is otherwise blank (spaces and tabs) is
// dropped with its line break, as kainjow's line buffer does.
struct Node {
  enum class Kind { kText, kNewline, kVariable, kSection, kInverted };
  Kind kind = Kind::kText;
  std::string text;  // text, the line break, or the name
  bool escaped = true;
  std::vector<Node> children;
};
using Program = std::vector<Node>;

// Nothing when the template is not for this renderer: a partial tag left (missing or broken
// partials fail at render time, in kainjow), other delimiters, or a template kainjow refuses.
std::optional<Program> compile(const std::string& text) {
  if (sets_delimiters(text)) return std::nullopt;
  Program program;
  std::vector<Program*> open{&program};
  auto add_text = [&](std::size_t from, std::size_t to) {
    while (from < to) {
      const std::size_t brk = std::min(text.find_first_of("\r\n", from), to);
      if (brk > from) {
        Program& into = *open.back();
        if (into.empty() || into.back().kind != Node::Kind::kText) into.push_back(Node{});
        into.back().text.append(text, from, brk - from);
      }
      if (brk == to) break;
      const std::size_t size = text.compare(brk, 2, "\r\n") == 0 && brk + 2 <= to ? 2 : 1;
      open.back()->push_back(Node{Node::Kind::kNewline, text.substr(brk, size), true, {}});
      from = brk + size;
    }
  };
  std::size_t pos = 0;
  for (auto tag = next_tag(text, 0); tag; tag = next_tag(text, pos)) {
    add_text(pos, tag->begin);
    pos = tag->after;
    const std::string& c = tag->contents;
    Node node{Node::Kind::kVariable, c, true, {}};
    if (tag->triple) {
      node.escaped = false;
    } else if (!c.empty()) {
      const std::string name = mustache::trim(c.substr(1));
      switch (c[0]) {
        case '#':
        case '^':
          node.kind = c[0] == '#' ? Node::Kind::kSection : Node::Kind::kInverted;
          node.text = name;
          open.back()->push_back(std::move(node));
          open.push_back(&open.back()->back().children);
          continue;
        case '/':
          if (open.size() == 1) return std::nullopt;
          open.pop_back();
          continue;
        case '!':
          continue;
        case '&':
          node.text = name;
          node.escaped = false;
          break;
        case '>':
        case '=':
          return std::nullopt;
        default:
          break;
      }
    }
    open.back()->push_back(std::move(node));
  }
  if (open.size() != 1) return std::nullopt;
  if (text.find("{{", pos) != std::string::npos) return std::nullopt;  // an unclosed tag
  add_text(pos, text.size());
  return program;
}

// What the renderer reads: the context as parsed, as to_data() would show it to kainjow (null
// and false are false, arrays lists, numbers their JSON text), without building kainjow's copy.
using Json = nlohmann::json;

const Json* member(const Json* value, std::string_view key) {
  if (!value->is_object()) return nullptr;
  const auto it = value->find(key);
  return it == value->end() ? nullptr : &*it;
}

// The innermost value of `name` on a context stack (innermost last), as kainjow's context
// finds it ("a.b" as a, then its b; "a." as a; ".a" and "a..b" look up an empty name).
const Json* lookup_json(const std::vector<const Json*>& stack, const std::string& name) {
  if (name == ".") return stack.back();
  for (auto item = stack.rbegin(); item != stack.rend(); ++item) {
    const Json* var = *item;
    std::size_t begin = 0;
    while (var != nullptr && begin < name.size()) {
      const std::size_t dot = std::min(name.find('.', begin), name.size());
      var = member(var, std::string_view(name).substr(begin, dot - begin));
      begin = dot + 1;
    }
    if (var != nullptr && name.empty()) var = member(var, name);
    if (var != nullptr) return var;
  }
  return nullptr;
}

bool is_false(const Json& v) { return v.is_null() || (v.is_boolean() && !v.get<bool>()); }
bool is_empty_list(const Json& v) { return v.is_array() && v.empty(); }

struct Renderer {
  std::string& out;
  std::vector<const Json*>& stack;
  bool escape_html;
  std::size_t line_start = 0;
  bool had_section_tag = false;

  bool line_is_blank() const {
    for (std::size_t i = line_start; i < out.size(); ++i) {
      if (out[i] != ' ' && out[i] != '\t') return false;
    }
    return true;
  }
  void end_line() {
    if (had_section_tag && line_is_blank()) out.resize(line_start);
    line_start = out.size();
    had_section_tag = false;
  }
  void section(const Program& children, const Json* var) {
    had_section_tag = true;
    if (var != nullptr) stack.push_back(var);
    run(children);
    if (var != nullptr) stack.pop_back();
    had_section_tag = true;
  }
  void value(const std::string& text, bool escaped) {
    if (!escaped || !escape_html) {
      out += text;
      return;
    }
    // kainjow's html_escape, without its temporary string.
    for (const char c : text) {
      switch (c) {
        case '&':
          out += "&amp;";
          break;
        case '<':
          out += "&lt;";
          break;
        case '>':
          out += "&gt;";
          break;
        case '"':
          out += "&quot;";
          break;
        case '\'':
          out += "&apos;";
          break;
        default:
          out.push_back(c);
      }
    }
  }
  void run(const Program& program) {
    for (const Node& node : program) {
      switch (node.kind) {
        case Node::Kind::kText:
          out += node.text;
          break;
        case Node::Kind::kNewline:
          out += node.text;
          if (had_section_tag) {
            // kainjow drops the line with its break when it is blank but for section tags.
            const std::size_t text_end = out.size() - node.text.size();
            bool blank = true;
            for (std::size_t i = line_start; i < text_end && blank; ++i) {
              blank = out[i] == ' ' || out[i] == '\t';
            }
            if (blank) out.resize(line_start);
          }
          line_start = out.size();
          had_section_tag = false;
          break;
        case Node::Kind::kVariable:
          if (const Json* var = lookup_json(stack, node.text); var != nullptr) {
            if (var->is_string()) {
              value(var->get_ref<const std::string&>(), node.escaped);
            } else if (!var->is_object() && !var->is_array() && !var->is_boolean() &&
                       !var->is_null()) {
              value(var->dump(), node.escaped);  // a number, as to_data() makes it a string
            }
          }
          break;
        case Node::Kind::kSection: {
          const Json* var = lookup_json(stack, node.text);
          if (var == nullptr || is_false(*var) || is_empty_list(*var)) break;
          if (var->is_array()) {
            for (const Json& item : *var) section(node.children, &item);
          } else {
            section(node.children, var);
          }
          break;
        }
        case Node::Kind::kInverted: {
          const Json* var = lookup_json(stack, node.text);
          if (var == nullptr || is_false(*var) || is_empty_list(*var)) {
            section(node.children, var);
          }
          break;
        }
      }
    }
  }
};

}  // namespace

// Parsed once, rendered many times; the escape follows the part (HTML or verbatim).
struct TemplateStore::Compiled {
  std::string name;  // path relative to the root, for messages
  std::string text;
  bool escape_html = true;
  mustache::mustache tmpl;
  // The template with its partials' text put in place of their tags, once per set of partial
  // folders a locale uses ("de\x1f\x1f" for de and de-AT), since kainjow parses a partial's
  // text again at every render; compiled for our renderer when it can take it, else parsed by
  // kainjow (null: as written, in tmpl).
  struct Prepared {
    std::optional<Program> program;
    std::unique_ptr<mustache::mustache> tmpl;
  };
  std::map<std::string, Prepared> inlined;
};

struct TemplateStore::Partials {
  struct Partial {
    mustache::data text;  // a string: kainjow parses it where {{> name}} stands
    std::string error;    // parse error naming the file; empty when the partial is fine
    std::string source;   // the same text, to be inlined
  };
  std::map<std::string, std::map<std::string, Partial>> by_locale;  // "" = default
};

TemplateStore::TemplateStore(std::string root) : root_(std::move(root)) {
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

TemplateStore::Compiled* TemplateStore::localized(const std::string& folder,
                                                  const std::string& locale,
                                                  const std::string& part) {
  // Remembered per folder, locale and part: finding the file walks the locale's fallbacks
  // and builds their paths, a tenth of a render. Bounded, since a locale is the user's.
  constexpr std::size_t kMaxResolved = 4096;
  std::string key;
  key.reserve(folder.size() + locale.size() + part.size() + 2);
  key.append(folder).append(1, '\x1f').append(locale).append(1, '\x1f').append(part);
  if (auto it = resolved_.find(key); it != resolved_.end()) return it->second;
  Compiled* found = find_localized(folder, locale, part);
  if (resolved_.size() >= kMaxResolved) resolved_.clear();
  resolved_.emplace(std::move(key), found);
  return found;
}

TemplateStore::Compiled* TemplateStore::find_localized(const std::string& folder,
                                                       const std::string& locale,
                                                       const std::string& part) {
  const bool escape_html = part == "html";
  const std::string base = root_ + "/" + folder + "/";
  for (const std::string& candidate : locale_chain(locale)) {
    if (Compiled* c = load(base + candidate + "/" + part + ".mustache", escape_html)) return c;
  }
  return load(base + part + ".mustache", escape_html);
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

std::string TemplateStore::render_one(Compiled& compiled, const std::string& locale,
                                      const nlohmann::json& context, const nlohmann::json* extra) {
  const Partials& all = partials();
  // The partial folders this locale looks in, most specific first: what a partial's text
  // depends on, and a bounded key whatever locale a user has.
  std::vector<const std::map<std::string, Partials::Partial>*> folders;
  std::string key;
  std::vector<std::string> locales = locale_chain(locale);
  locales.emplace_back();  // the default
  for (const std::string& l : locales) {
    auto in_locale = all.by_locale.find(l);
    if (in_locale == all.by_locale.end()) continue;
    folders.push_back(&in_locale->second);
    key += l;
    key += '\x1f';
  }
  auto find = [&](const std::string& name) -> const Partials::Partial* {
    for (const auto* folder : folders) {
      auto it = folder->find(name);
      if (it != folder->end()) return &it->second;
    }
    return nullptr;
  };

  auto [slot, added] = compiled.inlined.try_emplace(key);
  Compiled::Prepared& prepared = slot->second;
  if (added && compiled.tmpl.is_valid() && !sets_delimiters(compiled.text)) {
    const std::string text = inline_partials(
        compiled.text,
        [&](const std::string& name) -> const std::string* {
          const Partials::Partial* p = find(name);
          if (p == nullptr || !p->error.empty() || sets_delimiters(p->source)) return nullptr;
          return &p->source;
        },
        0);
    auto inlined = std::make_unique<mustache::mustache>(text);
    if (inlined->is_valid()) {  // else: rendered as written, where kainjow says what is wrong
      prepared.program = compile(text);
      if (!compiled.escape_html) inlined->set_custom_escape(verbatim);
      if (text != compiled.text) prepared.tmpl = std::move(inlined);
    }
  }
  std::string out;
  out.reserve(compiled.text.size() * 2);
  if (prepared.program) {
    std::vector<const Json*> stack{&context};
    if (extra != nullptr) stack.push_back(extra);
    Renderer renderer{out, stack, compiled.escape_html};
    renderer.run(*prepared.program);
    renderer.end_line();
    return out;
  }
  mustache::mustache& tmpl = prepared.tmpl ? *prepared.tmpl : compiled.tmpl;
  const mustache::data data = to_data(context);
  const std::optional<mustache::data> extra_data =
      extra == nullptr ? std::nullopt : std::optional(to_data(*extra));

  const std::string& used_by = compiled.name;
  RenderContext ctx(&data, [&](const std::string& name) -> const mustache::data* {
    const Partials::Partial* p = find(name);
    // A misspelt partial would silently drop a footer or an unsubscribe link.
    if (p == nullptr) {
      throw TemplateError("template " + used_by + ": no partial '" + name + "' in _partials/");
    }
    if (!p->error.empty()) throw TemplateError(p->error);
    return &p->text;
  });
  if (extra_data) ctx.push(&*extra_data);
  StringSink sink{out};
  tmpl.render(ctx, sink);
  if (!tmpl.is_valid()) {
    const std::string message = "template " + compiled.name + ": " + tmpl.error_message();
    resolved_.clear();                          // it points into the cache
    cache_.erase(root_ + "/" + compiled.name);  // kainjow keeps the error: parse it afresh
    throw TemplateError(message);
  }
  return out;
}

notify::Content TemplateStore::render(const std::string& name, const std::string& locale,
                                      const nlohmann::json& context) {
  if (!valid_name(name)) throw TemplateError("template name not allowed: '" + name + "'");
  const auto slash = name.find('/');
  const std::string layouts = slash == std::string::npos ? "" : name.substr(0, slash) + "/_layout";

  auto required = [&](const std::string& part) -> Compiled& {
    Compiled* c = localized(name, locale, part);
    if (c == nullptr) throw TemplateError("template '" + name + "' has no " + part + ".mustache");
    return *c;
  };

  notify::Content content;
  auto wrap = [&](const std::string& part, std::string body) {
    Compiled* layout = layouts.empty() ? nullptr : localized(layouts, locale, part);
    if (layout == nullptr) return body;
    const nlohmann::json extra = {{"content", std::move(body)}, {"subject", content.subject}};
    return render_one(*layout, locale, context, &extra);
  };

  content.subject = one_line(render_one(required("subject"), locale, context, nullptr));
  content.text = wrap("text", render_one(required("text"), locale, context, nullptr));
  if (Compiled* html = localized(name, locale, "html")) {
    content.html = wrap("html", render_one(*html, locale, context, nullptr));
  }
  return content;
}

}  // namespace etl
