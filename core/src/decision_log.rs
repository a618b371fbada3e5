//! The decision log: one line per decided request, for operators (denials at
//! `info`, allowed requests at `debug`; the host picks the level). The line is
//! logfmt (`key=value`, values quoted when they hold a space or a quote), so
//! log pipelines parse it:
//!
//! ```text
//! decision=deny filter=jwt status=401 reason="Jwt is expired" rule=rules[1] request_id=3f1c… method=GET authority=api.example.com path=/api/items
//! ```
//!
//! Never a credential: no query string, no header value but `x-request-id`,
//! never a `Location` (an OAuth2 redirect's state and nonce), an auth
//! service's answer body is summarised, not quoted, and a reason that holds
//! any credential the request carried (`Authorization`, `Cookie`, any header
//! value of 16 bytes or more) is withheld. Every value is bounded and escaped.

use crate::oauth2::OAuth2Event;
use crate::response::Response;

/// The longest value a field keeps, in bytes (longer ones end in `…`).
pub const MAX_FIELD_BYTES: usize = 200;

/// The shortest request header value (or cookie value, or token) that a
/// reason may not quote.
const MIN_SECRET_BYTES: usize = 16;

/// What the log says of one decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecisionLine<'a> {
    /// Denied (a response sent by Portcullis) or allowed (forwarded).
    pub denied: bool,
    /// The filter that answered a denial, or the last that ran for an allowed
    /// request; `None` when none ran (no rule, an empty rule).
    pub filter: Option<&'a str>,
    /// The filter's type (`JWT`, `External`, ...), which decides how its
    /// answer is described.
    pub filter_type: Option<&'a str>,
    /// Index of the rule that matched (`rules[i]`).
    pub rule: Option<usize>,
    /// The response's status, for a denial.
    pub status: Option<u16>,
    pub method: &'a str,
    pub authority: &'a str,
    /// The path without its query.
    pub path: &'a str,
    /// The request's `x-request-id`, as Envoy set or kept it.
    pub request_id: Option<&'a [u8]>,
}

/// Why a response denies, in words, from what Portcullis itself wrote: an
/// OAuth2 redirect is "login required"; a Bearer challenge's
/// `error_description` (RFC 6750 §3); else the JSON body's `message` of a
/// Portcullis filter; an External filter's answer is its auth service's, so
/// only its status is named.
pub fn denial_reason(filter_type: Option<&str>, response: &Response) -> String {
    let header = |name: &str| {
        response
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    };
    if (300..400).contains(&response.status) && header("location").is_some() {
        return match filter_type {
            Some("OAuth2") => {
                "redirected (login at the identity provider, or back from it)".to_string()
            }
            _ => "redirected".to_string(),
        };
    }
    if filter_type == Some("External") {
        return format!("the auth service answered {}", response.status);
    }
    if let Some(description) = header("www-authenticate").and_then(error_description) {
        return description;
    }
    serde_json::from_slice::<serde_json::Value>(&response.body)
        .ok()
        .and_then(|v| {
            v.get("message")
                .and_then(|m| m.as_str())
                .map(str::to_string)
        })
        .unwrap_or_else(|| format!("answered {}", response.status))
}

/// Why an OAuth2 filter answered for its own flow, in words, when `event` is
/// such an answer (a login started or completed, a logout): the reason of
/// its line instead of [`denial_reason`]'s "redirected".
pub fn flow_answer_reason(event: OAuth2Event) -> Option<&'static str> {
    match event {
        OAuth2Event::LoginStarted => Some("login started: sent to the identity provider"),
        OAuth2Event::LoginCompleted => {
            Some("login completed: sent back to the page the login started from")
        }
        OAuth2Event::Logout => Some("logged out: the session cleared"),
        _ => None,
    }
}

/// `error_description="..."` of a `WWW-Authenticate` challenge.
fn error_description(challenge: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(challenge);
    let start = text.find("error_description=\"")? + "error_description=\"".len();
    let rest = text.get(start..)?;
    let end = rest.find('"')?;
    rest.get(..end).map(str::to_string)
}

/// The credentials a request carries, each at least [`MIN_SECRET_BYTES`]
/// long: every header value, each `Authorization` credential after its
/// scheme, each cookie value.
fn credentials(headers: &crate::request::Headers) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for (name, value) in headers.iter_bytes() {
        out.push(value.to_vec());
        if name.eq_ignore_ascii_case("authorization")
            || name.eq_ignore_ascii_case("proxy-authorization")
        {
            if let Some(space) = value.iter().position(|b| *b == b' ') {
                out.push(value.get(space + 1..).unwrap_or_default().to_vec());
            }
        }
        if name.eq_ignore_ascii_case("cookie") {
            for pair in value.split(|b| *b == b';') {
                if let Some(eq) = pair.iter().position(|b| *b == b'=') {
                    out.push(pair.get(eq + 1..).unwrap_or_default().to_vec());
                }
            }
        }
    }
    out.retain(|c| c.len() >= MIN_SECRET_BYTES);
    out
}

/// `reason` unless it quotes a credential of the request.
pub fn without_credentials(reason: String, headers: &crate::request::Headers) -> String {
    let bytes = reason.as_bytes();
    let quotes = credentials(headers)
        .iter()
        .any(|c| bytes.windows(c.len()).any(|w| w == c.as_slice()));
    if quotes {
        "(withheld: the reason quotes a credential of the request)".to_string()
    } else {
        reason
    }
}

/// A logfmt value: bounded, control characters and non-ASCII escaped, quoted
/// when it holds a space, a quote or `=`, or is empty.
fn value(raw: &[u8]) -> String {
    let mut out = String::new();
    let mut cut = false;
    for &b in raw {
        if out.len() >= MAX_FIELD_BYTES {
            cut = true;
            break;
        }
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(char::from(b)),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    if cut {
        out.push('…');
    }
    if out.is_empty() || out.contains([' ', '"', '=']) {
        format!("\"{out}\"")
    } else {
        out
    }
}

impl DecisionLine<'_> {
    /// The line, with `reason` (from [`denial_reason`], checked with
    /// [`without_credentials`]) for a denial.
    pub fn format(&self, reason: Option<&str>) -> String {
        let mut fields: Vec<(&str, String)> = vec![(
            "decision",
            if self.denied { "deny" } else { "allow" }.to_string(),
        )];
        fields.push(("filter", value(self.filter.unwrap_or("-").as_bytes())));
        if let Some(status) = self.status {
            fields.push(("status", status.to_string()));
        }
        if let Some(reason) = reason {
            fields.push(("reason", value(reason.as_bytes())));
        }
        fields.push((
            "rule",
            self.rule.map_or("-".to_string(), |i| format!("rules[{i}]")),
        ));
        fields.push(("request_id", value(self.request_id.unwrap_or(b"-"))));
        fields.push(("method", value(self.method.as_bytes())));
        fields.push(("authority", value(self.authority.as_bytes())));
        fields.push(("path", value(self.path.as_bytes())));
        fields
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::request::Headers;

    const TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLWJ5dGVz";

    fn line<'a>(request_id: Option<&'a [u8]>) -> DecisionLine<'a> {
        DecisionLine {
            denied: true,
            filter: Some("jwt"),
            filter_type: Some("JWT"),
            rule: Some(1),
            status: Some(401),
            method: "GET",
            authority: "api.example.com",
            path: "/api/items",
            request_id,
        }
    }

    #[test]
    fn a_bearer_denial_says_its_error_description() {
        let mut response = Response::json_error(401, "Jwt is expired");
        response.headers.push((
            "www-authenticate".into(),
            br#"Bearer error="invalid_token", error_description="Jwt is expired", realm="api""#
                .to_vec(),
        ));
        let reason = denial_reason(Some("JWT"), &response);
        assert_eq!(reason, "Jwt is expired");
        assert_eq!(
            line(Some(b"3f1c-77")).format(Some(&reason)),
            r#"decision=deny filter=jwt status=401 reason="Jwt is expired" rule=rules[1] request_id=3f1c-77 method=GET authority=api.example.com path=/api/items"#
        );
    }

    #[test]
    fn an_api_key_denial_says_its_message_and_an_auth_service_only_its_status() {
        let response = Response::json_error(403, "API key not found");
        assert_eq!(
            denial_reason(Some("APIKey"), &response),
            "API key not found"
        );
        let mut answer = Response::json_error(403, &format!("bad token {TOKEN}"));
        answer.body = format!("token {TOKEN} refused").into_bytes();
        assert_eq!(
            denial_reason(Some("External"), &answer),
            "the auth service answered 403"
        );
    }

    #[test]
    fn an_oauth2_redirect_never_logs_its_location() {
        let response = Response {
            status: 302,
            headers: vec![(
                "location".into(),
                b"https://idp/authorize?state=secret-state&nonce=n".to_vec(),
            )],
            body: vec![],
        };
        let reason = denial_reason(Some("OAuth2"), &response);
        assert!(!reason.contains("state"), "{reason}");
        assert!(reason.starts_with("redirected"), "{reason}");
    }

    #[test]
    fn an_oauth2_flow_answer_says_which_step_it_was() {
        assert_eq!(
            flow_answer_reason(OAuth2Event::LoginStarted),
            Some("login started: sent to the identity provider")
        );
        assert!(flow_answer_reason(OAuth2Event::Logout).is_some());
        assert!(flow_answer_reason(OAuth2Event::LoginCompleted).is_some());
        assert_eq!(flow_answer_reason(OAuth2Event::RefreshDone), None);
        assert_eq!(flow_answer_reason(OAuth2Event::LoginRefused), None);
    }

    #[test]
    fn a_reason_quoting_a_credential_of_the_request_is_withheld() {
        let headers = Headers::new(vec![
            ("authorization".into(), format!("Bearer {TOKEN}")),
            (
                "cookie".into(),
                "a=1; portcullis_session.login=c2Vzc2lvbi1jb29raWUtdmFsdWU".into(),
            ),
        ]);
        for reason in [
            format!("bad token {TOKEN}"),
            "cookie c2Vzc2lvbi1jb29raWUtdmFsdWU is stale".to_string(),
        ] {
            let kept = without_credentials(reason.clone(), &headers);
            assert!(kept.starts_with("(withheld"), "{kept}");
        }
        assert_eq!(
            without_credentials("Jwt is expired".into(), &headers),
            "Jwt is expired"
        );
    }

    #[test]
    fn values_are_bounded_and_escaped() {
        let long = "x".repeat(MAX_FIELD_BYTES + 1);
        let id = b"a b\"c\n\xff";
        let text = DecisionLine {
            path: &long,
            ..line(Some(id))
        }
        .format(None);
        assert!(text.contains(r#"request_id="a b\"c\x0a\xff""#), "{text}");
        assert!(
            text.contains(&format!("path={}…", "x".repeat(MAX_FIELD_BYTES))),
            "{text}"
        );
        assert!(!text.contains('\n'));
    }
}
