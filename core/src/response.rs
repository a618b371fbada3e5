//! Responses Portcullis sends itself (denials, errors), and the header changes it
//! makes to requests it lets through.

use serde_json::json;

/// A response sent to the client instead of forwarding the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// Lower-case names; values are bytes (RFC 9110 §5.5: a value an auth
    /// service sent with obs-text reaches the client as it was sent).
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The default Portcullis error body: `{"message":"<text>","status_code":<code>}`.
    pub fn json_error(status: u16, message: &str) -> Response {
        let body = json!({ "message": message, "status_code": status }).to_string();
        Response {
            status,
            headers: vec![("content-type".to_string(), b"application/json".to_vec())],
            body: body.into_bytes(),
        }
    }

    /// The first value of `name` (any case) as bytes.
    pub fn header_bytes(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    /// The first value of `name` (any case) when it is text (UTF-8); `None`
    /// when absent or not UTF-8 (read [`Response::header_bytes`] then).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.header_bytes(name)
            .and_then(|v| std::str::from_utf8(v).ok())
    }

    /// Sets a header, replacing any value of the same name.
    pub fn set_header(&mut self, name: &str, value: impl AsRef<[u8]>) {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self.push_header(name, value.as_ref());
    }

    /// Adds a further value of `name` (a second `Set-Cookie`).
    pub fn push_header(&mut self, name: &str, value: impl Into<Vec<u8>>) {
        self.headers.push((name.to_ascii_lowercase(), value.into()));
    }
}

/// One change to the request headers: set (replacing every value), append (a
/// further value), or remove.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderChange {
    pub name: String,
    /// The value's bytes (header values are bytes: RFC 9110 §5.5); `None`
    /// removes the header.
    pub value: Option<Vec<u8>>,
    /// Add the value beside existing ones instead of replacing them.
    pub append: bool,
}

impl HeaderChange {
    pub fn set(name: &str, value: impl Into<Vec<u8>>) -> HeaderChange {
        HeaderChange {
            name: name.to_ascii_lowercase(),
            value: Some(value.into()),
            append: false,
        }
    }

    pub fn append(name: &str, value: impl Into<Vec<u8>>) -> HeaderChange {
        HeaderChange {
            name: name.to_ascii_lowercase(),
            value: Some(value.into()),
            append: true,
        }
    }

    /// The value as text (lossy), for logs and tests.
    pub fn value_text(&self) -> Option<std::borrow::Cow<'_, str>> {
        self.value.as_deref().map(String::from_utf8_lossy)
    }

    pub fn remove(name: &str) -> HeaderChange {
        HeaderChange {
            name: name.to_ascii_lowercase(),
            value: None,
            append: false,
        }
    }
}

/// Whether `name` is a valid HTTP header field name (RFC 9110 token).
pub fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Whether a header value (bytes or text) can be sent as is (no CR, LF or
/// NUL; obs-text, bytes 0x80–0xFF, is allowed: RFC 9110 §5.5).
pub fn is_header_value(value: impl AsRef<[u8]>) -> bool {
    !value
        .as_ref()
        .iter()
        .any(|b| *b == b'\r' || *b == b'\n' || *b == 0)
}

/// Text safe inside a quoted-string of `WWW-Authenticate` (RFC 6750 §3).
pub fn auth_param_text(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '"' => '\'',
            '\\' => '/',
            c if (' '..='~').contains(&c) => c,
            _ => '?',
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_error_body_is_message_and_status() {
        let r = Response::json_error(403, "API key not found");
        assert_eq!(
            String::from_utf8(r.body).unwrap(),
            r#"{"message":"API key not found","status_code":403}"#
        );
        assert_eq!(r.status, 403);
    }

    #[test]
    fn header_names_and_values_are_checked() {
        assert!(is_header_name("X-Token-C-Sub"));
        assert!(!is_header_name("bad name"));
        assert!(!is_header_name(":path"));
        assert!(is_header_value("a b"));
        assert!(!is_header_value("a\r\nb: c"));
    }

    #[test]
    fn auth_param_text_has_no_quotes() {
        assert_eq!(auth_param_text("a \"b\" \\ é"), "a 'b' / ?");
    }
}
