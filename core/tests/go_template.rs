//! Differential test: every generated template is rendered by real Go
//! (`text/template`, with AES's function map and data shapes: the program in
//! `go_oracle/`) and by the core's engine; wherever Go renders, the bytes must
//! be equal. Where Go refuses (parse) or fails (exec), the engine may do
//! either, and the case only counts as "Go refused".
//!
//! Needs `go` on PATH (`scripts/setup` installs Debian's `golang-go`). Without
//! it the test fails when `CI` is set, and says why and passes otherwise.
//! `GO_TEMPLATE_DIFFS=path` writes every difference there.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::arithmetic_side_effects
)]

use base64::Engine as _;
use portcullis_core::jwt::filter::error_data;
use portcullis_core::request::Headers;
use portcullis_core::template::{go_json_numbers, go_json_object, RenderData, Rendered, Template};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};

#[derive(Clone)]
struct Case {
    group: &'static str,
    template: String,
    kind: Kind,
    headers: Vec<(String, String)>,
    claims_json: String,
    status: u16,
    errors: Option<u32>,
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Header,
    Body,
}

const RAW: &str = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiIxMjM0NTY3ODkwIn0.sig";
const HEADER_JSON: &str = r#"{"alg":"none","typ":"JWT","extra":"so much","kid":7}"#;

/// The claims most cases see: one of every JSON kind, and the shapes tokens
/// carry (scopes as a string and a list, nested objects, unicode).
const CLAIMS_JSON: &str = r#"{
  "sub": "1234567890", "name": "John Doe", "iat": 1516239022, "exp": 2000000000.5,
  "admin": true, "off": false, "nul": null, "zero": 0, "neg": -0.5, "f": 3.25,
  "int": 42, "big": 1e21, "small": 1e-7, "huge": 12345678901234567890,
  "empty": "", "s": "héllo wörld", "q": "a\"b\\c<d>&e'f", "ctl": "tab\there\nnl\u0001\u007f",
  "uni": "日本語 \u2028 \u00ad \ud83d\ude00", "spaces": "  x  ",
  "scope": "read write", "scopes": ["read", "write", "admin"],
  "arr": ["a", 1, true, null, {"k": "v"}, [2.5]], "earr": [], "eobj": {},
  "obj": {"k": "v", "n": 2, "b": false, "z": null, "inner": {"deep": [1, "x"]}},
  "aud": ["api", "web"], "groups": ["dev", "ops"], "roles": {"admin": true, "user": false},
  "Keys": {"Zeta": 1, "alpha": 2, "Beta": 3, "_u": 4, "10": 5, "9": 6}
}"#;

fn headers() -> Vec<(String, String)> {
    [
        ("accept", "text/html"),
        ("user-agent", "curl/8.5.0"),
        ("x-multi", "a"),
        ("x-multi", "b"),
        ("x-empty", ""),
        ("authorization", "Bearer abc.def.ghi"),
        ("x-forwarded-for", "10.0.0.1, 10.0.0.2"),
        ("cookie", "a=1; b=2"),
        ("x-unicode", "héllo"),
    ]
    .iter()
    .map(|(n, v)| (n.to_string(), v.to_string()))
    .collect()
}

fn header_case(group: &'static str, template: impl Into<String>) -> Case {
    Case {
        group,
        template: template.into(),
        kind: Kind::Header,
        headers: headers(),
        claims_json: CLAIMS_JSON.to_string(),
        status: 401,
        errors: None,
    }
}

fn body_case(
    group: &'static str,
    template: impl Into<String>,
    status: u16,
    errors: Option<u32>,
) -> Case {
    Case {
        group,
        template: template.into(),
        kind: Kind::Body,
        headers: headers(),
        claims_json: "{}".to_string(),
        status,
        errors,
    }
}

/// A Go string literal for `s` (for building templates).
fn lit(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

/// Operands of every kind the data and the literals give.
const VALUES: &[&str] = &[
    ".token.Claims.sub",
    ".token.Claims.s",
    ".token.Claims.empty",
    ".token.Claims.q",
    ".token.Claims.ctl",
    ".token.Claims.uni",
    ".token.Claims.iat",
    ".token.Claims.exp",
    ".token.Claims.zero",
    ".token.Claims.neg",
    ".token.Claims.f",
    ".token.Claims.big",
    ".token.Claims.small",
    ".token.Claims.huge",
    ".token.Claims.admin",
    ".token.Claims.off",
    ".token.Claims.nul",
    ".token.Claims.missing",
    ".token.Claims.scopes",
    ".token.Claims.arr",
    ".token.Claims.earr",
    ".token.Claims.obj",
    ".token.Claims.eobj",
    ".token.Claims.Keys",
    ".token.Header.kid",
    ".httpRequestHeader",
    ".httpRequestHeader.Accept",
    "(.httpRequestHeader.Get \"x-multi\")",
    "(.httpRequestHeader.Values \"X-Multi\")",
    "42",
    "-7",
    "0",
    "3.5",
    "-0.0",
    "1e3",
    "0x1F",
    "0o17",
    "0b101",
    "1_000",
    "0x1p-2",
    "'a'",
    "'\\n'",
    "'日'",
    "1i",
    "2.5i",
    "\"str\"",
    "\"\"",
    "`raw\\n`",
    "true",
    "false",
    "nil",
    "(index \"héllo\" 1)",
    "(len \"abc\")",
    "(slice \"héllo\" 1 3)",
    "(print 1 2)",
];

const VERBS: &[char] = &[
    'v', 'd', 's', 'q', 'x', 'X', 'o', 'O', 'b', 'c', 'U', 'e', 'E', 'f', 'F', 'g', 'G', 't', 'T',
    'z',
];

const FLAGS: &[&str] = &[
    "", "+", "#", " ", "-", "0", "6", "-6", "06", ".2", "8.3", "+#", "# ", "+08.3", "-#10", ".0",
    "+ ", "#.1", "0-5",
];

fn generate() -> Vec<Case> {
    let mut cases = Vec::new();

    // Plain printing of every value, alone and through print/println/len/index...
    for v in VALUES {
        if *v == "nil" {
            continue;
        }
        cases.push(header_case("print", format!("{{{{ {v} }}}}")));
        cases.push(header_case(
            "print",
            format!("{{{{ print {v} }}}}|{{{{ print {v} {v} }}}}|{{{{ print \"s\" {v} 1 }}}}"),
        ));
        cases.push(header_case("print", format!("{{{{ println {v} 2 }}}}")));
        cases.push(header_case(
            "print",
            format!("{{{{ {v} | print }}}}|{{{{ {v} | printf \"%v\" }}}}"),
        ));
        cases.push(header_case(
            "escapers",
            format!("{{{{ html {v} }}}}|{{{{ js {v} }}}}|{{{{ urlquery {v} }}}}"),
        ));
        cases.push(header_case(
            "escapers",
            format!("{{{{ html {v} 1 }}}}|{{{{ js \"x\" {v} }}}}|{{{{ {v} | urlquery }}}}"),
        ));
        cases.push(header_case("builtins", format!("{{{{ len {v} }}}}")));
        cases.push(header_case(
            "builtins",
            format!("{{{{ index {v} 0 }}}}|{{{{ index {v} 1 }}}}"),
        ));
        cases.push(header_case(
            "builtins",
            format!("{{{{ index {v} \"k\" }}}}|{{{{ index {v} \"Accept\" 0 }}}}"),
        ));
        cases.push(header_case(
            "builtins",
            format!("{{{{ slice {v} 1 }}}}|{{{{ slice {v} 0 1 }}}}|{{{{ slice {v} }}}}"),
        ));
        cases.push(header_case("builtins", format!("{{{{ not {v} }}}}|{{{{ and {v} 1 }}}}|{{{{ or {v} \"x\" }}}}|{{{{ and 1 {v} }}}}|{{{{ or 0 {v} }}}}")));
        cases.push(header_case("control", format!("{{{{ if {v} }}}}T{{{{ else }}}}F{{{{ end }}}}|{{{{ with {v} }}}}<{{{{ . }}}}>{{{{ else }}}}none{{{{ end }}}}")));
        cases.push(header_case(
            "control",
            format!("{{{{ range {v} }}}}[{{{{ . }}}}]{{{{ else }}}}empty{{{{ end }}}}"),
        ));
        cases.push(header_case(
            "control",
            format!("{{{{ range $k, $e := {v} }}}}{{{{ $k }}}}={{{{ $e }}}};{{{{ end }}}}"),
        ));
        cases.push(header_case(
            "variables",
            format!(
                "{{{{ $x := {v} }}}}{{{{ $x }}}}|{{{{ $y := 1 }}}}{{{{ $y = {v} }}}}{{{{ $y }}}}"
            ),
        ));
        cases.push(header_case(
            "hasKey",
            format!(
                "{{{{ hasKey {v} \"k\" }}}}|{{{{ hasKey .token.Claims {} }}}}",
                v
            ),
        ));
        cases.push(header_case("call", format!("{{{{ call {v} }}}}")));
        cases.push(header_case(
            "fields",
            format!("{{{{ {v}.k }}}}|{{{{ ({v}).k }}}}"),
        ));
    }

    // printf: every verb with every flag over every value.
    for v in VALUES {
        for verb in VERBS {
            for flags in FLAGS {
                cases.push(header_case(
                    "printf",
                    format!("{{{{ printf \"%{flags}{verb}|\" {v} }}}}"),
                ));
            }
        }
        cases.push(header_case(
            "printf-p",
            format!("{{{{ printf \"%p\" {v} | len | lt 0 }}}}"),
        ));
    }

    // printf: argument indexes, star widths, errors.
    let formats = [
        "%[2]s %[1]s",
        "%[1]d %d",
        "%[3]d",
        "%[0]d",
        "%[x]d",
        "%[2]*[1]d",
        "%[3]*.[2]*[1]f",
        "%*d",
        "%-*d",
        "%.*f",
        "%*.*e",
        "%[1]*d",
        "%d %d %d",
        "%",
        "%!",
        "%%",
        "%-%",
        "% d",
        "%+d %+d",
        "%#v %#v",
        "%v %v %v",
        "x%[2]vy%vz",
        "%.[2]d",
        "%[1]",
        "%[2]v %[2]v",
        "%10.4v|%-10.4v",
        "%010s",
        "%-010d",
        "%+.3e",
        "%#.0f",
        "%#.0e",
        "%#g",
        "%#.3g",
        "%#x %#X %#o %#b",
        "% x",
        "% X",
        "%# x",
        "%#q",
        "%+q",
        "%#+q",
        "%#U",
        "%#c",
        "%5c",
        "%05q",
        "%.1q",
        "%.0s",
        "%.5x",
        "%08.3f",
        "%+08d",
        "%x %X",
        "%100000000d",
        "%.20000f",
        "%!d(string=x)",
        "%-+ #0d",
        "%v%",
        "%3%",
        "%[-1]d",
        "%[99999999999999999999]d",
    ];
    let arg_sets = [
        "\"a\" \"b\" \"c\"",
        "1 2 3",
        "3.25 8 2",
        "-5 .token.Claims.f 2",
        ".token.Claims.s .token.Claims.iat",
        ".token.Claims.arr .token.Claims.obj",
        "6 \"x\"",
        "-6 42",
        "\"w\" 42",
        "",
        ".token.Claims.nul 1",
        "1.5 2 3",
        "'x' 65 1",
        ".httpRequestHeader .httpRequestHeader.Accept",
    ];
    for f in formats {
        for a in arg_sets {
            cases.push(header_case(
                "printf-args",
                format!("{{{{ printf {} {a} }}}}", lit(f)),
            ));
        }
    }

    // Comparisons across kinds.
    let cmp_values = [
        "1",
        "1.0",
        "2",
        "-1",
        "'a'",
        "97",
        "\"a\"",
        "\"b\"",
        "\"\"",
        "true",
        "false",
        "nil",
        ".token.Claims.int",
        ".token.Claims.iat",
        ".token.Claims.zero",
        ".token.Claims.s",
        ".token.Claims.admin",
        ".token.Claims.nul",
        ".token.Claims.missing",
        ".token.Claims.arr",
        ".token.Claims.obj",
        ".httpRequestHeader",
        ".httpRequestHeader.Accept",
        "(.httpRequestHeader.Get \"accept\")",
        "(len \"ab\")",
        "(index \"a\" 0)",
        "1i",
        ".token.Claims.huge",
    ];
    for a in cmp_values {
        for b in cmp_values {
            cases.push(header_case(
                "compare",
                format!(
                    "{{{{ eq {a} {b} }}}}|{{{{ ne {a} {b} }}}}|{{{{ lt {a} {b} }}}}|{{{{ le {a} {b} }}}}|{{{{ gt {a} {b} }}}}|{{{{ ge {a} {b} }}}}"
                ),
            ));
        }
        cases.push(header_case(
            "compare",
            format!("{{{{ eq {a} 1 \"a\" true }}}}|{{{{ eq {a} }}}}"),
        ));
    }

    // The header map.
    for t in [
        "{{ .httpRequestHeader }}",
        "{{ .httpRequestHeader.Accept }}",
        "{{ .httpRequestHeader.accept }}",
        "{{ .httpRequestHeader.X-Multi }}",
        "{{ index .httpRequestHeader \"X-Multi\" }}",
        "{{ index .httpRequestHeader \"X-Multi\" 1 }}",
        "{{ index .httpRequestHeader \"x-multi\" }}",
        "{{ index .httpRequestHeader \"Nope\" }}",
        "{{ len .httpRequestHeader }}",
        "{{ len .httpRequestHeader.Accept }}",
        "{{ range $k, $v := .httpRequestHeader }}{{ $k }}={{ $v }};{{ end }}",
        "{{ range .httpRequestHeader }}{{ index . 0 }};{{ end }}",
        "{{ range .httpRequestHeader.X-Multi }}{{ . }}{{ end }}",
        "{{ .httpRequestHeader.Get \"X-MULTI\" }}",
        "{{ .httpRequestHeader.Get \"nope\" }}|",
        "{{ .httpRequestHeader.Values \"x-multi\" }}",
        "{{ .httpRequestHeader.Values \"nope\" }}",
        "{{ .httpRequestHeader.Get }}",
        "{{ .httpRequestHeader.Get 1 }}",
        "{{ .httpRequestHeader.Get \"a\" \"b\" }}",
        "{{ \"Accept\" | .httpRequestHeader.Get }}",
        "{{ .httpRequestHeader.Clone }}",
        "{{ .httpRequestHeader.Del \"Accept\" }}",
        "{{ .httpRequestHeader.Nope }}",
        "{{ .httpRequestHeader.Accept.x }}",
        "{{ hasKey .httpRequestHeader \"Accept\" }}",
        "{{ $ }}",
        "{{ . }}",
        "{{ len . }}",
        "{{ len $ }}",
        "{{ range $k, $v := . }}{{ $k }};{{ end }}",
        "{{ printf \"%v|%+v|%#v|%T|%s|%q|%x\" .httpRequestHeader .httpRequestHeader .httpRequestHeader .httpRequestHeader .httpRequestHeader .httpRequestHeader .httpRequestHeader }}",
        "{{ printf \"%v|%+v|%#v|%T|%s|%q|%x|%d\" .httpRequestHeader.Accept .httpRequestHeader.Accept .httpRequestHeader.Accept .httpRequestHeader.Accept .httpRequestHeader.Accept .httpRequestHeader.Accept .httpRequestHeader.Accept .httpRequestHeader.Accept }}",
        "{{ printf \"%#v %T\" (.httpRequestHeader.Values \"nope\") (.httpRequestHeader.Values \"nope\") }}",
        "{{ if .httpRequestHeader.Nope }}y{{ else }}n{{ end }}",
        "{{ with .httpRequestHeader.Accept }}{{ index . 0 }}{{ end }}",
        "{{ eq (.httpRequestHeader.Get \"Accept\") \"text/html\" }}",
        "{{ .httpRequestHeader.Get \"X-Unicode\" | printf \"%q %x\" }}",
        "{{ .httpRequestHeader.Get \"Authorization\" | js }}",
    ] {
        cases.push(header_case("header-map", t));
        let mut none = header_case("header-map", t);
        none.headers.clear();
        cases.push(none);
    }

    // Control structures, variables, trimming, comments, definitions.
    for t in [
        "{{ range $i, $e := .token.Claims.scopes }}{{ if $i }},{{ end }}{{ $e }}{{ end }}",
        "{{ range .token.Claims.scopes }}{{ if eq . \"write\" }}{{ break }}{{ end }}{{ . }}{{ end }}",
        "{{ range .token.Claims.scopes }}{{ if eq . \"write\" }}{{ continue }}{{ end }}{{ . }}{{ end }}",
        "{{ range $i, $e := .token.Claims.Keys }}{{ $i }}:{{ $e }} {{ end }}",
        "{{ range 3 }}{{ . }}{{ end }}",
        "{{ range $i := 3 }}{{ $i }}{{ end }}",
        "{{ range .token.Claims.s }}{{ . }}{{ end }}",
        "{{ range .token.Claims.iat }}{{ . }}{{ end }}",
        "{{ $x := 1 }}{{ range .token.Claims.scopes }}{{ $x = . }}{{ end }}{{ $x }}",
        "{{ $x := 1 }}{{ if true }}{{ $x := 2 }}{{ $x }}{{ end }}{{ $x }}",
        "{{ $x := 1 }}{{ with $x }}{{ $x = 5 }}{{ end }}{{ $x }}",
        "{{ with $x := .token.Claims.obj }}{{ $x.k }}{{ end }}",
        "{{ if $x := .token.Claims.missing }}y{{ else if $y := .token.Claims.sub }}{{ $y }}{{ end }}",
        "{{ with .token.Claims.missing }}a{{ else with .token.Claims.sub }}{{ . }}{{ end }}",
        "{{ with .token.Claims.missing }}a{{ else with .token.Claims.nul }}b{{ else }}c{{ end }}",
        "{{ if .token.Claims.missing }}a{{ else if .token.Claims.off }}b{{ else if .token.Claims.admin }}c{{ end }}",
        "a  {{- .token.Claims.sub -}}  b",
        "a \n\t {{- .token.Claims.sub }} \n b {{- /* c */ -}} \n c",
        "{{/* a comment */}}x{{- /* trimmed */ -}} y",
        "{{- 3 }} {{ -3 }} {{- -3 -}} z",
        "{{ define \"T\" }}<{{ . }}>{{ end }}{{ template \"T\" .token.Claims.sub }}{{ template \"T\" }}",
        "{{ block \"B\" .token.Claims.name }}[{{ . }}]{{ end }}|{{ template \"B\" 5 }}",
        "{{ define \"a\" }}A{{ template \"b\" . }}{{ end }}{{ define \"b\" }}B{{ . }}{{ end }}{{ template \"a\" 1 }}",
        "{{ template \"nope\" }}",
        "{{ define \"x\" }}{{ $ }}{{ end }}{{ template \"x\" 7 }}",
        "{{ .token.Claims.sub | printf \"%s-%s\" \"a\" }}",
        "{{ .token.Claims.sub | }}",
        "{{ .token.Claims.sub | | }}",
        "{{ .token.Claims.sub | print | }}",
        "{{ (.token.Claims.obj).inner.deep }}",
        "{{ .token.Claims.obj.inner.deep }}",
        "{{ .token.Claims.obj.missing.deeper }}",
        "{{ .token.Claims.nul.x }}",
        "{{ .token.Claims.sub.x }}",
        "{{ $.token.Claims.sub }}{{ with .token.Claims.obj }}{{ $.token.Claims.name }}{{ .k }}{{ end }}",
        "{{ 0x1.8p1 }} {{ 1e-3 }} {{ 0x10 }} {{ 1_0.5 }} {{ 0X1P+2 }} {{ 1.5i }} {{ 0i }} {{ 'a' }} {{ '\\x41' }} {{ '\\u00e9' }}",
        "{{ printf \"%T %T %T %T %T %T\" 1 1.0 'a' 1i \"s\" true }}",
        "{{ printf \"%v %T\" 0x1p-2 0x1p-2 }}",
        "{{ 1e100 }} {{ 1e-100 }} {{ 123456789.0 }} {{ 1.0 }} {{ 100000000000000000000 }}",
        "{{ -0 }} {{ +1 }} {{ 08 }}",
        "{{ \"\\u00e9\\x41\\101\\a\\v\" }}",
        "{{ `a\\nb` }}",
        "{{ nil }}",
        "{{ . | len }}",
        "{{ .token.Raw }}.{{ .token.Signature }}.{{ .token.Header.alg }}",
        "{{ and .token.Claims.missing (index .token.Claims.missing 0) }}",
        "{{ or .token.Claims.sub (index .token.Claims.missing 0) }}",
        "{{ and }}",
        "{{ not }}",
        "{{ .token.Claims.sub 1 }}",
        "{{ \"x\" 1 }}",
        "{{ $ := 1 }}",
        "{{ $x }}",
        "{{ else }}",
        "{{ end }}",
        "{{ if }}{{ end }}",
        "{{ range $a, $b, $c := . }}{{ end }}",
        "{{ break }}",
        "{{ .token.Claims.iat | printf \"%.0f\" }}",
        "{{ index .token.Claims.arr 4 \"k\" }}|{{ index .token.Claims.arr 5 0 }}|{{ index .token.Claims.obj \"inner\" \"deep\" 1 }}",
        "{{ index .token.Claims.arr -1 }}",
        "{{ index .token.Claims.arr 1.0 }}",
        "{{ index .token.Claims.arr 'a' }}",
        "{{ index .token.Claims.obj 1 }}",
        "{{ index .token.Claims.obj nil }}",
        "{{ index nil 1 }}",
        "{{ index .token.Claims.missing 1 }}",
        "{{ index .token.Claims.obj \"nope\" }}|{{ index .token.Claims.obj \"z\" }}",
        "{{ slice .token.Claims.scopes 1 2 }}|{{ slice .token.Claims.scopes 3 }}|{{ slice .token.Claims.scopes 2 1 }}|{{ slice .token.Claims.scopes 0 1 4 }}",
        "{{ slice .token.Claims.s 0 2 }}|{{ slice .token.Claims.s 1 2 3 }}",
        "{{ len .token.Claims.uni }} {{ len .token.Claims.scopes }} {{ len .token.Claims.obj }}",
        "{{ if and .token.Claims.admin (eq .token.Claims.sub \"1234567890\") }}yes{{ end }}",
        "{{ range $i, $c := .token.Claims.uni }}{{ $i }}{{ end }}",
        "{{ printf \"%s\" }}",
        "{{ printf }}",
        "{{ printf 1 }}",
        "{{ println }}",
        "{{ print }}",
        "{{ html }}{{ js }}{{ urlquery }}",
        "{{ print nil }} {{ print nil nil }} {{ println nil 1 }} {{ printf \"%v %d\" nil nil }}",
        "{{ html nil }} {{ js nil 1 }} {{ urlquery nil }}",
        "{{ len nil }}",
        "{{ not nil }} {{ and nil 1 }} {{ or nil 0 }}",
        "{{ eq nil nil }}",
        "{{ hasKey .token.Claims \"sub\" }} {{ hasKey .token.Claims \"nope\" }} {{ hasKey .token.Claims.missing \"x\" }}",
        "{{ if hasKey .token.Claims \"optional\" | not }}{{ doNotSet }}{{ end }}{{ .token.Claims.optional }}",
        "{{ if hasKey .token.Claims \"sub\" | not }}{{ doNotSet }}{{ end }}{{ .token.Claims.sub }}",
        "a{{ doNotSet }}b",
        "{{ doNotSet 1 }}",
        "{{ json \"\" . }}",
    ] {
        cases.push(header_case("syntax", t));
    }

    // Unicode and surrogates in claims.
    for (claims, t) in [
        (r#"{"s":"\ud800x"}"#, "{{ .token.Claims.s }}|{{ printf \"%q %x %U\" .token.Claims.s .token.Claims.s .token.Claims.s }}"),
        (r#"{"s":"a\udc00\ud800b"}"#, "{{ .token.Claims.s }}|{{ len .token.Claims.s }}"),
        (r#"{"s":"\ud83d\ude00"}"#, "{{ .token.Claims.s }}|{{ printf \"%+q\" .token.Claims.s }}"),
        (r#"{"s":"\ud83dx\ude00"}"#, "{{ .token.Claims.s }}"),
        (r#"{"s":"\uDBFF\uDFFF\u0000"}"#, "{{ printf \"%q\" .token.Claims.s }}"),
        (r#"{"a":1,"a":2}"#, "{{ .token.Claims.a }}"),
        (r#"{"n":-0}"#, "{{ .token.Claims.n }}|{{ printf \"%v %f\" .token.Claims.n .token.Claims.n }}"),
        (r#"{"n":5e-324}"#, "{{ .token.Claims.n }}|{{ printf \"%e %x %b\" .token.Claims.n .token.Claims.n .token.Claims.n }}"),
        (r#"{"n":1.7976931348623157e308}"#, "{{ .token.Claims.n }}|{{ printf \"%f\" .token.Claims.n | len }}"),
        (r#"{"n":0.1}"#, "{{ printf \"%.20f %.17g %b %.3x %#.2X\" .token.Claims.n .token.Claims.n .token.Claims.n .token.Claims.n .token.Claims.n }}"),
        (r#"{"n":123456789012345678}"#, "{{ .token.Claims.n }}|{{ printf \"%d %.0f\" .token.Claims.n .token.Claims.n }}"),
        (r#"{"k":{"b":1,"a":{"d":[1,{"e":null}],"c":""}}}"#, "{{ .token.Claims.k }}|{{ printf \"%+v|%#v|%q\" .token.Claims.k .token.Claims.k .token.Claims.k }}"),
    ] {
        let mut c = header_case("unicode", t);
        c.claims_json = claims.to_string();
        cases.push(c);
    }

    // Bodies: AES's error data.
    let body_templates = [
        "{{ . | json \"\" }}",
        "{{ json \"\" . }}",
        "{{ json \"  \" . }}",
        "{{ json \"indent>\" . }}",
        "{{ json \"\" .message }}",
        "{{ json \"\" .error }}",
        "{{ json \"x\" .error }}",
        "{{ json \"\" .status_code }}",
        "{{ json \"\" nil }}",
        "{{ json \"\" .missing }}",
        "{{ json 1 . }}",
        "{{ json \"\" }}",
        "{{ . }}",
        "{{ .status_code }} {{ .httpStatus }} {{ .message }} {{ .request_id }} {{ .requestId }}",
        "{{ .error }}|{{ .error.ValidationError }}|{{ .error.ValidationError.Errors }}",
        "{{ if .error.ValidationError }}{{ printf \"%d %b\" .error.ValidationError.Errors .error.ValidationError.Errors }}{{ else }}none{{ end }}",
        "{{ printf \"%T %T\" .status_code .message }}",
        "{\"error\":{{ .message | printf \"%q\" }},\"code\":{{ .status_code }}}",
        "<html><body>{{ .message | html }} ({{ .status_code }})</body></html>",
        "{{ range $k, $v := . }}{{ $k }}={{ $v }};{{ end }}",
        "{{ len . }}",
        "{{ json \"\" (index . \"message\") }}",
        "{{ if ge .status_code 500 }}retry later ({{ .request_id }}){{ else }}{{ .message }}{{ end }}",
    ];
    for t in body_templates {
        for (status, errors) in [
            (400, None),
            (401, Some(16)),
            (401, Some(4)),
            (403, None),
            (503, None),
        ] {
            cases.push(body_case("body", t, status, errors));
        }
    }

    // The AES documentation's examples (the JWT filter page, its
    // injectRequestHeaders and errorResponse examples).
    for t in [
        "Fixed String",
        "{{ .token.Raw }}",
        "{{ .token.Header.alg }}",
        "{{ .token.Header.typ }}",
        "{{ .token.Header.extra }}",
        "{{ .token.Claims.sub }}",
        "{{ .token.Claims.name }}",
        "{{ .token.Claims.optional }}",
        "{{ if hasKey .token.Claims \"optional\" | not }}{{ doNotSet }}{{ end }}{{ .token.Claims.optional }}",
        "{{ .token.Claims.iat }}",
        "{{ printf \"%.0f\" .token.Claims.iat }}",
        "{{ .token.Signature }}",
        "{{ .httpRequestHeader.Get \"User-Agent\" }}",
        "Bearer {{ .token.Raw }}",
        "{{ .token.Claims.email }}",
        "{{ .token.Claims.scope }}",
        // testdata/aes-corpus (published AES manifests).
        "Authenticated {{ .token.Header.typ }}; sub={{ .token.Claims.sub }}; name={{ printf \"%q\" .token.Claims.name }}",
        "Authenticated {{.token.Header.typ}}; sub={{.token.Claims.sub}}; name={{printf \"%q\" .token.Claims.name}}",
        "{{.token.Claims.iat}}|{{printf \"%.0f\" .token.Claims.iat}}|{{.token.Raw}}|{{.token.Signature}}",
        "{{ .httpRequestHeader.Get \"X-Correlation-ID\" }}",
    ] {
        let mut c = header_case("aes-docs", t);
        c.claims_json = r#"{"sub":"1234567890","name":"John Doe","iat":1516239022}"#.to_string();
        cases.push(c.clone());
        cases.push(header_case("aes-docs", t));
    }
    for t in [
        "{{ . | json \"\" }}",
        "{\n  \"errorMessage\": {{ .message | json \"  \" }},\n  \"altErrorMessage\": {{ if eq .error.ValidationError.Errors 2 }}\"error 2\"{{ else }}\"not error 2\"{{ end }},\n  \"errorCode\": {{ .status_code | json \"  \"}},\n  \"httpStatus\": \"{{ .httpStatus }}\",\n  \"requestId\": {{ .requestId | json \"  \"}}\n}",
        "{{ .message | json \"indent>\" }}",
        "{{ .status_code }}: {{ .message }}",
        // testdata/aes-corpus (published AES manifests).
        "{\n    \"errorMessage\": {{ .message | json \"    \" }},\n    {{- if .error.ValidationError }}\n    \"altErrorMessage\": {{ if eq .error.ValidationError.Errors 16 }}\"expired\"{{ else }}\"invalid\"{{ end }},\n    \"errorCode\": {{ .error.ValidationError.Errors | json \"    \"}},\n    {{- end }}\n    \"httpStatus\": \"{{ .status_code }}\",\n    \"requestId\": {{ .request_id | json \"    \" }}\n}",
        "{\n    \"errorMessage\": {{ .message | json \"    \" }},\n    \"altErrorMessage\": {{ if eq .error.ValidationError.Errors 16 }}\"expired\"{{ else }}\"invalid\"{{ end }},\n    \"errorCode\": {{ .error.ValidationError.Errors | json \"    \"}},\n    \"httpStatus\": \"{{ .status_code }}\",\n    \"requestId\": {{ .request_id | json \"    \" }}\n}",
    ] {
        for (status, errors) in [(400, None), (401, Some(2)), (401, Some(16)), (403, None), (503, None)] {
            cases.push(body_case("aes-docs", t, status, errors));
        }
    }
    for t in [
        "{{ .status_code }}",
        "{{ .httpRequestHeader.Get \"Accept\" }}",
        "{{ if hasKey . \"request_id\" }}{{ .request_id }}{{ end }}",
    ] {
        cases.push(body_case("aes-docs", t, 401, Some(16)));
    }
    cases
}

/// Templates Portcullis renders differently from AES on purpose (docs/jwt.md).
const KNOWN: &[(&str, &str)] = &[(
    "{{ .httpRequestHeader.Get \"Accept\" }}",
    "in errorResponse templates .httpRequestHeader stays readable by name (AES's error data has no such key)",
)];

#[derive(serde::Deserialize)]
struct GoResult {
    #[serde(default)]
    parse_error: String,
    #[serde(default)]
    exec_error: String,
    #[serde(default)]
    do_not_set: bool,
    #[serde(default)]
    out: Option<String>,
}

fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"),
    }
}

/// Builds the oracle (`go build`, offline, standard library only) into target/.
fn build_oracle() -> Option<PathBuf> {
    let go_ok = Command::new("go")
        .arg("version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !go_ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "`go` is not on PATH: the template differential test needs it (scripts/setup installs golang-go)"
        );
        eprintln!("go_template: `go` is not on PATH; the differential test against Go did not run (scripts/setup installs golang-go)");
        return None;
    }
    let dir = target_dir().join("go-oracle");
    std::fs::create_dir_all(&dir).unwrap();
    let bin = dir.join("oracle");
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/go_oracle");
    let out = Command::new("go")
        .args(["build", "-o"])
        .arg(&bin)
        .arg(".")
        .current_dir(&src)
        .env("GOCACHE", dir.join("cache"))
        .env("GOPATH", dir.join("gopath"))
        .env("GOPROXY", "off")
        .env("GOFLAGS", "")
        .env("GOTOOLCHAIN", "local")
        .env("GO111MODULE", "on")
        .output()
        .expect("running go build");
    assert!(
        out.status.success(),
        "go build of the oracle failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(bin)
}

fn run_oracle(bin: &PathBuf, cases: &[Case]) -> Vec<GoResult> {
    let input: Vec<Value> = cases
        .iter()
        .map(|c| {
            json!({
                "template": c.template,
                "kind": if c.kind == Kind::Body { "body" } else { "header" },
                "headers": c.headers,
                "raw": RAW,
                "signature": "sig",
                "header_json": HEADER_JSON,
                "claims_json": c.claims_json,
                "status": c.status,
                "message": message_for(c.status),
                "request_id": "7c9e6679-7425-40de-944b-e07fc1f90ae7",
                "errors": c.errors,
            })
        })
        .collect();
    let mut child = Command::new(bin)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running the oracle");
    let text = serde_json::to_vec(&input).unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(&text));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(
        out.status.success(),
        "oracle failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("oracle output")
}

fn message_for(status: u16) -> &'static str {
    match status {
        400 => "Authorization header is not \"Bearer <token>\"",
        401 => "Token validation error: token is expired",
        403 => "insufficient scope: token lacks admin",
        _ => "JWT keys are not available yet: the JWK Set could not be fetched",
    }
}

/// The engine's answer: Ok(bytes), Ok(None) for doNotSet, Err for a refusal.
fn render_rust(c: &Case) -> Result<Option<Vec<u8>>, String> {
    let t = Template::parse(&c.template).map_err(|e| format!("parse: {e}"))?;
    let headers = Headers::new(c.headers.clone());
    let root = match c.kind {
        Kind::Header => {
            let claims: Map<String, Value> =
                go_json_object(c.claims_json.as_bytes()).ok_or("claims do not parse")?;
            let header: Map<String, Value> = go_json_object(HEADER_JSON.as_bytes()).unwrap();
            json!({"token": {
                "Raw": RAW,
                "Header": go_json_numbers(&Value::Object(header)),
                "Claims": go_json_numbers(&Value::Object(claims)),
                "Signature": "sig",
            }})
        }
        Kind::Body => error_data(
            c.status,
            message_for(c.status),
            "7c9e6679-7425-40de-944b-e07fc1f90ae7",
            c.errors,
        ),
    };
    let data = RenderData {
        root: &root,
        headers: &headers,
    };
    match t.render(&data) {
        Ok(Rendered::Text(s)) => Ok(Some(s.into_bytes())),
        Ok(Rendered::DoNotSet) => Ok(None),
        Err(e) => Err(format!("exec: {e}")),
    }
}

#[test]
fn templates_render_as_go_renders_them() {
    let Some(oracle) = build_oracle() else { return };
    let cases = generate();
    let results = run_oracle(&oracle, &cases);
    assert_eq!(results.len(), cases.len());
    let mut differ: BTreeMap<&str, usize> = BTreeMap::new();
    let mut per_group: BTreeMap<&str, usize> = BTreeMap::new();
    let mut refused = 0usize;
    let mut not_utf8 = 0usize;
    let mut report = String::new();
    for (c, g) in cases.iter().zip(&results) {
        *per_group.entry(c.group).or_default() += 1;
        if !g.parse_error.is_empty() || !g.exec_error.is_empty() {
            refused += 1;
            continue;
        }
        let want: Option<Vec<u8>> = if g.do_not_set {
            None
        } else {
            Some(
                base64::engine::general_purpose::STANDARD
                    .decode(g.out.as_deref().unwrap_or(""))
                    .unwrap(),
            )
        };
        let got = render_rust(c);
        // Go's output is not UTF-8 (`slice` cut a character): Portcullis
        // refuses such a template (docs/jwt.md); it must not render it.
        if want
            .as_ref()
            .is_some_and(|w| std::str::from_utf8(w).is_err())
        {
            not_utf8 += 1;
            assert!(
                got.is_err(),
                "{:?}: Go's output is not UTF-8, yet Portcullis rendered {got:?}",
                c.template
            );
            continue;
        }
        if KNOWN.iter().any(|(t, _)| *t == c.template) {
            continue;
        }
        if got.as_ref() != Ok(&want) {
            *differ.entry(c.group).or_default() += 1;
            let shown = |v: &Option<Vec<u8>>| match v {
                Some(b) => format!(
                    "{:?}",
                    String::from_utf8_lossy(b)
                        .chars()
                        .take(400)
                        .collect::<String>()
                ),
                None => "doNotSet".to_string(),
            };
            report.push_str(&format!(
                "[{}] {:?}\n   go:   {}\n   rust: {}\n",
                c.group,
                c.template,
                shown(&want),
                match &got {
                    Ok(v) => shown(v),
                    Err(e) => e.clone(),
                }
            ));
        }
    }
    let total_differ: usize = differ.values().sum();
    eprintln!(
        "go_template: {} cases ({per_group:?}); Go refused {refused}; Go's output not UTF-8 {not_utf8}; known differences {}; {} differ {differ:?}",
        cases.len(),
        KNOWN.len(),
        total_differ
    );
    if let Some(path) = std::env::var_os("GO_TEMPLATE_DIFFS") {
        std::fs::write(path, &report).unwrap();
    }
    assert!(
        total_differ == 0,
        "{total_differ} templates render differently from Go ({differ:?}):\n{}",
        report.chars().take(20000).collect::<String>()
    );
}

/// Random templates from the same parts (a fixed seed): the engine never
/// panics, and where Go renders, it renders the same.
#[test]
fn random_templates_render_as_go_renders_them() {
    let Some(oracle) = build_oracle() else { return };
    let parts = [
        "{{ ",
        " }}",
        "{{- ",
        " -}}",
        ".token.Claims.",
        "sub",
        "arr",
        "obj",
        "iat",
        "s",
        "scopes",
        " | ",
        "printf ",
        "\"%v\" ",
        "\"%+.3x|%-5q\" ",
        "index ",
        " 0",
        " 1",
        "len ",
        "eq ",
        "lt ",
        "and ",
        "or ",
        "not ",
        "if ",
        "else ",
        "end",
        "range ",
        "with ",
        "$x := ",
        "$x",
        "(",
        ")",
        ".httpRequestHeader",
        ".Get \"Accept\"",
        "print ",
        "\"a\"",
        "3.5",
        "'c'",
        "nil",
        "true",
        " text ",
        "\n",
        "html ",
        "js ",
        "urlquery ",
        "slice ",
        "$",
        ".",
        "break",
        "continue",
        "{{/* c */}}",
        "hasKey ",
        "0x1p3",
        "1i",
    ];
    // GO_TEMPLATE_RANDOM (count) and GO_TEMPLATE_SEED turn this into a
    // differential fuzz run (docs/jwt.md).
    let count: usize = std::env::var("GO_TEMPLATE_RANDOM")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(3000);
    let mut seed: u64 = std::env::var("GO_TEMPLATE_SEED")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0x9E37_79B9_7F4A_7C15)
        | 1;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut cases = Vec::new();
    for _ in 0..count {
        let n = 2 + (next() % 12) as usize;
        let mut t = String::new();
        for _ in 0..n {
            t.push_str(parts[(next() % parts.len() as u64) as usize]);
        }
        cases.push(header_case("random", t));
    }
    let results = run_oracle(&oracle, &cases);
    let mut report = String::new();
    let mut rendered = 0;
    for (c, g) in cases.iter().zip(&results) {
        let got = render_rust(c);
        if !g.parse_error.is_empty() || !g.exec_error.is_empty() {
            continue;
        }
        rendered += 1;
        let want = if g.do_not_set {
            None
        } else {
            Some(
                base64::engine::general_purpose::STANDARD
                    .decode(g.out.as_deref().unwrap_or(""))
                    .unwrap(),
            )
        };
        if got.as_ref() != Ok(&want) {
            report.push_str(&format!(
                "{:?}\n   go:   {:?}\n   rust: {:?}\n",
                c.template,
                want.map(|b| String::from_utf8_lossy(&b).into_owned()),
                got
            ));
        }
    }
    eprintln!(
        "go_template random: {} cases, Go rendered {rendered}",
        cases.len()
    );
    assert!(
        report.is_empty(),
        "random templates differ from Go:\n{}",
        report.chars().take(20000).collect::<String>()
    );
}
