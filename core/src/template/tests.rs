#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use super::*;
use serde_json::json;

struct Headers(Vec<(&'static str, &'static str)>);

impl HeaderLookup for Headers {
    fn get_header(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }

    fn header_pairs(&self) -> Vec<(&str, &str)> {
        self.0.clone()
    }
}

fn curl() -> Headers {
    Headers(vec![("User-Agent", "curl/7.66.0"), ("X-Two", "first")])
}

fn try_render(src: &str, root: &Value) -> Result<Rendered, TemplateError> {
    let t = Template::parse(src)?;
    t.render(&RenderData {
        root,
        headers: &curl(),
    })
}

fn render(src: &str, root: &Value) -> String {
    match try_render(src, root) {
        Ok(Rendered::Text(s)) => s,
        other => panic!("{src:?}: unexpected {other:?}"),
    }
}

fn r(src: &str) -> String {
    render(src, &data())
}

fn render_err(src: &str, root: &Value) -> String {
    match try_render(src, root) {
        Err(e) => e.message,
        other => panic!("{src:?}: expected an error, got {other:?}"),
    }
}

fn parse_err(src: &str) -> String {
    match Template::parse(src) {
        Err(e) => e.message,
        Ok(_) => panic!("{src:?}: expected a parse error"),
    }
}

fn aes() -> Value {
    json!({"token": {
        "Raw": "<raw>",
        "Header": {"alg": "none", "typ": "JWT", "extra": "so much"},
        "Claims": {"sub": "1234567890", "name": "John Doe", "iat": 1516239022.0},
        "Signature": ""
    }})
}

fn data() -> Value {
    json!({
        "s": "hello",
        "empty": "",
        "n": 16,
        "f": 1.5,
        "zero": 0,
        "t": true,
        "null": null,
        "arr": ["a", "b", "c"],
        "nums": [1, 2.5, null],
        "m": {"b": 2, "a": "x", "c": [1]},
        "emptyArr": [],
        "emptyMap": {},
        "html": "<b>&'\"</b>",
    })
}

fn float(f: f64) -> String {
    render("{{ .f }}", &json!({ "f": f }))
}

// --- The AES article examples -------------------------------------------

#[test]
fn aes_header_field() {
    assert_eq!(render("{{ .token.Header.extra }}", &aes()), "so much");
}

#[test]
fn aes_missing_claim_renders_no_value() {
    assert_eq!(render("{{ .token.Claims.optional }}", &aes()), "<no value>");
}

#[test]
fn aes_has_key_not_do_not_set() {
    let src = r#"{{ if hasKey .token.Claims "optional" | not }}{{ doNotSet }}{{ end }}{{ .token.Claims.optional }}"#;
    assert_eq!(try_render(src, &aes()).unwrap(), Rendered::DoNotSet);
}

#[test]
fn aes_has_key_present_renders_value() {
    let src = r#"{{ if hasKey .token.Claims "sub" | not }}{{ doNotSet }}{{ end }}{{ .token.Claims.sub }}"#;
    assert_eq!(render(src, &aes()), "1234567890");
}

#[test]
fn aes_iat_renders_as_go_float64() {
    assert_eq!(render("{{ .token.Claims.iat }}", &aes()), "1.516239022e+09");
}

#[test]
fn aes_printf_zero_decimals_iat() {
    assert_eq!(
        render(r#"{{ printf "%.0f" .token.Claims.iat }}"#, &aes()),
        "1516239022"
    );
}

#[test]
fn aes_authenticated_line() {
    let src = r#"Authenticated {{ .token.Header.typ }}; sub={{ .token.Claims.sub }}; name={{ printf "%q" .token.Claims.name }}"#;
    assert_eq!(
        render(src, &aes()),
        r#"Authenticated JWT; sub=1234567890; name="John Doe""#
    );
}

#[test]
fn aes_http_request_header_get() {
    assert_eq!(
        render(r#"{{ .httpRequestHeader.Get "User-Agent" }}"#, &aes()),
        "curl/7.66.0"
    );
}

const BODY: &str = r#"{
  "errorMessage": {{ .message | json "  " }},
  {{- if .error.ValidationError }}
  "altErrorMessage": {{ if eq .error.ValidationError.Errors 16 }}"expired"{{ else }}"invalid"{{ end }},
  "errorCode": {{ .error.ValidationError.Errors | json "  "}},
  {{- end }}
  "httpStatus": "{{ .status_code }}",
  "requestId": {{ .request_id | json "  " }}
}"#;

#[test]
fn aes_error_body_template() {
    let root = json!({
        "message": "Token validation error: token is expired",
        "status_code": 401,
        "request_id": "abc",
        "error": {"ValidationError": {"Errors": 16}}
    });
    let out = render(BODY, &root);
    assert_eq!(
        out,
        "{\n  \"errorMessage\": \"Token validation error: token is expired\",\n  \"altErrorMessage\": \"expired\",\n  \"errorCode\": 16,\n  \"httpStatus\": \"401\",\n  \"requestId\": \"abc\"\n}"
    );
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["altErrorMessage"], "expired");
    assert_eq!(v["errorCode"], 16);
    assert_eq!(v["httpStatus"], "401");
    assert_eq!(v["requestId"], "abc");
}

#[test]
fn aes_error_body_without_validation_error() {
    let root = json!({"message": "no token", "status_code": 401, "request_id": "r1"});
    let v: Value = serde_json::from_str(&render(BODY, &root)).unwrap();
    assert_eq!(
        v,
        json!({"errorMessage": "no token", "httpStatus": "401", "requestId": "r1"})
    );
}

// --- Go value printing -----------------------------------------------------

#[test]
fn float_formatting_matches_go_percent_v() {
    let table: &[(f64, &str)] = &[
        (1.0, "1"),
        (0.5, "0.5"),
        (100000.0, "100000"),
        (999999.0, "999999"),
        (1e6, "1e+06"),
        (1234567.0, "1.234567e+06"),
        (1516239022.0, "1.516239022e+09"),
        (1e21, "1e+21"),
        (1e-5, "1e-05"),
        (0.0001, "0.0001"),
        (123456.789, "123456.789"),
        (-2.5, "-2.5"),
        (0.0, "0"),
        (-0.0, "-0"),
        (1.5e300, "1.5e+300"),
        (5e-324, "5e-324"),
        (0.1, "0.1"),
    ];
    for (f, want) in table {
        assert_eq!(float(*f), *want, "{f}");
    }
}

#[test]
fn integers_print_as_go_ints() {
    assert_eq!(
        render("{{ .n }} {{ .u }}", &json!({"n": -401, "u": u64::MAX})),
        "-401 18446744073709551615"
    );
}

#[test]
fn go_json_numbers_turns_integers_into_floats() {
    let claims = go_json_numbers(&json!({"iat": 1516239022, "a": [1, {"b": 2}]}));
    assert!(claims["iat"].is_f64());
    assert_eq!(
        render("{{ .iat }} {{ .a }}", &claims),
        "1.516239022e+09 [1 map[b:2]]"
    );
}

#[test]
fn bool_prints() {
    assert_eq!(r("{{ .t }} {{ false }}"), "true false");
}

#[test]
fn null_prints_no_value_at_top_level() {
    assert_eq!(r("{{ .null }}"), "<no value>");
}

#[test]
fn null_inside_array_prints_nil() {
    assert_eq!(r("{{ .nums }}"), "[1 2.5 <nil>]");
}

#[test]
fn array_prints_go_style() {
    assert_eq!(r("{{ .arr }}"), "[a b c]");
}

#[test]
fn map_prints_sorted_go_style() {
    assert_eq!(r("{{ .m }}"), "map[a:x b:2 c:[1]]");
}

#[test]
fn dot_alone_prints_root_map() {
    // The root also holds the request's headers, as AES's data does.
    assert_eq!(
        render("{{ . }}", &json!({"b": 1, "a": "z"})),
        "map[a:z b:1 httpRequestHeader:map[User-Agent:[curl/7.66.0] X-Two:[first]]]"
    );
    assert_eq!(render("{{ len . }}", &json!({"b": 1, "a": "z"})), "3");
}

#[test]
fn missing_chain_through_missing_is_no_value() {
    assert_eq!(r("{{ .nope.deeper.still }}"), "<no value>");
}

// --- Syntax ------------------------------------------------------------------

#[test]
fn plain_text_passes_through() {
    assert_eq!(r("just text { } }}"), "just text { } }}");
}

#[test]
fn trim_markers_remove_surrounding_whitespace() {
    assert_eq!(r("a  \n\t{{- .s -}} \n  b"), "ahellob");
}

#[test]
fn trim_only_left() {
    assert_eq!(r("a  {{- .s }}  b"), "ahello  b");
}

#[test]
fn negative_number_is_not_a_trim_marker() {
    assert_eq!(r("a {{-3}} b"), "a -3 b");
}

#[test]
fn comments_are_dropped() {
    assert_eq!(r("a{{/* hidden {{ }} */}}b"), "ab");
}

#[test]
fn comments_with_trim_markers() {
    assert_eq!(r("a  {{- /* c */ -}}  b"), "ab");
}

#[test]
fn string_literal_escapes() {
    assert_eq!(r(r#"{{ "a\tb\u00e9\x41\101\"" }}"#), "a\tbéAA\"");
}

#[test]
fn raw_string_literal() {
    assert_eq!(r("{{ `a\\n\"b` }}"), "a\\n\"b");
}

#[test]
fn number_literals() {
    assert_eq!(
        r("{{ 0x1F }} {{ 1.5 }} {{ -3 }} {{ 1e3 }} {{ 1_000 }} {{ 010 }}"),
        "31 1.5 -3 1000 1000 8"
    );
}

#[test]
fn char_constant_is_an_int() {
    assert_eq!(r("{{ 'a' }} {{ '\\n' }}"), "97 10");
}

#[test]
fn bool_and_nil_literals() {
    assert_eq!(r("{{ true }}{{ if not nil }}y{{ end }}"), "truey");
}

#[test]
fn nil_is_not_a_command() {
    assert!(render_err("{{ if nil }}{{ end }}", &data()).contains("nil is not a command"));
}

#[test]
fn pipe_passes_value_as_last_argument() {
    assert_eq!(r(r#"{{ "x" | printf "%s-%s" "a" }}"#), "a-x");
}

#[test]
fn multi_stage_pipeline() {
    assert_eq!(r(r#"{{ .s | printf "<%s>" | html }}"#), "&lt;hello&gt;");
}

#[test]
fn parenthesised_pipeline_argument() {
    assert_eq!(r(r#"{{ printf "%s!" (index .arr 1) }}"#), "b!");
}

#[test]
fn field_on_parenthesised_pipeline() {
    assert_eq!(r(r#"{{ (index .m "c") }} {{ (.m).a }}"#), "[1] x");
}

#[test]
fn variables_declare_and_use() {
    assert_eq!(
        r("{{ $x := .s }}[{{ $x }}]{{ $x = 5 }}{{ $x }}"),
        "[hello]5"
    );
}

#[test]
fn dollar_is_the_root_inside_with() {
    assert_eq!(r("{{ with .m }}{{ .a }}{{ $.s }}{{ end }}"), "xhello");
}

#[test]
fn variable_scope_ends_with_control() {
    assert!(parse_err("{{ if true }}{{ $x := 1 }}{{ end }}{{ $x }}")
        .contains("undefined variable \"$x\""));
}

// --- Control structures ----------------------------------------------------------

#[test]
fn if_else_if_else() {
    let src = "{{ if eq .n 1 }}one{{ else if eq .n 16 }}sixteen{{ else }}other{{ end }}";
    assert_eq!(r(src), "sixteen");
}

#[test]
fn go_truthiness() {
    let src = "{{ if .empty }}1{{ end }}{{ if .zero }}2{{ end }}{{ if .null }}3{{ end }}{{ if .emptyArr }}4{{ end }}{{ if .emptyMap }}5{{ end }}{{ if .missing }}6{{ end }}{{ if .s }}7{{ end }}{{ if .arr }}8{{ end }}{{ if .f }}9{{ end }}";
    assert_eq!(r(src), "789");
}

#[test]
fn with_sets_dot_and_else() {
    assert_eq!(
        r("{{ with .s }}[{{ . }}]{{ end }}{{ with .missing }}x{{ else }}none{{ end }}"),
        "[hello]none"
    );
}

#[test]
fn else_with_chain() {
    assert_eq!(
        r("{{ with .missing }}a{{ else with .s }}{{ . }}{{ end }}"),
        "hello"
    );
}

#[test]
fn range_over_array() {
    assert_eq!(r("{{ range .arr }}<{{ . }}>{{ end }}"), "<a><b><c>");
}

#[test]
fn range_over_map_sorted_keys() {
    assert_eq!(
        r("{{ range $k, $v := .m }}{{ $k }}={{ $v }};{{ end }}"),
        "a=x;b=2;c=[1];"
    );
}

#[test]
fn range_with_index_variable() {
    assert_eq!(
        r("{{ range $i, $e := .arr }}{{ $i }}{{ $e }}{{ end }}"),
        "0a1b2c"
    );
}

#[test]
fn range_else_on_empty_and_missing() {
    assert_eq!(
        r("{{ range .emptyArr }}x{{ else }}e1{{ end }}{{ range .missing }}x{{ else }}e2{{ end }}"),
        "e1e2"
    );
}

#[test]
fn range_break_and_continue() {
    assert_eq!(
        r(
            r#"{{ range .arr }}{{ if eq . "b" }}{{ continue }}{{ end }}{{ if eq . "c" }}{{ break }}{{ end }}{{ . }}{{ end }}"#
        ),
        "a"
    );
}

#[test]
fn range_over_int() {
    assert_eq!(r("{{ range 3 }}{{ . }}{{ end }}"), "012");
}

#[test]
fn range_over_string_is_an_error() {
    assert!(
        render_err("{{ range .s }}{{ end }}", &data()).contains("range can't iterate over hello")
    );
}

// --- Functions -------------------------------------------------------------------

#[test]
fn printf_basic_verbs() {
    assert_eq!(
        r(r#"{{ printf "%s|%q|%d|%v|%f|%.2f|%x|%%" .s .s .n .f .f .f .n }}"#),
        r#"hello|"hello"|16|1.5|1.500000|1.50|10|%"#
    );
}

#[test]
fn printf_width_and_flags() {
    assert_eq!(
        r(r#"{{ printf "[%5s][%-5s][%05d][%+d][%8.3f]" "ab" "ab" 42 7 3.14159 }}"#),
        "[   ab][ab   ][00042][+7][   3.142]"
    );
}

#[test]
fn printf_x_on_strings_and_floats() {
    assert_eq!(
        r(r#"{{ printf "%x %X %x %x" "hi" 255 1.0 .f }}"#),
        "6869 FF 0x1p+00 0x1.8p+00"
    );
}

#[test]
fn printf_q_on_int_is_a_rune() {
    assert_eq!(r(r#"{{ printf "%q %c" 65 66 }}"#), "'A' B");
}

#[test]
fn printf_q_escapes_like_go() {
    assert_eq!(
        r(r#"{{ printf "%q" "a\"b\\c\n\u0001é" }}"#),
        r#""a\"b\\c\n\x01é""#
    );
}

#[test]
fn printf_e_and_g() {
    assert_eq!(
        r(r#"{{ printf "%e %g %.3g %G" 1516239022.0 1e6 100000.0 1e-7 }}"#),
        "1.516239e+09 1e+06 1e+05 1E-07"
    );
}

#[test]
fn printf_fixed_rounds_half_to_even() {
    assert_eq!(
        r(r#"{{ printf "%.0f %.0f %.2f %.1f" 2.5 3.5 0.125 -0.04 }}"#),
        "2 4 0.12 -0.0"
    );
}

#[test]
fn printf_bad_verb_on_float() {
    assert_eq!(
        render(r#"{{ printf "%d" .token.Claims.iat }}"#, &aes()),
        "%!d(float64=1.516239022e+09)"
    );
}

#[test]
fn printf_missing_and_extra_args() {
    assert_eq!(r(r#"{{ printf "%s %d" "a" }}"#), "a %!d(MISSING)");
    assert_eq!(
        r(r#"{{ printf "%s" "a" 1 "b" }}"#),
        "a%!(EXTRA int=1, string=b)"
    );
}

#[test]
fn printf_nil_and_missing_args() {
    assert_eq!(
        r(r#"{{ printf "%v %s" .missing .null }}"#),
        "<nil> %!s(<nil>)"
    );
}

#[test]
fn printf_array_applies_verb_per_element() {
    assert_eq!(
        r(r#"{{ printf "%q %d" .arr .nums }}"#),
        r#"["a" "b" "c"] [1 %!d(float64=2.5) <nil>]"#
    );
}

#[test]
fn print_spacing_follows_go() {
    assert_eq!(r(r#"{{ print 1 2 "a" "b" 3 .missing }}"#), "1 2ab3 <nil>");
}

#[test]
fn println_always_spaces_and_ends_with_newline() {
    assert_eq!(r(r#"{{ println "a" "b" 1 }}"#), "a b 1\n");
}

#[test]
fn eq_compares_numbers_across_int_and_float() {
    assert_eq!(
        r("{{ eq .n 16.0 }} {{ eq .f 1.5 }} {{ eq 16 .n }} {{ eq .n 17 }}"),
        "true true true false"
    );
}

#[test]
fn eq_with_several_arguments_is_any() {
    assert_eq!(
        r(r#"{{ eq .s "x" "hello" "y" }} {{ eq .s "x" "y" }}"#),
        "true false"
    );
}

#[test]
fn eq_with_missing_value_is_false() {
    assert_eq!(
        r(r#"{{ eq .missing "x" }} {{ eq .missing nil }} {{ ne .missing 1 }}"#),
        "false true true"
    );
}

#[test]
fn eq_string_with_number_is_an_error() {
    assert!(render_err(r#"{{ eq .s 1 }}"#, &data())
        .contains("error calling eq: incompatible types for comparison"));
}

#[test]
fn ordering_functions() {
    assert_eq!(
        r(r#"{{ lt 1 2 }}{{ le 2 2.0 }}{{ gt .f 1 }}{{ ge "b" "a" }}{{ lt "b" "a" }}{{ gt 1 1 }}"#),
        "truetruetruetruefalsefalse"
    );
}

#[test]
fn ordering_on_bool_is_an_error() {
    assert!(render_err("{{ lt true false }}", &data()).contains("invalid type for comparison"));
}

#[test]
fn and_or_return_operands_and_short_circuit() {
    assert_eq!(
        r(
            r#"{{ or .missing "default" }} {{ and .s .n }} {{ and .zero doNotSet }} {{ or .s doNotSet }}"#
        ),
        "default 16 0 hello"
    );
}

#[test]
fn not_negates_truth() {
    assert_eq!(r("{{ not .empty }} {{ not .s }}"), "true false");
}

#[test]
fn index_arrays_maps_strings() {
    assert_eq!(
        r(
            r#"{{ index .arr 2 }} {{ index .m "a" }} {{ index .s 1 }} {{ index .m "c" 0 }} {{ index .m "zz" }}"#
        ),
        "c x 101 1 <no value>"
    );
}

#[test]
fn index_out_of_range_is_an_error() {
    assert!(render_err("{{ index .arr 3 }}", &data())
        .contains("error calling index: index out of range: 3"));
}

#[test]
fn index_with_float_is_an_error() {
    assert!(render_err("{{ index .arr 1.0 }}", &data())
        .contains("cannot index slice/array with type float64"));
}

#[test]
fn len_of_string_array_map() {
    assert_eq!(
        r("{{ len .s }} {{ len .arr }} {{ len .m }} {{ len \"é\" }}"),
        "5 3 3 2"
    );
}

#[test]
fn len_of_number_is_an_error() {
    assert!(render_err("{{ len .n }}", &data()).contains("len of type int"));
}

#[test]
fn has_key() {
    assert_eq!(
        r(
            r#"{{ hasKey .m "a" }} {{ hasKey .m "z" }} {{ hasKey .missing "a" }} {{ hasKey . "null" }}"#
        ),
        "true false false true"
    );
}

#[test]
fn do_not_set_aborts_render() {
    assert_eq!(
        try_render("a{{ doNotSet }}b", &data()).unwrap(),
        Rendered::DoNotSet
    );
}

#[test]
fn json_is_marshal_indent_with_tabs() {
    // AES: json.MarshalIndent(VALUE, PREFIX, "\t").
    assert_eq!(
        r(r#"{{ json "" .m }}"#),
        "{\n\t\"a\": \"x\",\n\t\"b\": 2,\n\t\"c\": [\n\t\t1\n\t]\n}"
    );
}

#[test]
fn json_prefix_starts_each_line_but_the_first() {
    assert_eq!(
        r(r#"{{ json " " .m }}"#),
        "{\n \t\"a\": \"x\",\n \t\"b\": 2,\n \t\"c\": [\n \t\t1\n \t]\n }"
    );
    assert_eq!(r(r#"{{ json "indent>" .s }}"#), "\"hello\"");
}

#[test]
fn json_empty_containers_and_null() {
    assert_eq!(
        r(
            r#"{{ json "  " .emptyArr }}{{ json "  " .emptyMap }}{{ json "" .missing }}{{ json "" .null }}"#
        ),
        "[]{}nullnull"
    );
}

#[test]
fn json_escapes_html_and_controls() {
    assert_eq!(
        r(r#"{{ json "" .html }} {{ json "" "\u2028\n\u0001" }}"#),
        r#""\u003cb\u003e\u0026'\"\u003c/b\u003e" "\u2028\n\u0001""#
    );
}

#[test]
fn json_floats_like_encoding_json() {
    let root = json!({"x": [1e6, 1516239022.0, 1e21, 1e-7, 0.5, -0.0]});
    assert_eq!(
        render(r#"{{ json "" .x }}"#, &root),
        "[\n\t1000000,\n\t1516239022,\n\t1e+21,\n\t1e-7,\n\t0.5,\n\t-0\n]"
    );
}

#[test]
fn json_requires_string_indent() {
    assert!(render_err("{{ json 2 .m }}", &data()).contains("expected string; got int"));
}

#[test]
fn urlquery_escapes_like_go() {
    assert_eq!(r(r#"{{ urlquery "a b&c=d/é~" }}"#), "a+b%26c%3Dd%2F%C3%A9~");
}

#[test]
fn html_escapes_like_go() {
    assert_eq!(r("{{ html .html }}"), "&lt;b&gt;&amp;&#39;&#34;&lt;/b&gt;");
}

#[test]
fn html_of_missing_value() {
    assert_eq!(r("{{ html .missing }}"), "&lt;no value&gt;");
}

#[test]
fn js_escapes_like_go() {
    assert_eq!(
        r(r#"{{ js "a'b\"c<d>=&\\\n" }}"#),
        r#"a\'b\"c\u003Cd\u003E\u003D\u0026\\\u000A"#
    );
}

#[test]
fn header_get_is_case_insensitive_and_missing_is_empty() {
    assert_eq!(
        r(r#"[{{ .httpRequestHeader.Get "user-agent" }}][{{ .httpRequestHeader.Get "X-Nope" }}]"#),
        "[curl/7.66.0][]"
    );
}

#[test]
fn header_get_via_pipe_and_with() {
    assert_eq!(
        r(
            r#"{{ "X-Two" | .httpRequestHeader.Get }}{{ with .httpRequestHeader }}{{ .Get "x-two" }}{{ end }}"#
        ),
        "firstfirst"
    );
}

#[test]
fn header_get_wrong_arity_is_an_error() {
    assert!(render_err(r#"{{ .httpRequestHeader.Get }}"#, &data())
        .contains("wrong number of args for Get: want 1 got 0"));
}

// --- Errors ------------------------------------------------------------------

#[test]
fn parse_error_unknown_function() {
    assert_eq!(
        parse_err("{{ foo 1 }}"),
        r#"template: 1:3: function "foo" not defined"#
    );
}

#[test]
fn parse_error_single_brace() {
    assert!(parse_err("{{ .a }").contains(r#"unexpected "}" in operand"#));
}

#[test]
fn parse_error_unclosed_action() {
    assert!(parse_err("a {{ .a ").contains("unclosed action"));
}

#[test]
fn parse_error_unexpected_end() {
    assert!(parse_err("a {{ end }}").contains("unexpected {{end}}"));
}

#[test]
fn parse_error_missing_end() {
    assert!(parse_err("{{ if .a }}x").contains("unexpected EOF"));
}

#[test]
fn parse_error_empty_action() {
    assert!(parse_err("{{ }}").contains("missing value for command"));
}

#[test]
fn parse_error_empty_if() {
    assert!(parse_err("{{ if }}{{ end }}").contains("missing value for if"));
}

#[test]
fn parse_error_unterminated_string() {
    assert!(parse_err(r#"{{ "abc }}"#).contains("unterminated quoted string"));
}

#[test]
fn parse_error_unclosed_comment() {
    assert!(parse_err("{{/* abc }}").contains("unclosed comment"));
}

#[test]
fn parse_error_non_executable_pipeline_stage() {
    assert!(parse_err(r#"{{ .a | "x" }}"#).contains("non executable command in pipeline stage 2"));
}

#[test]
fn parse_error_break_outside_range() {
    assert!(parse_err("{{ break }}").contains("{{break}} outside {{range}}"));
}

#[test]
fn parse_error_position_is_line_and_column() {
    assert_eq!(
        parse_err("ab\ncd {{ nope }}"),
        r#"template: 2:6: function "nope" not defined"#
    );
}

#[test]
fn parse_error_unclosed_paren() {
    assert!(parse_err("{{ (printf \"a\" }}").contains("unclosed left paren"));
}

#[test]
fn defined_templates_run_with_their_dot() {
    assert_eq!(
        r(r#"{{ define "T" }}<{{ . }}>{{ end }}{{ template "T" .s }}{{ template "T" }}"#),
        "<hello><<no value>>"
    );
    assert_eq!(r(r#"{{ block "B" .n }}[{{ . }}]{{ end }}"#), "[16]");
    assert!(render_err(r#"{{ template "x" }}"#, &data()).contains("no such template"));
    assert!(
        parse_err(r#"{{ define "a" }}x{{ end }}{{ define "a" }}y{{ end }}"#)
            .contains("multiple definition")
    );
    assert!(parse_err(r#"{{ if 1 }}{{ define "a" }}x{{ end }}{{ end }}"#).contains("unexpected"));
}

#[test]
fn recursive_templates_are_bounded() {
    let e = render_err(
        r#"{{ define "r" }}{{ template "r" . }}{{ end }}{{ template "r" 1 }}"#,
        &data(),
    );
    assert!(e.contains("nested deeper"), "{e}");
}

#[test]
fn render_error_field_on_string() {
    assert_eq!(
        render_err("{{ .s.b }}", &data()),
        "template: 1:3: executing at <.s.b>: can't evaluate field b in type string"
    );
}

#[test]
fn render_error_field_through_null() {
    assert!(render_err("{{ .null.b }}", &data()).contains("nil pointer evaluating interface {}.b"));
}

#[test]
fn render_error_wrong_arg_count() {
    assert!(render_err("{{ len }}", &data()).contains("wrong number of args for len: want 1 got 0"));
}

#[test]
fn render_error_argument_to_field() {
    assert!(render_err(r#"{{ .s "x" }}"#, &data()).contains("s is not a method but has arguments"));
}

// --- Bounds and hostile input ---------------------------------------------------

#[test]
fn parse_depth_is_bounded_for_parens() {
    let src = format!("{{{{ {}1{} }}}}", "(".repeat(150), ")".repeat(150));
    assert!(parse_err(&src).contains("nesting exceeds"));
    let ok = format!("{{{{ {}1{} }}}}", "(".repeat(50), ")".repeat(50));
    assert_eq!(r(&ok), "1");
}

#[test]
fn parse_depth_is_bounded_for_controls() {
    let src = format!(
        "{}x{}",
        "{{ if true }}".repeat(150),
        "{{ end }}".repeat(150)
    );
    assert!(parse_err(&src).contains("nesting exceeds"));
}

#[test]
fn output_is_capped() {
    let big = "x".repeat(40 * 1024);
    let root = json!({ "big": big });
    assert!(render_err("{{ .big }}{{ .big }}", &root).contains("output exceeds 65536 bytes"));
}

#[test]
fn function_results_are_capped() {
    assert!(render_err(r#"{{ $x := printf "%900000d" 1 }}"#, &data()).contains("exceeds"));
}

#[test]
fn huge_string_claim_renders_when_within_cap() {
    let big = "é".repeat(20_000);
    let root = json!({ "big": big.clone() });
    assert_eq!(render("{{ .big }}", &root), big);
}

fn deep_value(depth: usize) -> Value {
    let mut v = json!("leaf");
    for _ in 0..depth {
        let mut m = serde_json::Map::new();
        m.insert("a".into(), v);
        v = Value::Object(m);
    }
    v
}

#[test]
fn deeply_nested_claims_do_not_overflow() {
    let root = json!({ "c": deep_value(1000) });
    assert!(render_err("{{ .c }}", &root).contains("nested deeper"));
    assert!(render_err(r#"{{ json "" .c }}"#, &root).contains("nested deeper"));
    assert!(render_err(r#"{{ printf "%v" .c }}"#, &root).contains("nested deeper"));
}

#[test]
fn moderately_nested_claims_render() {
    let root = json!({ "c": deep_value(3) });
    assert_eq!(render("{{ .c }}", &root), "map[a:map[a:map[a:leaf]]]");
}

#[test]
fn step_budget_bounds_nested_ranges() {
    let arr: Vec<u32> = (0..1000).collect();
    let root = json!({ "a": arr });
    let err = render_err(
        "{{ range .a }}{{ range $.a }}{{ range $.a }}{{ end }}{{ end }}{{ end }}",
        &root,
    );
    assert!(err.contains("steps"), "{err}");
}

#[test]
fn hostile_template_sources_do_not_panic() {
    for src in [
        "{{",
        "}}",
        "{{-",
        "{{- }}",
        "{{ - }}",
        "{{ . . }}",
        "{{ $ }}",
        "{{ $x }}",
        "{{ ( }}",
        "{{ ) }}",
        "{{ | }}",
        "{{ .a | }}",
        "{{ 'ab' }}",
        "{{ '' }}",
        "{{ \"\\q\" }}",
        "{{ 0x }}",
        "{{ 1e }}",
        "{{ 99999999999999999999 }}",
        "{{ .é }}",
        "{{ else }}",
        "{{ if 1 }}{{ else }}{{ else }}{{ end }}",
        "{{ range $a, $b, $c := . }}{{ end }}",
        "{{/*",
        "{{/* */ }}",
        "{{ \u{0} }}",
        "{{ nil }}",
        "{{ 1 2 }}",
        "{{ .a.b 1 }}",
        "é{{ \"é\" }}é",
        "{{ printf }}",
        "{{ printf \"%\" }}",
        "{{ printf \"%!\" 1 }}",
        "{{ printf \"%*d\" 1.5 2 }}",
        "{{ index }}",
        "{{ index nil }}",
        "{{ (nil).a }}",
        "{{ eq }}",
        "{{ eq 1 }}",
        "{{ with $x := .m }}{{ $x.a }}{{ end }}",
        "{{ 1.a }}",
        "{{ `abc",
    ] {
        if let Ok(t) = Template::parse(src) {
            let _ = t.render(&RenderData {
                root: &data(),
                headers: &curl(),
            });
        }
    }
}

#[test]
fn render_does_not_need_reparse_and_is_repeatable() {
    let t = Template::parse("{{ .s }}-{{ .n }}").unwrap();
    let d = data();
    for _ in 0..3 {
        let out = t
            .render(&RenderData {
                root: &d,
                headers: &curl(),
            })
            .unwrap();
        assert_eq!(out, Rendered::Text("hello-16".into()));
    }
}

/// The issue's examples, with what Go 1.19 renders for them (from
/// core/tests/go_oracle; the differential test checks thousands more).
#[test]
fn issue_examples_render_as_go() {
    let headers = Headers(vec![("accept", "text/html"), ("x-a", "1"), ("x-a", "2")]);
    let claims = go_json_object(br#"{"s":"\ud800x"}"#).unwrap();
    let root = json!({"token": {"Claims": go_json_numbers(&Value::Object(claims))}});
    let go = |src: &str, root: &Value| match Template::parse(src)
        .unwrap()
        .render(&RenderData {
            root,
            headers: &headers,
        })
        .unwrap()
    {
        Rendered::Text(s) => s,
        Rendered::DoNotSet => panic!("doNotSet"),
    };
    assert_eq!(
        go(
            r#"{{ printf "%+v|%#v|%[2]s %[1]s|%.3v|%T %T|%#q|%+q|% x|%#x|%#U|%#g|%b" 5 "a" 3.14159 (index "ab" 0) "x" "é" "hi" 255 0x1F600 1.0 1.0 }}"#,
            &root
        ),
        "5|\"a\"|a %!s(int=5)|a|float64 uint8|`x`|\"\\u00e9\"|68 69|0xff|U+1F600 '😀'|1.00000|4503599627370496p-52"
    );
    assert_eq!(
        go(
            r#"{{ .httpRequestHeader }}|{{ .httpRequestHeader.Accept }}|{{ .httpRequestHeader.accept }}|{{ index .httpRequestHeader "Accept" 0 }}|{{ len .httpRequestHeader }}|{{ .httpRequestHeader.Values "Accept" }}|{{ range $k, $v := .httpRequestHeader }}{{ $k }}={{ $v }}{{ end }}"#,
            &root
        ),
        "map[Accept:[text/html] X-A:[1 2]]|[text/html]|<no value>|text/html|2|[text/html]|Accept=[text/html]X-A=[1 2]"
    );
    assert_eq!(
        go(
            r#"{{ define "T" }}[{{ . }}]{{ end }}{{ template "T" 0x1p-2 }}{{ .token.Claims.s | }}{{ 1i }}"#,
            &root
        ),
        "[0.25]\u{FFFD}x(0+1i)"
    );
    let body = crate::jwt::filter::error_data(401, "m", "r", None);
    assert_eq!(
        go(r#"{{ . | json "" }}"#, &body),
        "{\n\t\"message\": \"m\",\n\t\"status_code\": 401\n}"
    );
    let body = crate::jwt::filter::error_data(503, "m", "r", Some(16));
    assert_eq!(
        go(r#"{{ json ">" .error }}"#, &body),
        "{\n>\t\"ValidationError\": {\n>\t\t\"Errors\": 16\n>\t}\n>}"
    );
}
