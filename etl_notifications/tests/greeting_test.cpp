// Greetings of the catalogue templates: a user without a first name is greeted "Hello," (or
// the locale's word), never "Hello ," with a space before the comma or "Welcome, !".

#include <doctest/doctest.h>

#include <fstream>
#include <string>

#include "render.hpp"

namespace {

nlohmann::json example(const std::string& name) {
  std::ifstream in(NOTIFY_SOURCE_DIR "/templates/" + name + "/example.json");
  REQUIRE(in);
  return nlohmann::json::parse(in);
}

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

constexpr const char* kCatalogue[] = {"email/welcome", "email/password_changed", "email/new_movies",
                                      "email/event_reminder", "email/generic"};

// The greeting word of each locale the catalogue has.
struct Greeting {
  const char* locale;
  const char* word;
};
constexpr Greeting kGreetings[] = {{"en", "Hello"}, {"de", "Hallo"}};

}  // namespace

TEST_CASE("every catalogue template greets a user without a first name without a gap") {
  etl::TemplateStore store(NOTIFY_SOURCE_DIR "/templates");
  for (const char* name : kCatalogue) {
    for (const Greeting& greeting : kGreetings) {
      const char* locale = greeting.locale;
      const char* word = greeting.word;
      CAPTURE(name);
      CAPTURE(locale);
      nlohmann::json context = example(name);
      context["user"].erase("first_name");
      const notify::Content c = store.render(name, locale, context);
      CHECK(contains(c.text, std::string(word) + ",\n"));
      CHECK(contains(c.html, std::string(word) + ",</"));
      for (const std::string& part : {c.subject, c.text, c.html}) {
        CHECK_FALSE(contains(part, " ,"));
        CHECK_FALSE(contains(part, ", !"));
        CHECK_FALSE(contains(part, ",!"));
        CHECK_FALSE(contains(part, "Ann"));
      }
    }
  }
}

TEST_CASE("a user with a first name is greeted by it in every part that names them") {
  etl::TemplateStore store(NOTIFY_SOURCE_DIR "/templates");
  for (const char* name : kCatalogue) {
    for (const Greeting& greeting : kGreetings) {
      const char* locale = greeting.locale;
      const char* word = greeting.word;
      CAPTURE(name);
      CAPTURE(locale);
      const notify::Content c = store.render(name, locale, example(name));
      CHECK(contains(c.text, std::string(word) + " Ann,\n"));
      CHECK(contains(c.html, std::string(word) + " Ann,</"));
    }
  }
}

TEST_CASE("the welcome subject leaves the name out, with its comma, when there is none") {
  etl::TemplateStore store(NOTIFY_SOURCE_DIR "/templates");
  nlohmann::json context = example("email/welcome");
  CHECK(store.render("email/welcome", "en", context).subject ==
        "Welcome, Ann! Please confirm your email");
  CHECK(store.render("email/welcome", "de", context).subject ==
        "Willkommen, Ann! Bitte bestätige deine E-Mail-Adresse");
  context["user"].erase("first_name");
  CHECK(store.render("email/welcome", "en", context).subject ==
        "Welcome! Please confirm your email");
  CHECK(store.render("email/welcome", "de", context).subject ==
        "Willkommen! Bitte bestätige deine E-Mail-Adresse");
}
