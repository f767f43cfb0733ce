// notify_render: preview a template without the pipeline (documentation/templates.md).
// Thin on purpose: parse the arguments, read the context, call etl::TemplateStore.
#include <CLI/CLI.hpp>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <sstream>
#include <string>

#include <nlohmann/json.hpp>

#include "render.hpp"

namespace {

struct Options {
  std::string name;
  std::string context;  // empty: {}
  std::string locale;
  std::string templates = "templates";
  std::string part = "all";
  std::string out;
};

void describe(CLI::App& app, Options& o) {
  app.add_option("TEMPLATE", o.name, "e.g. email/welcome")->required();
  app.add_option("--context", o.context,
                 "JSON object with the template's values; '-' reads stdin (default: {})");
  app.add_option("--locale", o.locale,
                 "e.g. de or de-AT; falls back to the default parts (default: none)");
  app.add_option("--templates", o.templates, "template root")->capture_default_str();
  app.add_option("--part", o.part, "what to print")
      ->check(CLI::IsMember({"subject", "text", "html", "all"}))
      ->capture_default_str();
  app.add_option("--out", o.out,
                 "write subject.txt, text.txt and html.html into DIR instead of printing");
}

struct Failure {
  std::string message;
};

nlohmann::json read_context(const std::string& source) {
  if (source.empty()) return nlohmann::json::object();
  std::string text;
  if (source == "-") {
    text.assign(std::istreambuf_iterator<char>(std::cin), {});
  } else {
    std::ifstream in(source, std::ios::binary);
    if (!in) throw Failure{"cannot read context file " + source};
    std::ostringstream s;
    s << in.rdbuf();
    text = s.str();
  }
  const std::string where = source == "-" ? "stdin" : source;
  nlohmann::json context;
  try {
    context = nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    throw Failure{"context " + where + " is not valid JSON: " + e.what()};
  }
  if (!context.is_object()) throw Failure{"context " + where + " must be a JSON object"};
  return context;
}

void write_file(const std::filesystem::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
  if (!out.flush()) throw Failure{"cannot write " + path.string()};
  std::cout << "wrote " << path.string() << "\n";
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{"Previews a template without the pipeline (documentation/templates.md).",
               "notify_render"};
  describe(app, o);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;  // a usage error exits with 2
  }
  try {
    const nlohmann::json context = read_context(o.context);
    if (!std::filesystem::is_directory(o.templates)) {
      throw Failure{"no templates directory " + o.templates + " (see --templates)"};
    }
    etl::TemplateStore store(o.templates);
    const notify::Content content = store.render(o.name, o.locale, context);
    const bool all = o.part == "all";
    if (!o.out.empty()) {
      std::error_code ec;
      std::filesystem::create_directories(o.out, ec);
      if (ec) throw Failure{"cannot create " + o.out + ": " + ec.message()};
      const std::filesystem::path dir(o.out);
      if (all || o.part == "subject") write_file(dir / "subject.txt", content.subject + "\n");
      if (all || o.part == "text") write_file(dir / "text.txt", content.text);
      if (all || o.part == "html") write_file(dir / "html.html", content.html);
    } else if (all) {
      std::cout << "Subject: " << content.subject << "\n\n--- text ---\n"
                << content.text << "\n--- html ---\n"
                << (content.html.empty() ? "(no html part)\n" : content.html);
    } else if (o.part == "subject") {
      std::cout << content.subject << "\n";
    } else {
      std::cout << (o.part == "text" ? content.text : content.html);
    }
    return 0;
  } catch (const Failure& e) {
    std::cerr << "notify_render: " << e.message << "\n";
  } catch (const etl::TemplateError& e) {
    std::cerr << "notify_render: " << e.what() << "\n";
  }
  return 1;
}
