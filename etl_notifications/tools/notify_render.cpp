// notify_render: preview a template without the pipeline (documentation/templates.md).
// Thin on purpose: parse the arguments, read the context, call etl::TemplateStore.
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <sstream>
#include <string>

#include <nlohmann/json.hpp>

#include "render.hpp"

namespace {

constexpr const char* kUsage =
    "usage: notify_render TEMPLATE [--context FILE|-] [--locale LOCALE] [--templates DIR]\n"
    "                     [--part subject|text|html|all] [--out DIR]\n"
    "  TEMPLATE     e.g. email/welcome\n"
    "  --context    JSON object with the template's values; '-' reads stdin (default: {})\n"
    "  --locale     e.g. de or de-AT; falls back to the default parts (default: none)\n"
    "  --templates  template root (default: templates)\n"
    "  --part       what to print (default: all)\n"
    "  --out        write subject.txt, text.txt and html.html into DIR instead of printing\n";

struct Options {
  std::string name;
  std::string context;  // empty: {}
  std::string locale;
  std::string templates = "templates";
  std::string part = "all";
  std::string out;
};

struct UsageError {
  std::string message;
};

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw UsageError{arg + " needs a value"};
      return argv[++i];
    };
    if (arg == "--context")
      o.context = value();
    else if (arg == "--locale")
      o.locale = value();
    else if (arg == "--templates")
      o.templates = value();
    else if (arg == "--part")
      o.part = value();
    else if (arg == "--out")
      o.out = value();
    else if (arg.size() > 1 && arg[0] == '-')
      throw UsageError{"unknown option " + arg};
    else if (o.name.empty())
      o.name = arg;
    else
      throw UsageError{"one template only (got " + o.name + " and " + arg + ")"};
  }
  if (o.name.empty()) throw UsageError{"no template given"};
  if (o.part != "all" && o.part != "subject" && o.part != "text" && o.part != "html") {
    throw UsageError{"--part must be subject, text, html or all"};
  }
  return o;
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
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "-h" || arg == "--help") {
      std::cout << kUsage;
      return 0;
    }
  }
  Options o;
  try {
    o = parse(argc, argv);
  } catch (const UsageError& e) {
    std::cerr << "notify_render: " << e.message << "\n" << kUsage;
    return 2;
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
