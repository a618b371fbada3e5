//! Origins: a request's origin (scheme, host, port) read from its pseudo-headers,
//! normalized (default ports), and matched against the filter's
//! `protectedOrigins` and their internal origins.

use super::{InternalOrigin, OAuth2Filter, ProtectedOrigin};
use crate::compile::url::CalloutUrl;
use crate::request::Request;

/// `scheme://host[:port]` (any path ignored, as AES) → lower-case parts, default
/// port removed.
pub(super) fn parse_origin(text: &str) -> Option<(String, String, Option<u16>)> {
    let url = CalloutUrl::parse(text.trim(), None).ok()?;
    let (host, port) = split_authority(&url.authority)?;
    Some((url.scheme.clone(), host, normalize_port(&url.scheme, port)))
}

/// `host[:port]` → lower-case host and port.
pub(super) fn split_authority(authority: &str) -> Option<(String, Option<u16>)> {
    let authority = authority.to_ascii_lowercase();
    if authority.is_empty() || authority.contains(['/', '@', ' ', '?', '#']) {
        return None;
    }
    if authority.starts_with('[') {
        let end = authority.find(']')?;
        let host = authority.get(..=end)?.to_string();
        let rest = authority.get(end + 1..)?;
        return match rest.strip_prefix(':') {
            Some(p) => Some((host, Some(p.parse().ok()?))),
            None if rest.is_empty() => Some((host, None)),
            None => None,
        };
    }
    match authority.rsplit_once(':') {
        Some((h, p)) => Some((h.to_string(), Some(p.parse().ok()?))),
        None => Some((authority, None)),
    }
}

pub(super) fn normalize_port(scheme: &str, port: Option<u16>) -> Option<u16> {
    match (scheme, port) {
        ("https", Some(443)) | ("http", Some(80)) => None,
        (_, p) => p,
    }
}

/// A request's origin, normalized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Origin {
    scheme: String,
    host: String,
    port: Option<u16>,
}

impl Origin {
    pub(crate) fn of(request: &Request) -> Option<Origin> {
        let scheme = request.scheme.to_ascii_lowercase();
        if scheme != "http" && scheme != "https" {
            return None;
        }
        let (host, port) = split_authority(&request.authority)?;
        let port = normalize_port(&scheme, port);
        Some(Origin { scheme, host, port })
    }

    pub(crate) fn is_https(&self) -> bool {
        self.scheme == "https"
    }

    /// `scheme://host[:port]`.
    pub(crate) fn url(&self) -> String {
        match self.port {
            Some(p) => format!("{}://{}:{p}", self.scheme, self.host),
            None => format!("{}://{}", self.scheme, self.host),
        }
    }

    fn matches_internal(&self, i: &InternalOrigin) -> bool {
        i.scheme.as_ref().is_none_or(|s| *s == self.scheme)
            && i.host.as_ref().is_none_or(|(h, p)| {
                *h == self.host && normalize_port(&self.scheme, *p) == self.port
            })
    }

    fn covered_by(&self, o: &ProtectedOrigin) -> bool {
        if self.scheme != o.scheme || self.port != o.port {
            return false;
        }
        self.host == o.host
            || (o.include_subdomains
                && self
                    .host
                    .strip_suffix(&o.host)
                    .is_some_and(|prefix| prefix.ends_with('.') && prefix.len() > 1))
    }
}

impl OAuth2Filter {
    pub(crate) fn protects(&self, origin: &Origin) -> bool {
        self.origins.iter().any(|o| origin.covered_by(o))
    }

    /// The protected origin a request belongs to: its own when listed, else
    /// the `origin` of the first entry whose `internalOrigin` /
    /// `allowedInternalOrigins` it matches (a proxy in front rewrote it: the
    /// redirect URI and cookies use the origin the browser sees).
    pub(crate) fn origin_of(&self, request: &Request) -> Option<Origin> {
        let origin = Origin::of(request)?;
        if self.protects(&origin) {
            return Some(origin);
        }
        self.origins
            .iter()
            .find(|o| o.internal.iter().any(|i| origin.matches_internal(i)))
            .map(|o| Origin {
                scheme: o.scheme.clone(),
                host: o.host.clone(),
                port: o.port,
            })
    }
}
