// Interpreter semantics (as @huggingface/jinja defines them): values, operators, filters, tests,
// statements, scoping, runtime errors and resource limits.
#include <gtest/gtest.h>

#include "core/error.h"
#include "template/chat_template.h"

namespace meshlm::tmpl {
namespace {

using ojson = nlohmann::ordered_json;

std::string render(const std::string& src, const ojson& ctx = ojson::object()) {
  return ChatTemplate::parse(src)->render(ctx);
}

std::string error_of(const std::string& src, const ojson& ctx = ojson::object()) {
  try {
    render(src, ctx);
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "no error for: " << src;
  return "";
}

TEST(TemplateValues, PrintsLikeHuggingFaceJinja) {
  EXPECT_EQ(render("{{ 1 }}|{{ 1.0 }}|{{ 2.5 }}|{{ -0.0 }}|{{ true }}|{{ none }}|{{ undefined_var }}"),
            "1|1.0|2.5|-0.0|true||");
  EXPECT_EQ(render("{{ [1, 'a', none] }}|{{ {'k': [true]} }}"), "[1, \"a\", null]|{\"k\": [true]}");
  EXPECT_EQ(render("{{ 10 / 4 }}|{{ 4 / 2 }}"), "2.5|2.0");
  ojson ctx = {{"x", 1.0}, {"big", 1e21}, {"small", 1e-7}};
  EXPECT_EQ(render("{{ x }} {{ big }} {{ small }}", ctx), "1 1e+21 1e-7");  // JSON 1.0 is an integer
}

TEST(TemplateValues, KeyOrderFollowsJavaScript) {
  ojson ctx = ojson::parse(R"({"d": {"b": 1, "a": 2, "10": 3, "2": 4}})");
  EXPECT_EQ(render("{{ d|tojson }}", ctx), R"({"2": 4, "10": 3, "b": 1, "a": 2})");
}

TEST(TemplateOperators, ArithmeticAndConcatenation) {
  EXPECT_EQ(render("{{ 7 // 2 }} {{ -7 // 2 }} {{ -7 % 3 }} {{ 2 ** 3 }} {{ 2 ** -1 }} {{ 1 + 2.0 }}"),
            "3 -4 -1 8 0.5 3.0");
  EXPECT_EQ(render("{{ 'a' ~ 1 ~ 2.0 ~ [1, 2] }}|{{ 'n' + 1 }}|{{ [1] + [2] }}"), "a121,2|n1|[1, 2]");
}

TEST(TemplateOperators, LooseEqualityAndMembership) {
  EXPECT_EQ(render("{{ 1 == '1' }}{{ 0 == false }}{{ none == undefined_var }}{{ [1] == [1] }}"),
            "truetruetruefalse");
  ojson ctx = {{"d", {{"a", 1}}}, {"l", {1, 2}}};
  EXPECT_EQ(render("{{ 'a' in d }}{{ 2 in l }}{{ 'x' in 'xyz' }}{{ 'q' not in missing }}", ctx),
            "truetruetruetrue");
}

TEST(TemplateOperators, ErrorsMatchTheReference) {
  EXPECT_NE(error_of("{{ missing + 1 }}").find("Cannot perform operation + on undefined values"),
            std::string::npos);
  EXPECT_NE(error_of("{{ none ~ 'x' }}").find("null values"), std::string::npos);
  EXPECT_NE(error_of("{{ 'a' < 'b' }}").find("Unknown operator"), std::string::npos);
}

TEST(TemplateFilters, StringFilters) {
  ojson ctx = {{"s", "  Hello World  "}};
  EXPECT_EQ(render("[{{ s|trim }}][{{ s|length }}][{{ s|upper }}][{{ 'ab cd'|title }}][{{ 'aBC'|capitalize }}]", ctx),
            "[Hello World][15][  HELLO WORLD  ][Ab Cd][ABC]");
  EXPECT_EQ(render("{{ '12ab'|int }} {{ 'x'|int }} {{ '2.5x'|float }} {{ 'z'|int(7) }}"), "12 0 2.5 7");
  EXPECT_EQ(render("{{ 'a\nb\n\nc'|indent }}|{{ 'a\nb'|indent(2, true) }}"), "a\n    b\n\n    c|  a\n  b");
  EXPECT_EQ(render("{{ 'aaa'|replace('a', 'b', 2) }} {{ 'abc'.replace('', '-') }}"), "bba -a-b-c-");
}

TEST(TemplateFilters, ListAndDictFilters) {
  ojson ctx = ojson::parse(R"({"l": [3, 1, 2], "w": ["b", "A", "a"],
    "people": [{"n": "x", "r": "u"}, {"n": "y", "r": "a"}, {"n": "z", "r": "u"}],
    "d": {"b": 1, "a": 2}})");
  EXPECT_EQ(render("{{ l|first }}{{ l|last }}{{ l|length }}{{ l|sort }}{{ l|reverse }}{{ l|join('-') }}", ctx),
            "323[1, 2, 3][2, 1, 3]3-1-2");
  EXPECT_EQ(render("{{ w|sort }}{{ w|sort(case_sensitive=true) }}{{ [1, 1, '1']|unique }}", ctx),
            "[\"A\", \"a\", \"b\"][\"A\", \"a\", \"b\"][1, \"1\"]");
  EXPECT_EQ(render("{{ people|selectattr('r', 'equalto', 'u')|map(attribute='n')|join }}"
                   "{{ people|rejectattr('r', 'equalto', 'u')|length }}",
                   ctx),
            "xz1");
  EXPECT_EQ(render("{{ d|items }}{{ d|dictsort }}{{ d|length }}", ctx),
            "[[\"b\", 1], [\"a\", 2]][[\"a\", 2], [\"b\", 1]]2");
  EXPECT_EQ(render("{{ missing|default('x') }}{{ ''|default('e', true) }}{{ none|default('n') }}"), "xe");
}

TEST(TemplateFilters, ToJson) {
  ojson ctx = ojson::parse(R"({"t": {"name": "f", "p": {"x": [1, 2.5, null, true]}, "e": {}, "u": "é\"\n"}})");
  EXPECT_EQ(render("{{ t|tojson }}", ctx),
            R"({"name": "f", "p": {"x": [1, 2.5, null, true]}, "e": {}, "u": "é\"\n"})");
  EXPECT_EQ(render("{{ t.p|tojson(indent=2) }}", ctx), "{\n  \"x\": [\n    1,\n    2.5,\n    null,\n    true\n  ]\n}");
  EXPECT_EQ(render("{{ t.u|tojson(ensure_ascii=true) }}", ctx), "\"\\u00e9\\\"\\n\"");
  EXPECT_EQ(render("{{ {'b': 1, 'a': 2}|tojson(sort_keys=true, separators=(',', ':')) }}"), "{\"a\":2,\"b\":1}");
}

TEST(TemplateTests, IsTests) {
  ojson ctx = {{"n", 3}, {"s", "x"}, {"d", ojson::object()}, {"l", ojson::array()}, {"z", nullptr}};
  EXPECT_EQ(render("{{ n is number }}{{ n is odd }}{{ s is string }}{{ d is mapping }}{{ l is iterable }}"
                   "{{ z is none }}{{ q is defined }}{{ q is undefined }}{{ n is not string }}",
                   ctx),
            "truetruetruetruetruetruefalsetruetrue");
  EXPECT_NE(error_of("{{ 1 is nosuch }}").find("Unknown test"), std::string::npos);
}

TEST(TemplateStatements, LoopsAndLoopVariable) {
  EXPECT_EQ(render("{% for x in [5, 6, 7] %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}"
                   "{{ 'F' if loop.first }}{{ 'L' if loop.last }}{{ loop.length }},{% endfor %}"),
            "103F3,2123,321L3,");
  EXPECT_EQ(render("{% for x in [] %}a{% else %}empty{% endfor %}"), "empty");
  EXPECT_EQ(render("{% for x in [1, 2, 3, 4] if x is even %}{{ x }}{% endfor %}"), "24");
  EXPECT_EQ(render("{% for k, v in {'a': 1, 'b': 2}.items() %}{{ k }}{{ v }}{% endfor %}"), "a1b2");
  EXPECT_EQ(render("{% for x in range(9) %}{% if x == 1 %}{% continue %}{% endif %}{% if x == 4 %}{% break %}{% endif %}{{ x }}{% endfor %}"),
            "023");
  // One scope for the whole loop: a set inside survives to the next iteration, not after.
  EXPECT_EQ(render("{% set x = 'o' %}{% for i in [1, 2] %}{{ x }}{% set x = i %}{% endfor %}{{ x }}"), "o1o");
}

TEST(TemplateStatements, NamespaceSetMacroCall) {
  EXPECT_EQ(render("{% set ns = namespace(n=0) %}{% for i in [1, 2, 3] %}{% set ns.n = ns.n + i %}{% endfor %}{{ ns.n }}"),
            "6");
  EXPECT_EQ(render("{% set b %}x{{ 1 + 1 }}{% endset %}{{ b }}{% set p, q = [1, 2] %}{{ q }}"), "x22");
  EXPECT_EQ(render("{% macro m(a, b='d') %}{{ a }}{{ b }}{% endmacro %}{{ m(1) }}{{ m(1, 2) }}{{ m(b=3, a=4) }}"),
            "1d1243");
  EXPECT_EQ(render("{% macro w() %}[{{ caller() }}]{% endmacro %}{% call w() %}in{% endcall %}"), "[in]");
  EXPECT_EQ(render("{% filter upper %}abc{% endfilter %}"), "ABC");
}

TEST(TemplateStatements, StringMethods) {
  EXPECT_EQ(render("{{ ' a b '.strip() }}|{{ 'a,b,c'.split(',', 1) }}|{{ 'abc'.startswith(('x', 'a')) }}|{{ 'A'.lower() }}"),
            "a b|[\"a\", \"b,c\"]|true|a");
  // As in @huggingface/jinja, strip() ignores its argument and strips all whitespace.
  EXPECT_EQ(render("[{{ '\n x \n'.strip('\n') }}]"), "[x]");
  EXPECT_EQ(render("{{ 'héllo'[1:3] }}{{ [1, 2, 3][::-1] }}{{ 'abc'[-1] }}"), "él[3, 2, 1]c");
}

TEST(TemplateErrors, RaiseExceptionMessageIsExact) {
  try {
    render("x{{ raise_exception('Roles must alternate') }}");
    FAIL();
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "[template] Roles must alternate");
  }
}

TEST(TemplateErrors, RuntimeErrorsHaveLocations) {
  std::string e = error_of("ok\n{{ x|length }}");
  EXPECT_NE(e.find("line 2"), std::string::npos) << e;
  EXPECT_NE(e.find("Cannot apply filter \"length\" to type: UndefinedValue"), std::string::npos) << e;
}

TEST(TemplateErrors, UnsupportedFeaturesRaise) {
  // Filters and methods that @huggingface/jinja does not implement are errors, never no-ops.
  for (const char* src : {"{{ [1]|batch(2) }}", "{{ 'a'.find('a') }}", "{{ [1]|select('odd') }}",
                          "{{ 1.5|round }}", "{{ x|d('y') }}", "{{ [].append(1) }}", "{{ dict(a=1) }}",
                          "{{ 'a'|wordcount }}"}) {
    SCOPED_TRACE(src);
    EXPECT_THROW(render(src), Error);
  }
}

TEST(TemplateLimits, RunawayTemplatesStop) {
  EXPECT_THROW(render("{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}"), Error);
  EXPECT_THROW(render("{{ range(100000000) }}"), Error);
  EXPECT_THROW(render("{% set ns = namespace(s='xxxxxxxxxxxxxxxx') %}{% for i in range(40) %}{% set ns.s = ns.s + ns.s %}{% endfor %}"),
               Error);
  // A namespace that contains itself renders an error, not a crash or a leak.
  EXPECT_THROW(render("{% set ns = namespace() %}{% set ns.self = ns %}{{ ns|tojson }}"), Error);
  EXPECT_THROW(render("{% break %}"), Error);
}

TEST(TemplateContext, ReservedNamesAndSortedJson) {
  EXPECT_THROW(render("x", ojson{{"namespace", 1}}), Error);
  // nlohmann::json sorts keys; ordered_json keeps them.
  nlohmann::json sorted = {{"d", {{"b", 1}, {"a", 2}}}};
  EXPECT_EQ(ChatTemplate::parse("{{ d|tojson }}")->render(sorted), R"({"a": 2, "b": 1})");
  EXPECT_EQ(render("{{ d|tojson }}", ojson::parse(R"({"d": {"b": 1, "a": 2}})")), R"({"b": 1, "a": 2})");
}

}  // namespace
}  // namespace meshlm::tmpl
