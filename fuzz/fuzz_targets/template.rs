//! Template parsing, and rendering with hostile claim data: never panics, output bounded.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_core::request::Headers;
use portcullis_core::template::{go_json_numbers, RenderData, Template};

const TEMPLATES: &[&str] = &[
    "{{ .token.Claims.sub }}",
    "{{ printf \"%q %v %.2f %d\" .token.Claims.a .token.Claims.b .token.Claims.c .token.Claims.d }}",
    "{{ range $k, $v := .token.Claims }}{{ $k }}={{ $v }};{{ end }}",
    "{{ .token.Claims | json \"  \" }}",
    "{{ if hasKey .token.Claims \"x\" | not }}{{ doNotSet }}{{ end }}{{ index .token.Claims \"x\" }}",
    "{{ len .token.Claims.list }} {{ html .token.Claims.s }} {{ js .token.Claims.s }} {{ urlquery .token.Claims.s }}",
];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    // Half the inputs are templates, half are claim data for fixed templates.
    if selector % 2 == 0 {
        if let Ok(t) = Template::parse(&text) {
            let root = serde_json::json!({"token": {"Claims": {"sub": "x"}}});
            let headers = Headers::default();
            let _ = t.render(&RenderData {
                root: &root,
                headers: &headers,
            });
        }
    } else if let Ok(claims) = serde_json::from_str::<serde_json::Value>(&text) {
        let root = serde_json::json!({"token": {"Claims": go_json_numbers(&claims)}});
        let headers = Headers::default();
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
