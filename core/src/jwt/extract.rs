//! `extractFrom`: where a JWT filter looks for its token besides
//! `Authorization: Bearer` (the shape of Envoy Gateway's JWT `extractFrom`,
//! Envoy `jwt_authn`'s `from_headers`/`from_cookies`/`from_params`): headers
//! with a value prefix, cookies, query parameters, tried in that order, each
//! list in its order; the first place holding a token gives it.

use crate::compile::Compiler;
use crate::request::Request;
use crate::response::is_header_name;
use serde::Deserialize;

/// `extractFrom` as users write it.
#[derive(Debug, Default, Clone, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ExtractFromSpec {
    #[serde(default)]
    pub headers: Vec<ExtractHeaderSpec>,
    /// Cookie names (RFC 6265 `Cookie` header).
    #[serde(default)]
    pub cookies: Vec<String>,
    /// Query parameter names (percent-decoded values).
    #[serde(default)]
    pub params: Vec<String>,
}

/// A header holding the token after `valuePrefix` (`"Bearer "`).
#[derive(Debug, Default, Clone, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ExtractHeaderSpec {
    pub name: String,
    pub value_prefix: Option<String>,
}

/// The most places one `extractFrom` lists.
pub const MAX_PLACES: usize = 32;

/// Where a token was found: a query parameter's token is never logged, and
/// the whole request is needed again when it came from one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    Header,
    Cookie,
    Param,
}

/// A compiled `extractFrom`.
#[derive(Debug, Clone)]
pub struct ExtractFrom {
    /// Lower-case names and their prefixes.
    headers: Vec<(String, String)>,
    cookies: Vec<String>,
    params: Vec<String>,
}

impl ExtractFrom {
    pub fn compile(
        c: &mut Compiler<'_>,
        path: &str,
        spec: &ExtractFromSpec,
    ) -> Option<ExtractFrom> {
        let errors_before = c.errors.len();
        let places = spec.headers.len() + spec.cookies.len() + spec.params.len();
        if places == 0 {
            c.error(path, "name at least one header, cookie or query parameter");
        }
        if places > MAX_PLACES {
            c.error(path, format!("at most {MAX_PLACES} places"));
        }
        for (i, h) in spec.headers.iter().enumerate() {
            if !is_header_name(&h.name) {
                c.error(
                    format!("{path}.headers[{i}].name"),
                    format!("invalid header name {:?}", h.name),
                );
            }
        }
        for (field, names) in [("cookies", &spec.cookies), ("params", &spec.params)] {
            for (i, name) in names.iter().enumerate() {
                if name.is_empty() || name.contains([';', '=', '&', ' ']) {
                    c.error(
                        format!("{path}.{field}[{i}]"),
                        format!("invalid name {name:?}"),
                    );
                }
            }
        }
        if c.errors.len() != errors_before {
            return None;
        }
        Some(ExtractFrom {
            headers: spec
                .headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_ascii_lowercase(),
                        h.value_prefix.clone().unwrap_or_default(),
                    )
                })
                .collect(),
            cookies: spec.cookies.clone(),
            params: spec.params.clone(),
        })
    }

    /// The request headers a lean request needs (`Config::lean_headers`):
    /// the named headers, `cookie`, and `:path` for parameters.
    pub fn header_names(&self) -> impl Iterator<Item = &str> {
        self.headers
            .iter()
            .map(|(n, _)| n.as_str())
            .chain((!self.cookies.is_empty()).then_some("cookie"))
            .chain((!self.params.is_empty()).then_some(":path"))
    }

    /// The first token found, in the order headers, cookies, parameters;
    /// `None` when no place holds one. A header value holds one when it
    /// starts with the prefix (ASCII case-insensitive, as an RFC 7235 scheme
    /// is); the token is the rest, trimmed. An empty value holds none.
    pub fn find<'r>(&'r self, request: &'r Request) -> Option<(std::borrow::Cow<'r, str>, Place)> {
        for (name, prefix) in &self.headers {
            for value in request.headers.get_all(name) {
                let token = strip_prefix_ignore_case(value, prefix).map(str::trim);
                if let Some(token) = token.filter(|t| !t.is_empty()) {
                    return Some((token.into(), Place::Header));
                }
            }
        }
        for wanted in &self.cookies {
            for header in request.headers.get_all("cookie") {
                for pair in header.split(';') {
                    let Some((name, value)) = pair.trim().split_once('=') else {
                        continue;
                    };
                    let value = value.trim().trim_matches('"');
                    if name.trim() == wanted && !value.is_empty() {
                        return Some((value.into(), Place::Cookie));
                    }
                }
            }
        }
        if !self.params.is_empty() {
            let query = request.path.split_once('?').map(|(_, q)| q).unwrap_or("");
            let query = query.split('#').next().unwrap_or("");
            for wanted in &self.params {
                for pair in query.split('&') {
                    let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
                    if percent_decode(name) == *wanted && !value.is_empty() {
                        return Some((percent_decode(value).into(), Place::Param));
                    }
                }
            }
        }
        None
    }
}

fn strip_prefix_ignore_case<'a>(value: &'a str, prefix: &str) -> Option<&'a str> {
    let head = value.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| value.get(prefix.len()..))
        .flatten()
}

/// `%XX` escapes and `+` (a space in a form-encoded query, as Envoy's
/// `parseAndDecodeQueryString` reads it); an invalid escape is kept as it is.
fn percent_decode(text: &str) -> String {
    if !text.contains(['%', '+']) {
        return text.to_string();
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let escaped = (b == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b, escaped) {
            (_, Some(v)) => {
                out.push(v);
                i += 3;
                continue;
            }
            (b'+', None) => out.push(b' '),
            (b, None) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn extract_from(spec: serde_json::Value) -> ExtractFrom {
        let env = |_: &str| None;
        let mut c = Compiler::new(Default::default(), &env);
        let spec: ExtractFromSpec = serde_json::from_value(spec).unwrap();
        ExtractFrom::compile(&mut c, "x", &spec).unwrap()
    }

    fn request(path: &str, headers: &[(&str, &str)]) -> Request {
        let mut pairs = vec![(":path".to_string(), path.to_string())];
        pairs.extend(headers.iter().map(|(n, v)| (n.to_string(), v.to_string())));
        Request::from_header_pairs(pairs)
    }

    fn found(e: &ExtractFrom, r: &Request) -> Option<(String, Place)> {
        e.find(r).map(|(t, p)| (t.into_owned(), p))
    }

    #[test]
    fn headers_then_cookies_then_params_first_found_wins() {
        let e = extract_from(json!({
            "headers": [{"name": "X-Token", "valuePrefix": "Tok "}, {"name": "Authorization", "valuePrefix": "Bearer "}],
            "cookies": ["a", "b"], "params": ["access_token"]}));
        let all = request(
            "/p?access_token=q",
            &[
                ("cookie", "b=cb; a=ca"),
                ("authorization", "bearer h2"),
                ("x-token", "Tok h1"),
            ],
        );
        assert_eq!(found(&e, &all), Some(("h1".into(), Place::Header)));
        let no_x = request(
            "/p?access_token=q",
            &[("cookie", "b=cb; a=ca"), ("authorization", "Bearer h2")],
        );
        assert_eq!(found(&e, &no_x), Some(("h2".into(), Place::Header)));
        let cookies = request("/p?access_token=q", &[("cookie", "b=cb; a=ca")]);
        assert_eq!(found(&e, &cookies), Some(("ca".into(), Place::Cookie)));
        let param = request("/p?x=1&access_token=a%2Eb.c", &[("cookie", "c=1")]);
        assert_eq!(found(&e, &param), Some(("a.b.c".into(), Place::Param)));
        assert_eq!(found(&e, &request("/p", &[])), None);
    }

    #[test]
    fn a_header_without_its_prefix_holds_no_token() {
        let e =
            extract_from(json!({"headers": [{"name": "Authorization", "valuePrefix": "Bearer "}]}));
        assert_eq!(
            found(&e, &request("/", &[("authorization", "Basic abc")])),
            None
        );
        assert_eq!(
            found(&e, &request("/", &[("authorization", "Bearer ")])),
            None
        );
        let bare = extract_from(json!({"headers": [{"name": "X-Jwt"}]}));
        assert_eq!(
            found(&bare, &request("/", &[("x-jwt", "t.t.t")])),
            Some(("t.t.t".into(), Place::Header))
        );
    }

    #[test]
    fn cookie_and_param_names_match_exactly() {
        let e = extract_from(json!({"cookies": ["jwt"], "params": ["token"]}));
        assert_eq!(
            found(
                &e,
                &request("/?xtoken=1&token=", &[("cookie", "xjwt=1; jwt=")])
            ),
            None
        );
        assert_eq!(
            found(&e, &request("/?token=a+b", &[])),
            Some(("a b".into(), Place::Param))
        );
    }

    #[test]
    fn empty_or_too_many_places_are_config_errors() {
        let env = |_: &str| None;
        let mut c = Compiler::new(Default::default(), &env);
        assert!(ExtractFrom::compile(&mut c, "x", &ExtractFromSpec::default()).is_none());
        let spec = ExtractFromSpec {
            cookies: (0..=MAX_PLACES).map(|i| format!("c{i}")).collect(),
            ..Default::default()
        };
        assert!(ExtractFrom::compile(&mut c, "x", &spec).is_none());
        assert!(c
            .errors
            .iter()
            .any(|e| e.message.contains("at most 32 places")));
        let ok = ExtractFromSpec {
            cookies: (0..MAX_PLACES).map(|i| format!("c{i}")).collect(),
            ..Default::default()
        };
        assert!(ExtractFrom::compile(&mut c, "x", &ok).is_some());
    }
}
