#include <doctest/doctest.h>

#include <kainjow/mustache.hpp>

#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "render.hpp"

using etl::TemplateError;
using etl::TemplateStore;
namespace fs = std::filesystem;

namespace {

// A throw-away template root, so each test states exactly the files it relies on.
class TemplateTree {
 public:
  TemplateTree() {
    std::random_device rd;
    root_ =
        fs::temp_directory_path() / ("render_test_" + std::to_string(rd()) + std::to_string(rd()));
    fs::create_directories(root_);
  }
  ~TemplateTree() {
    std::error_code ec;
    fs::remove_all(root_, ec);
  }
  TemplateTree(const TemplateTree&) = delete;
  TemplateTree& operator=(const TemplateTree&) = delete;

  TemplateTree& file(const std::string& path, const std::string& text) {
    const fs::path p = root_ / path;
    fs::create_directories(p.parent_path());
    std::ofstream(p, std::ios::binary) << text;
    return *this;
  }
  // A template with all three parts.
  TemplateTree& parts(const std::string& folder, const std::string& subject,
                      const std::string& text, const std::string& html) {
    return file(folder + "/subject.mustache", subject)
        .file(folder + "/text.mustache", text)
        .file(folder + "/html.mustache", html);
  }
  std::string root() const { return root_.string(); }

 private:
  fs::path root_;
};

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

std::size_t count(const std::string& haystack, const std::string& needle) {
  std::size_t n = 0;
  for (auto at = haystack.find(needle); at != std::string::npos;
       at = haystack.find(needle, at + needle.size())) {
    ++n;
  }
  return n;
}

std::string error_of(TemplateStore& store, const std::string& name, const std::string& locale,
                     const nlohmann::json& context) {
  try {
    store.render(name, locale, context);
  } catch (const TemplateError& e) {
    return e.what();
  }
  return "(no error)";
}

nlohmann::json example(const std::string& name) {
  std::ifstream in(NOTIFY_SOURCE_DIR "/templates/" + name + "/example.json");
  REQUIRE(in);
  return nlohmann::json::parse(in);
}

const nlohmann::json kAnn = {{"user", {{"first_name", "Ann"}}}};

}  // namespace

TEST_CASE("a channel layout wraps the rendered text and HTML with content and subject") {
  TemplateTree t;
  t.parts("email/note", "Hi {{user.first_name}}\n", "Body for {{user.first_name}}\n",
          "<p>Body for {{user.first_name}}</p>\n")
      .file("email/_layout/html.mustache",
            "<html><title>{{subject}}</title>\n{{{content}}}</html>\n")
      .file("email/_layout/text.mustache", "{{{content}}}-- \nsent to {{user.first_name}}\n");
  TemplateStore store(t.root());
  const notify::Content c = store.render("email/note", "", kAnn);
  CHECK(c.subject == "Hi Ann");
  CHECK(c.html == "<html><title>Hi Ann</title>\n<p>Body for Ann</p>\n</html>\n");
  CHECK(c.text == "Body for Ann\n-- \nsent to Ann\n");

  SUBCASE("another channel has no layout") {
    t.parts("sms/note", "s", "t {{user.first_name}}", "<b>{{user.first_name}}</b>");
    const notify::Content sms = store.render("sms/note", "", kAnn);
    CHECK(sms.text == "t Ann");
    CHECK(sms.html == "<b>Ann</b>");
  }
  SUBCASE("a template without an HTML part gets no HTML, not an empty layout") {
    t.file("email/plain/subject.mustache", "s").file("email/plain/text.mustache", "t");
    const notify::Content plain = store.render("email/plain", "", kAnn);
    CHECK(plain.text == "t-- \nsent to Ann\n");
    CHECK(plain.html.empty());
  }
  SUBCASE("the layout's content and subject win over context values of the same name") {
    const notify::Content own = store.render(
        "email/note", "", {{"user", {{"first_name", "Ann"}}}, {"content", "X"}, {"subject", "Y"}});
    CHECK(own.html == c.html);
  }
}

TEST_CASE("user values are HTML-escaped in the body and in the layout, verbatim in text") {
  TemplateTree t;
  t.parts("email/note", "Hi {{user.first_name}}", "Hi {{user.first_name}}",
          "<p>Hi {{user.first_name}}</p>")
      .file("email/_layout/html.mustache", "<title>{{subject}}</title>{{{content}}}")
      .file("email/_layout/text.mustache", "{{{content}}} / {{user.first_name}}");
  TemplateStore store(t.root());
  const notify::Content c =
      store.render("email/note", "", {{"user", {{"first_name", "<b>Tom & \"Jerry\"</b>"}}}});
  CHECK(c.subject == "Hi <b>Tom & \"Jerry\"</b>");
  CHECK(c.text == "Hi <b>Tom & \"Jerry\"</b> / <b>Tom & \"Jerry\"</b>");
  // Escaped once: in the body, and in the subject the layout puts into the title.
  CHECK(c.html ==
        "<title>Hi &lt;b&gt;Tom &amp; &quot;Jerry&quot;&lt;/b&gt;</title>"
        "<p>Hi &lt;b&gt;Tom &amp; &quot;Jerry&quot;&lt;/b&gt;</p>");
}

TEST_CASE("layouts follow the locale fallback of the parts") {
  TemplateTree t;
  t.parts("email/note", "s", "t", "body")
      .parts("email/note/de", "s-de", "t-de", "Inhalt")
      .file("email/_layout/html.mustache", "<html lang=\"en\">{{{content}}}</html>")
      .file("email/_layout/de/html.mustache", "<html lang=\"de\">{{{content}}}</html>")
      .file("email/_layout/de-CH/html.mustache", "<html lang=\"de-CH\">{{{content}}}</html>");
  TemplateStore store(t.root());
  CHECK(store.render("email/note", "de-AT", kAnn).html == "<html lang=\"de\">Inhalt</html>");
  CHECK(store.render("email/note", "de-CH", kAnn).html == "<html lang=\"de-CH\">Inhalt</html>");
  CHECK(store.render("email/note", "de", kAnn).html == "<html lang=\"de\">Inhalt</html>");
  CHECK(store.render("email/note", "fr", kAnn).html == "<html lang=\"en\">body</html>");
  CHECK(store.render("email/note", "", kAnn).html == "<html lang=\"en\">body</html>");
  CHECK(store.render("email/note", "../x", kAnn).html == "<html lang=\"en\">body</html>");
  // What the store works out per locale is bounded, however many locales users have; the
  // ones it forgot are worked out again, the same.
  for (int i = 0; i < 200; ++i) {
    const std::string locale = (i % 2 == 0 ? "de-X" : "x") + std::to_string(i);
    CAPTURE(locale);
    CHECK(store.render("email/note", locale, kAnn).html ==
          (i % 2 == 0 ? "<html lang=\"de\">Inhalt</html>" : "<html lang=\"en\">body</html>"));
  }
  CHECK(store.render("email/note", "de-CH", kAnn).html == "<html lang=\"de-CH\">Inhalt</html>");
  CHECK(store.render("email/note", "fr", kAnn).text == "t");
}

TEST_CASE("partials come from _partials/, per locale, with the escaping of the part using them") {
  TemplateTree t;
  t.parts("email/note", "{{> sign}}", "Hi\n{{> sign}}", "<p>Hi</p>{{> sign}}")
      .file("_partials/sign.mustache", "from {{sender}}")
      .file("_partials/de/sign.mustache", "von {{sender}}")
      .file("_partials/README.txt", "{{> not a partial");  // only *.mustache files count
  TemplateStore store(t.root());
  const nlohmann::json ctx = {{"sender", "Tom & Jerry"}};
  const notify::Content en = store.render("email/note", "en-GB", ctx);
  CHECK(en.subject == "from Tom & Jerry");
  CHECK(en.text == "Hi\nfrom Tom & Jerry");
  CHECK(en.html == "<p>Hi</p>from Tom &amp; Jerry");
  CHECK(store.render("email/note", "de-AT", ctx).text == "Hi\nvon Tom & Jerry");

  SUBCASE("partials in the layout, and partials using partials") {
    t.file("email/_layout/html.mustache", "{{{content}}}{{> footer}}")
        .file("_partials/footer.mustache", "<footer>{{> sign}}</footer>");
    TemplateStore fresh(t.root());
    CHECK(fresh.render("email/note", "", ctx).html ==
          "<p>Hi</p>from Tom &amp; Jerry<footer>from Tom &amp; Jerry</footer>");
  }
  SUBCASE("a context value named like a partial is never rendered as a template") {
    const notify::Content c =
        store.render("email/note", "", {{"sender", "x"}, {"sign", "{{#boom}}"}, {"boom", "BOOM"}});
    CHECK(c.text == "Hi\nfrom x");
  }
}

TEST_CASE("partial errors: an unknown partial and a broken one are named") {
  TemplateTree t;
  t.parts("email/note", "s", "{{> nope}}", "h").parts("email/other", "s", "{{> broken}}", "h");
  t.parts("email/fine", "s", "fine", "h").file("_partials/broken.mustache", "{{#open}}x");
  TemplateStore store(t.root());
  CHECK(error_of(store, "email/note", "", kAnn) ==
        "template email/note/text.mustache: no partial 'nope' in _partials/");
  CHECK(contains(error_of(store, "email/other", "", kAnn), "template _partials/broken.mustache: "));
  // A broken partial only breaks the templates that use it.
  CHECK(store.render("email/fine", "", kAnn).text == "fine");
  // The failed render left nothing behind: the same template fails the same way again.
  CHECK(error_of(store, "email/note", "", kAnn) ==
        "template email/note/text.mustache: no partial 'nope' in _partials/");
}

TEST_CASE("parse errors name the file, layouts included") {
  TemplateTree t;
  t.parts("email/bad", "s", "t", "<p>{{#items}}unclosed</p>")
      .parts("email/good", "s", "t", "h")
      .file("email/_layout/text.mustache", "{{{content}}}{{/stray}}");
  TemplateStore store(t.root());
  CHECK(
      contains(error_of(store, "email/good", "", kAnn), "template email/_layout/text.mustache: "));
  fs::remove(fs::path(t.root()) / "email/_layout/text.mustache");
  TemplateStore fresh(t.root());
  CHECK(contains(error_of(fresh, "email/bad", "", kAnn), "template email/bad/html.mustache: "));
  CHECK(fresh.render("email/good", "", kAnn).html == "h");
}

TEST_CASE("layout and partial folders are not template names") {
  CHECK_FALSE(TemplateStore::valid_name("_layout"));
  CHECK_FALSE(TemplateStore::valid_name("email/_layout"));
  CHECK_FALSE(TemplateStore::valid_name("_partials/footer"));
  CHECK_FALSE(TemplateStore::valid_name("email/welcome/_x"));
  CHECK_FALSE(TemplateStore::valid_name("email/../_layout"));
  CHECK(TemplateStore::valid_name("email/new_movies"));
  CHECK(TemplateStore::valid_name("email/a_b"));
  TemplateStore store(NOTIFY_SOURCE_DIR "/templates");
  CHECK(error_of(store, "email/_layout", "", kAnn) == "template name not allowed: 'email/_layout'");
  CHECK(error_of(store, "_partials/footer", "", kAnn) ==
        "template name not allowed: '_partials/footer'");
}

TEST_CASE("a subject is one line") {
  TemplateTree t;
  t.parts("email/note", "Hi {{name}}\r\n", "t", "h");
  TemplateStore store(t.root());
  CHECK(store.render("email/note", "", {{"name", "A\r\nBcc: x@y"}}).subject == "Hi A Bcc: x@y");
}

TEST_CASE("the welcome email: body in its template, shell and footer from the email layout") {
  TemplateStore store(NOTIFY_SOURCE_DIR "/templates");
  const nlohmann::json ctx = {{"user", {{"first_name", "Ann <script>"}}},
                              {"confirm_url", "https://example.org/s/AbC12"}};
  const notify::Content en = store.render("email/welcome", "en", ctx);
  CHECK(en.subject == "Welcome, Ann <script>! Please confirm your email");
  CHECK(en.html.rfind("<!DOCTYPE html>\n<html lang=\"en\">", 0) == 0);
  CHECK(count(en.html, "<!DOCTYPE html>") == 1);
  CHECK(contains(en.html, "<title>Welcome, Ann &lt;script&gt;! Please confirm your email</title>"));
  CHECK(contains(en.html, "Hello Ann &lt;script&gt;,"));
  CHECK_FALSE(contains(en.html, "<script>"));
  CHECK(contains(en.html, "href=\"https://example.org/s/AbC12\""));
  CHECK(contains(en.html, "You receive this email because you have an account with notify."));
  CHECK_FALSE(contains(en.html, "Unsubscribe"));  // only when the context has unsubscribe_url
  CHECK(en.html.find("Hello Ann") < en.html.find("You receive this email"));
  CHECK(contains(en.text, "Hello Ann <script>,"));
  CHECK(contains(en.text, "https://example.org/s/AbC12"));
  CHECK(contains(en.text, "\n-- \nYou receive this email because"));

  const notify::Content de = store.render("email/welcome", "de-AT", ctx);
  CHECK(de.subject.rfind("Willkommen, Ann <script>!", 0) == 0);
  CHECK(de.html.rfind("<!DOCTYPE html>\n<html lang=\"de\">", 0) == 0);
  CHECK(contains(de.html, "Hallo Ann &lt;script&gt;,"));
  CHECK(contains(de.html, "Du erhältst diese E-Mail"));
  CHECK(contains(de.text, "Du erhältst diese E-Mail"));
}

TEST_CASE("every catalogue template renders its example context in English and German") {
  TemplateStore store(NOTIFY_SOURCE_DIR "/templates");
  for (const char* name : {"email/welcome", "email/password_changed", "email/new_movies",
                           "email/event_reminder", "email/generic"}) {
    for (const char* locale : {"en", "de"}) {
      CAPTURE(name);
      CAPTURE(locale);
      const notify::Content c = store.render(name, locale, example(name));
      CHECK_FALSE(c.subject.empty());
      CHECK_FALSE(contains(c.subject, "\n"));
      CHECK(contains(c.text, "Ann"));
      CHECK(contains(c.html, "Ann"));
      CHECK(contains(c.html, "</html>"));
      for (const std::string& part : {c.subject, c.text, c.html}) {
        CHECK_FALSE(contains(part, "{{"));
        CHECK_FALSE(contains(part, "}}"));
      }
    }
  }
}

TEST_CASE("email/new_movies lists every movie, escaped in HTML, and the unsubscribe link") {
  TemplateStore store(NOTIFY_SOURCE_DIR "/templates");
  nlohmann::json ctx = {{"user", {{"first_name", "Ann"}}},
                        {"movies",
                         {{{"title", "One"}, {"url", "https://m.example/1"}},
                          {{"title", "Tom & <Jerry>"}, {"url", "https://m.example/2?a=1&b=2"}},
                          {{"title", "Three"}, {"url", "https://m.example/3"}}}},
                        {"unsubscribe_url", "https://example.org/unsub?u=1&l=movies"}};
  const notify::Content c = store.render("email/new_movies", "en", ctx);
  CHECK(c.subject == "New movies for you, Ann");
  CHECK(count(c.html, "<li ") == 3);
  CHECK(contains(c.html, "<a href=\"https://m.example/1\" style=\"color: #2f6fed;\">One</a>"));
  CHECK(contains(c.html, "href=\"https://m.example/2?a=1&amp;b=2\""));
  CHECK(contains(c.html, ">Tom &amp; &lt;Jerry&gt;</a>"));
  CHECK(c.html.find(">One<") < c.html.find(">Three<"));
  CHECK(contains(c.text,
                 "- One\n  https://m.example/1\n- Tom & <Jerry>\n  https://m.example/2?a=1&b=2\n"
                 "- Three\n  https://m.example/3\n"));
  CHECK(contains(c.html, "<a href=\"https://example.org/unsub?u=1&amp;l=movies\""));
  CHECK(contains(c.text, "Unsubscribe from these emails: https://example.org/unsub?u=1&l=movies"));

  ctx.erase("unsubscribe_url");
  const notify::Content without = store.render("email/new_movies", "de", ctx);
  CHECK(without.subject == "Neue Filme für dich, Ann");
  CHECK(count(without.html, "<li ") == 3);
  CHECK_FALSE(contains(without.html, "abbestellen"));
  CHECK_FALSE(contains(without.text, "abbestellen"));
}

TEST_CASE("email/password_changed, email/event_reminder and email/generic show their values") {
  TemplateStore store(NOTIFY_SOURCE_DIR "/templates");
  const notify::Content pw = store.render("email/password_changed", "en",
                                          {{"user", {{"first_name", "Ann"}}},
                                           {"changed_at", "23 Nov 2026, 11:00"},
                                           {"support_url", "https://example.org/support"}});
  CHECK(pw.subject == "Your password was changed");
  CHECK(contains(pw.text, "changed on 23 Nov 2026, 11:00."));
  CHECK(contains(pw.text, "https://example.org/support"));
  CHECK(contains(pw.html, "href=\"https://example.org/support\""));

  const notify::Content nameless = store.render("email/password_changed", "de", {{"user", {}}});
  CHECK(nameless.text.rfind("Hallo,\n", 0) == 0);

  const notify::Content reminder = store.render("email/event_reminder", "en",
                                                {{"user", {{"first_name", "Ann"}}},
                                                 {"event_name", "Q&A"},
                                                 {"starts_at", "tomorrow at 19:00"},
                                                 {"event_url", "https://example.org/e/1"}});
  CHECK(reminder.subject == "Reminder: Q&A, tomorrow at 19:00");
  CHECK(contains(reminder.text, "Q&A starts tomorrow at 19:00."));
  CHECK(contains(reminder.html, "<strong>Q&amp;A</strong>"));
  CHECK(contains(reminder.html, "href=\"https://example.org/e/1\""));

  nlohmann::json generic = {{"user", {{"first_name", "Ann"}}},
                            {"title", "Export <ready>"},
                            {"message", "Line one\nLine two"},
                            {"action_url", "https://example.org/x"},
                            {"action_label", "Download"}};
  const notify::Content g = store.render("email/generic", "en", generic);
  CHECK(g.subject == "Export <ready>");
  CHECK(contains(g.text, "Line one\nLine two\n\nDownload: https://example.org/x\n"));
  CHECK(contains(g.html,
                 "<h1 style=\"font-size: 22px; margin: 0 0 16px;\">Export &lt;ready&gt;</h1>"));
  CHECK(contains(g.html, ">Download</a>"));
  generic.erase("action_label");
  CHECK(
      contains(store.render("email/generic", "de", generic).text, "Öffnen: https://example.org/x"));
  generic.erase("action_url");
  const notify::Content bare = store.render("email/generic", "en", generic);
  CHECK_FALSE(contains(bare.text, "https://example.org/x"));
  CHECK_FALSE(contains(bare.html, "https://example.org/x"));
  CHECK_FALSE(contains(bare.text, "Open"));
}

TEST_CASE("a template file or folder that is a symlink out of the templates folder is refused") {
  TemplateTree outside;
  outside.file("secret.txt", "the server's secret")
      .file("t/subject.mustache", "S")
      .file("t/text.mustache", "T");
  TemplateTree tree;
  tree.file("email/leak/text.mustache", "text");
  fs::create_symlink(fs::path(outside.root()) / "secret.txt",
                     fs::path(tree.root()) / "email/leak/subject.mustache");
  fs::create_directories(fs::path(tree.root()) / "email");
  fs::create_directory_symlink(fs::path(outside.root()) / "t",
                               fs::path(tree.root()) / "email/away");
  TemplateStore store(tree.root() + "/");
  CHECK(error_of(store, "email/leak", "", kAnn) ==
        "template email/leak/subject.mustache: leads outside the templates folder (a symlink?)");
  CHECK(error_of(store, "email/away", "", kAnn) ==
        "template email/away/subject.mustache: leads outside the templates folder (a symlink?)");

  // A partial that leads out fails only the templates using it.
  tree.parts("email/uses", "S", "{{> footer}}", "").parts("email/plain", "S", "T", "");
  fs::create_directories(fs::path(tree.root()) / "_partials");
  fs::create_symlink(fs::path(outside.root()) / "secret.txt",
                     fs::path(tree.root()) / "_partials/footer.mustache");
  TemplateStore partial_store(tree.root());
  CHECK(error_of(partial_store, "email/uses", "", kAnn) ==
        "template _partials/footer.mustache: leads outside the templates folder (a symlink?)");
  CHECK(partial_store.render("email/plain", "", kAnn).text == "T");

  // A symlink that stays inside the folder is fine.
  fs::create_symlink(fs::path(tree.root()) / "email/plain/text.mustache",
                     fs::path(tree.root()) / "email/leak/inside.mustache");
  tree.file("email/same/subject.mustache", "S");
  fs::create_symlink(fs::path(tree.root()) / "email/plain/text.mustache",
                     fs::path(tree.root()) / "email/same/text.mustache");
  TemplateStore inside_store(tree.root());
  CHECK(inside_store.render("email/same", "", kAnn).text == "T");
}

namespace {

// The store as it rendered before templates were compiled with their partials inlined: kainjow
// looking each partial up, and parsing its text, where {{> name}} stands. The reference the
// compiled templates must match byte for byte.
class ReferenceRenderer {
 public:
  explicit ReferenceRenderer(std::string root) : root_(std::move(root)) {}

  notify::Content render(const std::string& name, const std::string& locale,
                         const nlohmann::json& context) const {
    const auto data = to_data(context);
    const auto slash = name.find('/');
    const std::string layouts = name.substr(0, slash) + "/_layout";
    notify::Content c;
    auto wrap = [&](const std::string& part, const std::string& body) {
      const auto layout = file(layouts, locale, part);
      if (!layout) return body;
      kainjow::mustache::data extra{kainjow::mustache::data::type::object};
      extra.set("content", body);
      extra.set("subject", c.subject);
      return render_text(*layout, part == "html", locale, data, &extra);
    };
    c.subject = render_text(*file(name, locale, "subject"), false, locale, data, nullptr);
    while (!c.subject.empty() && (c.subject.back() == '\n' || c.subject.back() == '\r')) {
      c.subject.pop_back();
    }
    std::string line;
    for (char ch : c.subject) {
      if (ch != '\n' && ch != '\r') {
        line.push_back(ch);
      } else if (line.empty() || line.back() != ' ') {
        line.push_back(' ');
      }
    }
    c.subject = line;
    c.text = wrap("text", render_text(*file(name, locale, "text"), false, locale, data, nullptr));
    if (const auto html = file(name, locale, "html")) {
      c.html = wrap("html", render_text(*html, true, locale, data, nullptr));
    }
    return c;
  }

 private:
  static std::vector<std::string> chain(const std::string& locale) {
    std::vector<std::string> out;
    for (std::string l = locale; !l.empty();) {
      out.push_back(l);
      const auto dash = l.find_last_of("-_");
      l = dash == std::string::npos ? "" : l.substr(0, dash);
    }
    out.emplace_back();
    return out;
  }
  static std::optional<std::string> read(const fs::path& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) return std::nullopt;
    std::ostringstream text;
    text << in.rdbuf();
    return text.str();
  }
  std::optional<std::string> file(const std::string& folder, const std::string& locale,
                                  const std::string& part) const {
    for (const std::string& l : chain(locale)) {
      const fs::path dir = fs::path(root_) / folder / l;
      if (auto text = read(dir / (part + ".mustache"))) return text;
    }
    return std::nullopt;
  }
  static kainjow::mustache::data to_data(const nlohmann::json& value) {
    using kainjow::mustache::data;
    if (value.is_object()) {
      data out{data::type::object};
      for (const auto& [key, item] : value.items()) out.set(key, to_data(item));
      return out;
    }
    if (value.is_array()) {
      data out{data::type::list};
      for (const auto& item : value) out.push_back(to_data(item));
      return out;
    }
    if (value.is_string()) return data{value.get<std::string>()};
    if (value.is_boolean()) return data{value.get<bool>()};
    if (value.is_null()) return data{false};
    return data{value.dump()};
  }

  class Context : public kainjow::mustache::basic_context<std::string> {
   public:
    Context(const kainjow::mustache::data* data, const ReferenceRenderer& r, std::string locale)
        : values_(data), renderer_(r), locale_(std::move(locale)) {}
    void push(const kainjow::mustache::data* data) override { values_.push(data); }
    void pop() override { values_.pop(); }
    const kainjow::mustache::data* get(const std::string& name) const override {
      return values_.get(name);
    }
    const kainjow::mustache::data* get_partial(const std::string& name) const override {
      auto text = renderer_.file("_partials", locale_, name);
      REQUIRE(text);
      partials_.push_back(std::make_unique<kainjow::mustache::data>(*text));
      return partials_.back().get();
    }

   private:
    kainjow::mustache::context<std::string> values_;
    const ReferenceRenderer& renderer_;
    std::string locale_;
    mutable std::vector<std::unique_ptr<kainjow::mustache::data>> partials_;
  };

  std::string render_text(const std::string& text, bool html, const std::string& locale,
                          const kainjow::mustache::data& data,
                          const kainjow::mustache::data* extra) const {
    kainjow::mustache::mustache tmpl{text};
    REQUIRE(tmpl.is_valid());
    if (!html) tmpl.set_custom_escape([](const std::string& s) { return s; });
    Context ctx(&data, *this, locale);
    if (extra != nullptr) ctx.push(extra);
    std::string out = tmpl.render(ctx);
    REQUIRE(tmpl.is_valid());
    return out;
  }

  std::string root_;
};

// The example context, with values that escaping and line handling must treat alike.
nlohmann::json hostile(nlohmann::json context) {
  context["user"]["first_name"] = "<b>Zoë</b> & \"O'Brien\"\n  {{x}}";
  context["unsubscribe_url"] = "https://example.org/u?a=1&b=<2>";
  return context;
}

}  // namespace

TEST_CASE("compiled templates render every catalogue template as kainjow with partials did") {
  const std::string root = NOTIFY_SOURCE_DIR "/templates";
  TemplateStore store(root);
  const ReferenceRenderer reference(root);
  for (const auto& entry : fs::directory_iterator(root + "/email")) {
    const std::string folder = entry.path().filename().string();
    if (!entry.is_directory() || folder.front() == '_') continue;
    const std::string name = "email/" + folder;
    for (const char* locale : {"en", "de", "de-AT", "fr", ""}) {
      for (const nlohmann::json& context : {example(name), hostile(example(name))}) {
        CAPTURE(name);
        CAPTURE(locale);
        const notify::Content want = reference.render(name, locale, context);
        for (int again = 0; again < 2; ++again) {  // compiled on first use, then reused
          const notify::Content got = store.render(name, locale, context);
          CHECK(got.subject == want.subject);
          CHECK(got.text == want.text);
          CHECK(got.html == want.html);
        }
      }
    }
  }
}

TEST_CASE("inlined partials keep kainjow's lines, sections, comments and delimiters") {
  TemplateTree t;
  t.file("_partials/line.mustache", "  {{#items}}\n  - {{.}}\n  {{/items}}\n")
      .file("_partials/nested.mustache", "[{{> line}}]{{! {{> nope}} }}")
      .file("_partials/delims.mustache", "{{=<% %>=}}<% who %>")
      .file("_partials/de/line.mustache", "DE {{#items}}{{.}},{{/items}}\n");
  t.parts("email/a", "{{> nested}}\n",
          "Hi\n{{> line}}\n{{#flag}}\n{{> nested}}\n{{/flag}}\n{{^flag}}{{> nope}}{{/flag}}",
          "<p>{{{ > line}}}</p>\n {{> line }} \n{{> delims}}")
      .parts("email/b", "x", "{{=[[ ]]=}}[[> line]] [[who]]", "{{> nested}}");
  TemplateStore store(t.root());
  const ReferenceRenderer reference(t.root());
  const nlohmann::json context = {
      {"items", {"a<b", "c&d"}}, {"flag", true}, {"who", "<you>"}, {">line", "v"}};
  for (const char* name : {"email/a", "email/b"}) {
    for (const char* locale : {"en", "de"}) {
      CAPTURE(name);
      CAPTURE(locale);
      const notify::Content want = reference.render(name, locale, context);
      const notify::Content got = store.render(name, locale, context);
      CHECK(got.subject == want.subject);
      CHECK(got.text == want.text);
      CHECK(got.html == want.html);
    }
  }
}

TEST_CASE("values are looked up as kainjow's context finds them in the whole converted context") {
  // The store converts only the values a template looks up; kainjow's own context, given the
  // whole context converted, is the reference for every kind of lookup.
  const std::string lookups =
      "[{{name}}|{{user.first_name}}|{{user.missing}}|{{missing.x}}|{{count}}|{{ratio}}|"
      "{{nothing}}|{{yes}}|{{no}}|{{.}}|{{#.}}root{{/.}}|{{user..first_name}}|{{user.}}|{{.user}}]"
      "{{#user}}({{first_name}} {{name}} {{user.first_name}} {{.}}){{/user}}"
      "{{#items}}<{{.}}>{{/items}}"
      "{{#people}}[{{name}}/{{user.first_name}}/{{pet.name}}/{{#pet}}{{name}}{{kind}}{{/pet}}]"
      "{{/people}}"
      "{{^nothing}}no nothing{{/nothing}}{{^no}}not no{{/no}}{{^items}}no items{{/items}}"
      "{{^empty}}empty{{/empty}}{{#empty}}never{{/empty}}{{#count}}count {{.}}{{/count}}"
      "{{#deep.a.b}}{{c}}{{deep.a.b.c}}{{/deep.a.b}}{{deep.a.x.c}}\n";
  TemplateTree t;
  t.parts("email/lookups", "{{user.first_name}} {{#yes}}{{name}}{{/yes}}", lookups, lookups)
      .file("email/_layout/html.mustache", "{{subject}}|{{.}}|{{user.first_name}}|{{{content}}}")
      .file("email/_layout/text.mustache", "{{#.}}{{subject}}{{/.}}\n{{{content}}}{{name}}");
  const nlohmann::json context = {{"name", "<root & co>"},
                                  {"user", {{"first_name", "Zoë \"Z\""}, {"name", "user's name"}}},
                                  {"count", 3},
                                  {"ratio", 0.5},
                                  {"nothing", nullptr},
                                  {"yes", true},
                                  {"no", false},
                                  {"items", {"a<b", 2, true, nullptr}},
                                  {"empty", nlohmann::json::array()},
                                  {"people",
                                   {{{"name", "Ann"}, {"pet", {{"name", "Rex"}, {"kind", "dog"}}}},
                                    {{"user", {{"first_name", "shadowed"}}}, {"kind", "no pet"}}}},
                                  {"deep", {{"a", {{"b", {{"c", "deep c"}}}}}}},
                                  {"content", "a value named like the layout's content"},
                                  {"subject", "and one named subject"}};
  TemplateStore store(t.root());
  const ReferenceRenderer reference(t.root());
  for (const nlohmann::json& values : {context, nlohmann::json::object()}) {
    const notify::Content want = reference.render("email/lookups", "", values);
    for (int again = 0; again < 2; ++again) {
      const notify::Content got = store.render("email/lookups", "", values);
      CHECK(got.subject == want.subject);
      CHECK(got.text == want.text);
      CHECK(got.html == want.html);
    }
  }
  CHECK(contains(store.render("email/lookups", "", context).text, "(Zoë \"Z\" user's name"));
}

TEST_CASE("a context in layers renders as the layers merged, the earlier ones winning") {
  TemplateTree t;
  t.parts("email/layers", "{{user.first_name}} {{link}}",
          "{{#user}}{{first_name}}{{/user}} {{link}} {{shared}} {{#list}}{{.}}{{/list}}\n{{.}}",
          "<p>{{user.first_name}} {{link}} {{#.}}{{shared}}{{/.}}</p>");
  const nlohmann::json context = {{"user", {{"first_name", "from the event"}}},
                                  {"link", "https://example.org/event"},
                                  {"shared", "<shared>"},
                                  {"list", {1, 2}}};
  const nlohmann::json derived = {{"link", "https://example.org/derived"}};
  const nlohmann::json user = {{"user", {{"first_name", "Ann"}}}};
  nlohmann::json merged = context;
  for (const auto& [key, value] : derived.items()) merged[key] = value;
  merged["user"] = user["user"];
  TemplateStore store(t.root());
  const notify::Content want = store.render("email/layers", "", merged);
  const notify::Content got = store.render("email/layers", "", {&user, &derived, &context});
  CHECK(got.subject == "Ann https://example.org/derived");
  CHECK(got.subject == want.subject);
  CHECK(got.text == want.text);
  CHECK(got.html == want.html);
}

TEST_CASE("static text rendered in few pieces keeps kainjow's lines, blanks and standalone tags") {
  // Runs of text between tags are compiled into a few pieces each; kainjow decides line by line
  // whether a line held only a section tag, so lines of blanks, tabs, CR LF and lone CR next to
  // section tags are where a difference would show.
  const std::string lines =
      "  Dear reader,  here  we go\n"
      "  {{#items}}  \n"
      "\t- {{.}}  and  more\ttext \r\n"
      "  {{/items}}\n"
      "   \n"
      " \t \n"
      "middle  line  one\nmiddle line two\r\n\r\n  \nlast  part {{^items}}  no  items  {{/items}}\n"
      "{{#flag}}\n"
      "  inside   the   flag  \n"
      "{{/flag}}\n"
      "  {{#missing}}  never  shown  {{/missing}}  \n"
      "{{! a comment }}  after  the  comment\rlone  CR  line\r"
      "{{#items}}{{.}} , {{/items}}  end  without  a  break  ";
  TemplateTree t;
  t.parts("email/lines", "Subject  with  blanks {{#flag}} and  a  flag {{/flag}}\n", lines,
          "<p class=\"a  b\">{{#items}}\n  <li> {{.}} </li>\n{{/items}}</p>\n" + lines)
      .file("email/_layout/html.mustache", "<html>\n  <body>  {{{content}}}  </body>\n</html>")
      .file("email/_layout/text.mustache", "{{{content}}}\n-- \n  {{> sig}}  \n")
      .file("_partials/sig.mustache", "  the  team  {{#flag}}\n  and  {{who}}\n{{/flag}}\n");
  // A template with the mark the compiler uses for its pieces is rendered as written: its tag is
  // a lookup of the context's value, as kainjow's own context does it.
  t.parts("email/marked", "x", std::string("a b c {{\x01") + "0}} d e f\n", "y");
  TemplateStore store(t.root());
  const ReferenceRenderer reference(t.root());
  const nlohmann::json with = {{"items", {"a<b", "c"}}, {"flag", true}, {"who", "<we>"}};
  const nlohmann::json without = {{"items", nlohmann::json::array()}, {"flag", false}};
  const nlohmann::json marked = {
      {"\x01"
       "0",
       "the context's value"}};
  for (const auto& test :
       {std::pair{"email/lines", with}, {"email/lines", without}, {"email/marked", marked}}) {
    const std::string name = test.first;  // not bound: clang cannot capture it in CAPTURE
    const nlohmann::json& context = test.second;
    CAPTURE(name);
    CAPTURE(context.dump());
    const notify::Content want = reference.render(name, "", context);
    for (int again = 0; again < 2; ++again) {
      const notify::Content got = store.render(name, "", context);
      CHECK(got.subject == want.subject);
      CHECK(got.text == want.text);
      CHECK(got.html == want.html);
    }
  }
  CHECK(contains(store.render("email/marked", "", marked).text, "the context's value"));
}

TEST_CASE("shared layers: their converted values are used again only while they are the same") {
  TemplateTree t;
  t.parts("email/shared", "{{user.first_name}} {{n}}",
          "{{#list}}[{{.}}]{{/list}} {{n}} {{m.k}} {{#m}}{{k}}{{/m}} {{user.first_name}}\n{{.}}",
          "<p>{{n}} {{#list}}{{.}},{{/list}} {{m.k}}</p>");
  TemplateStore store(t.root());
  const nlohmann::json ann = {{"user", {{"first_name", "Ann"}}}};
  const nlohmann::json bob = {{"user", {{"first_name", "Bob"}}}};
  // Values that equal JSON yet not the same text (1 and 1.0, 0.0 and -0.0), and values that
  // change in place between renders, as a request's context does when its links are fetched.
  std::vector<nlohmann::json> contexts = {
      {{"n", 1}, {"list", {1, 2}}, {"m", {{"k", "a"}}}},
      {{"n", 1.0}, {"list", {1.0, 2}}, {"m", {{"k", "a"}}}},
      {{"n", 0.0}, {"list", {-0.0}}, {"m", {{"k", "b"}}}},
      {{"n", -0.0}, {"list", {0.0}}, {"m", {{"k", "b"}, {"j", 1}}}},
      {{"n", "<text>"}, {"list", nlohmann::json::array()}, {"m", nullptr}},
      {{"n", true}, {"list", {nullptr, false}}, {"m", {{"k", std::uint64_t{1} << 63}}}},
      {{"n", 1u}, {"list", {{{"k", 1}}}}, {"m", {{"k", -1}}}},
      {{"n", 1}, {"list", {1, 2}}, {"m", {{"k", "a"}}}},
  };
  nlohmann::json derived = {{"m", {{"k", "derived"}}}};
  for (int round = 0; round < 2; ++round) {
    for (nlohmann::json& context : contexts) {
      for (const nlohmann::json* user : {&ann, &bob}) {
        CAPTURE(context.dump());
        nlohmann::json merged = context;
        if (round == 1) merged["m"] = derived["m"];
        merged["user"] = (*user)["user"];
        const notify::Content want = TemplateStore(t.root()).render("email/shared", "", merged);
        const notify::Content got =
            round == 1 ? store.render("email/shared", "", {user}, {&derived, &context})
                       : store.render("email/shared", "", {user}, {&context});
        CHECK(got.subject == want.subject);
        CHECK(got.text == want.text);
        CHECK(got.html == want.html);
      }
    }
    derived["m"]["k"] = "changed in place";
  }
}

TEST_CASE("values are HTML-escaped as kainjow's html_escape escapes them") {
  TemplateTree t;
  t.parts("email/escaped", "{{v}}", "{{v}}", "<p title=\"{{v}}\">{{v}}|{{{v}}}|{{&v}}</p>");
  TemplateStore store(t.root());
  const ReferenceRenderer reference(t.root());
  std::mt19937 random(5);  // fixed: a failure can be replayed
  const std::string alphabet = "&<>\"'a Z;\n\xc3\xa9";
  for (int round = 0; round < 500; ++round) {
    std::string value;
    const int size = static_cast<int>(random() % 24);
    for (int i = 0; i < size; ++i) value.push_back(alphabet[random() % alphabet.size()]);
    CAPTURE(value);
    const nlohmann::json context = {{"v", value}};
    const notify::Content want = reference.render("email/escaped", "", context);
    const notify::Content got = store.render("email/escaped", "", context);
    CHECK(got.html == want.html);
    CHECK(got.text == want.text);
    CHECK(got.subject == want.subject);
  }
}

TEST_CASE("own values given as kainjow data render as the same values in a JSON layer") {
  TemplateTree t;
  t.parts("email/own", "{{user.first_name}} {{link}}",
          "{{#user}}{{first_name}} {{email}}{{/user}} {{link}} {{shared}} {{user.missing}}\n"
          "{{#.}}{{shared}}/{{user.first_name}}{{/.}}|{{.}}",
          "<p>{{user.first_name}} {{link}} {{#list}}{{.}}{{/list}}</p>");
  TemplateStore store(t.root());
  const nlohmann::json context = {{"user", {{"first_name", "from the event"}}},
                                  {"link", "https://example.org/event"},
                                  {"shared", "<shared>"},
                                  {"list", {1, 2}}};
  const nlohmann::json derived = {{"link", "https://example.org/derived"}};
  const nlohmann::json user = {{"user", {{"first_name", "Ann & <Bob>"}, {"email", "a@b"}}}};
  TemplateStore::Values fields{TemplateStore::Values::type::object};
  fields["first_name"] = TemplateStore::Values{"Ann & <Bob>"};
  fields["email"] = TemplateStore::Values{"a@b"};
  TemplateStore::Values own{TemplateStore::Values::type::object};
  own["user"] = std::move(fields);
  for (int again = 0; again < 2; ++again) {
    const notify::Content want = store.render("email/own", "", {&user, &derived, &context});
    const notify::Content got = store.render("email/own", "", own, {&derived, &context});
    CHECK(got.subject == "Ann & <Bob> https://example.org/derived");
    CHECK(got.subject == want.subject);
    CHECK(got.text == want.text);
    CHECK(got.html == want.html);
  }
}
