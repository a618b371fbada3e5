//! Template parsing, and rendering with hostile claim data: never panics, output bounded.
//! (The differential run against real Go is core/tests/go_template.rs's random
//! test: `GO_TEMPLATE_RANDOM=200000 cargo test -p portcullis-core --test go_template`.)
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_core::request::Headers;
use portcullis_core::template::{go_json_numbers, go_json_object, RenderData, Template};

const TEMPLATES: &[&str] = &[
    "{{ .token.Claims.sub }}",
    "{{ printf \"%q %v %.2f %d\" .token.Claims.a .token.Claims.b .token.Claims.c .token.Claims.d }}",
    "{{ range $k, $v := .token.Claims }}{{ $k }}={{ $v }};{{ end }}",
    "{{ .token.Claims | json \"  \" }}",
    "{{ if hasKey .token.Claims \"x\" | not }}{{ doNotSet }}{{ end }}{{ index .token.Claims \"x\" }}",
    "{{ len .token.Claims.list }} {{ html .token.Claims.s }} {{ js .token.Claims.s }} {{ urlquery .token.Claims.s }}",
    "{{ printf \"%+#v|%-8.3x|% X|%[2]*[1]q|%U|%#g|%b|%T\" .token.Claims.a .token.Claims.b .token.Claims.c }}",
    "{{ . }} {{ len . }} {{ .httpRequestHeader }} {{ index .httpRequestHeader \"Accept\" 0 }}",
    "{{ slice .token.Claims.s 1 }} {{ index .token.Claims.list 0 }} {{ eq .token.Claims.a .token.Claims.b }}",
];

fn headers() -> Headers {
    Headers::new(vec![
        ("accept".into(), "text/html".into()),
        ("x-multi".into(), "a".into()),
        ("x-multi".into(), "b".into()),
    ])
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    // Half the inputs are templates, half are claim data for fixed templates.
    if selector % 2 == 0 {
        if let Ok(t) = Template::parse(&text) {
            let root = serde_json::json!({"token": {"Claims": {
                "sub": "x", "n": 1.5, "list": ["a", 1, null], "m": {"k": true}
            }}});
            let headers = headers();
            let _ = t.render(&RenderData {
                root: &root,
                headers: &headers,
            });
        }
    } else if let Some(claims) = go_json_object(rest) {
        let claims = go_json_numbers(&serde_json::Value::Object(claims));
        let root = serde_json::json!({"token": {"Claims": claims}});
        let headers = headers();
        for source in TEMPLATES {
            if let Ok(t) = Template::parse(source) {
                let _ = t.render(&RenderData {
                    root: &root,
                    headers: &headers,
                });
            }
        }
    }
});
