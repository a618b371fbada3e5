//! Sessions without a server-side store: the session is sealed with
//! AES-256-GCM into cookies the browser keeps.
//!
//! A sealed value is `v1.<expiry>.<base64url(nonce ‖ ciphertext ‖ tag)>`: a fresh
//! random 96-bit nonce per seal, the cookie's base name and the expiry (Unix
//! seconds) bound as associated data, so a value cannot be moved to another
//! cookie or have its expiry extended. The first `sessionKeys` entry seals; every
//! entry opens (rotation). Values larger than one cookie are split into numbered
//! chunks `<name>.0`, `<name>.1`, … (oauth2-proxy's scheme), and chunks a smaller
//! session no longer uses are cleared with `Max-Age=0`.

use super::encoding::{b64url, b64url_decode};
use crate::request::Headers;
use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// Cookie values longer than this are split into chunks (a whole `Set-Cookie`
/// line stays under the 4096 bytes browsers keep per cookie).
pub const CHUNK_SIZE: usize = 3800;
/// The most chunks one sealed value may use; a larger session is refused.
pub const MAX_CHUNKS: usize = 8;
/// The most cookies read from a request.
pub const MAX_COOKIES: usize = 256;
/// The largest sealed value opened (all chunks together).
pub const MAX_SEALED_LEN: usize = CHUNK_SIZE * MAX_CHUNKS;

const VERSION: &str = "v1";
const NONCE_LEN: usize = 12;

/// The keys of `sessionKeys`: the first seals, all open.
#[derive(Clone)]
pub struct SessionKeys {
    keys: Vec<Aes256Gcm>,
}

impl std::fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SessionKeys({} keys)", self.keys.len())
    }
}

impl SessionKeys {
    /// One key from its base64 text (standard or URL-safe alphabet, padding
    /// optional): exactly 32 bytes.
    pub fn decode_key(text: &str) -> Result<[u8; 32], String> {
        let text = text.trim();
        let bytes = STANDARD
            .decode(text)
            .or_else(|_| URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')))
            .map_err(|_| "a session key is base64 (e.g. `openssl rand -base64 32`)".to_string())?;
        <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| {
            format!(
                "a session key is 32 bytes (AES-256), this one is {} bytes",
                bytes.len()
            )
        })
    }

    /// The session key of a filter given no `sessionKeys`: HKDF-SHA256 (RFC
    /// 5869) of the client `secret`, with a fixed salt and the filter's name as
    /// `info`, so two filters sharing a client secret never share a key, and
    /// the key changes only with the secret or the name.
    pub fn derive_from_secret(secret: &str, filter_name: &str) -> [u8; 32] {
        let hk =
            hkdf::Hkdf::<sha2::Sha256>::new(Some(b"portcullis sessionKeys v1"), secret.as_bytes());
        let mut key = [0u8; 32];
        // 32 bytes is far below HKDF-SHA256's limit (255 * 32): never fails.
        let _ = hk.expand(format!("OAuth2 filter {filter_name}").as_bytes(), &mut key);
        key
    }

    pub fn new(keys: &[[u8; 32]]) -> SessionKeys {
        SessionKeys {
            keys: keys.iter().map(|k| Aes256Gcm::new(&(*k).into())).collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Seals `plaintext` for the cookie `name`, valid until `expires` (Unix s).
    pub fn seal(
        &self,
        name: &str,
        expires: u64,
        plaintext: &[u8],
        random: &mut dyn FnMut(&mut [u8]),
    ) -> Option<String> {
        let key = self.keys.first()?;
        let mut nonce = [0u8; NONCE_LEN];
        random(&mut nonce);
        let aad = associated_data(name, expires);
        let ciphertext = key
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: plaintext,
                    aad: aad.as_bytes(),
                },
            )
            .ok()?;
        let mut sealed = nonce.to_vec();
        sealed.extend_from_slice(&ciphertext);
        Some(format!("{VERSION}.{expires}.{}", b64url(&sealed)))
    }

    /// Opens a value sealed for `name`; `None` when it is malformed, tampered
    /// with, sealed by an unknown key, for another cookie, or expired at `now`.
    pub fn open(&self, name: &str, value: &str, now: f64) -> Option<Vec<u8>> {
        if value.len() > MAX_SEALED_LEN {
            return None;
        }
        let mut parts = value.splitn(3, '.');
        let (Some(VERSION), Some(expires), Some(body)) = (parts.next(), parts.next(), parts.next())
        else {
            return None;
        };
        let expires: u64 = expires.parse().ok()?;
        if (expires as f64) <= now {
            return None;
        }
        let sealed = b64url_decode(body)?;
        let nonce = Nonce::from(<[u8; NONCE_LEN]>::try_from(sealed.get(..NONCE_LEN)?).ok()?);
        let ciphertext = sealed.get(NONCE_LEN..)?;
        let aad = associated_data(name, expires);
        self.keys.iter().find_map(|key| {
            key.decrypt(
                &nonce,
                Payload {
                    msg: ciphertext,
                    aad: aad.as_bytes(),
                },
            )
            .ok()
        })
    }
}

fn associated_data(name: &str, expires: u64) -> String {
    format!("portcullis|{name}|{expires}")
}

/// What a session cookie holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    #[serde(rename = "at")]
    pub access_token: String,
    #[serde(rename = "rt", default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    #[serde(rename = "it", default, skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
    /// When the access token expires (Unix s), when known.
    #[serde(rename = "ae", default, skip_serializing_if = "Option::is_none")]
    pub access_expires_at: Option<u64>,
    /// When the access token was obtained (login or refresh; Unix s; 0 in
    /// sessions sealed before this field).
    #[serde(rename = "ai", default)]
    pub access_obtained: u64,
    /// When the session was created (login).
    #[serde(rename = "cr")]
    pub created: u64,
    /// When the session was last used (for `clientSessionMaxIdle`).
    #[serde(rename = "ls")]
    pub last_seen: u64,
    /// The absolute end of the session (Unix s).
    #[serde(rename = "dl")]
    pub deadline: u64,
    /// The XSRF token (also in the `portcullis_xsrf.<name>` cookie).
    #[serde(rename = "x")]
    pub xsrf: String,
    /// The scopes granted (space-separated).
    #[serde(rename = "sc", default)]
    pub scope: String,
    /// The UserInfo claims (bounded: see `userinfo`), when the IdP answered.
    #[serde(rename = "ui", default, skip_serializing_if = "Option::is_none")]
    pub userinfo: Option<serde_json::Map<String, serde_json::Value>>,
    /// The UserInfo endpoint refused this access token (a token for another
    /// API): `auto` validation does not ask it again.
    #[serde(rename = "ur", default, skip_serializing_if = "std::ops::Not::not")]
    pub userinfo_refused: bool,
}

/// The request's cookies, parsed once (at most [`MAX_COOKIES`]).
#[derive(Debug, Clone, Default)]
pub struct CookieJar {
    pairs: Vec<(String, String)>,
}

impl CookieJar {
    /// Every `Cookie` header (HTTP/2 clients may send several).
    pub fn from_headers(headers: &Headers) -> CookieJar {
        let mut pairs = Vec::new();
        for header in headers.get_all("cookie") {
            for part in header.split(';') {
                if pairs.len() >= MAX_COOKIES {
                    break;
                }
                let part = part.trim();
                if part.is_empty() {
                    continue;
                }
                let (name, value) = part.split_once('=').unwrap_or((part, ""));
                let value = value.trim();
                let value = value
                    .strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .unwrap_or(value);
                pairs.push((name.trim().to_string(), value.to_string()));
            }
        }
        CookieJar { pairs }
    }

    /// A jar as if the request had carried `name` whole and each of its
    /// chunks: writing against it clears every form a browser may hold but did
    /// not send (a cross-site POST carries no `SameSite=Lax` cookie).
    pub fn every_form(name: &str) -> CookieJar {
        let mut pairs = vec![(name.to_string(), String::new())];
        pairs.extend((0..MAX_CHUNKS).map(|i| (format!("{name}.{i}"), String::new())));
        CookieJar { pairs }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `name`, in the order sent: a browser sends two cookies
    /// of one name when they differ in `Path` or `Domain` (a stale one from an
    /// older deployment, a parent domain's), the longer path first.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.pairs
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.pairs.iter().map(|(n, _)| n.as_str())
    }

    /// The value of a possibly chunked cookie: `name` itself, else `name.0`,
    /// `name.1`, … concatenated (a gap ends the value).
    pub fn chunked(&self, name: &str) -> Option<String> {
        if let Some(v) = self.get(name) {
            return Some(v.to_string());
        }
        let mut value = String::new();
        for i in 0..MAX_CHUNKS {
            match self.get(&format!("{name}.{i}")) {
                Some(v) => value.push_str(v),
                None if i == 0 => return None,
                None => break,
            }
        }
        Some(value)
    }

    /// Whether some cookie's name satisfies `f`.
    pub fn any(&self, f: impl Fn(&str) -> bool) -> bool {
        self.pairs.iter().any(|(n, _)| f(n))
    }
}

/// The request's `Cookie` headers without the cookies `drop` names, as one
/// header; every other cookie goes byte for byte as the client sent it (values
/// may be any bytes). `None` when no cookie is dropped (the header is left
/// alone); `Some(None)` when none is left.
pub fn cookie_header_without(
    headers: &Headers,
    drop: impl Fn(&str) -> bool,
) -> Option<Option<Vec<u8>>> {
    let mut kept: Vec<&[u8]> = Vec::new();
    let mut dropped = false;
    for header in headers.get_all_bytes("cookie") {
        for part in crate::bytes::split_byte(header, b';') {
            let part = part.trim_ascii();
            if part.is_empty() {
                continue;
            }
            let name = part
                .split(|b| *b == b'=')
                .next()
                .unwrap_or(part)
                .trim_ascii();
            if std::str::from_utf8(name).is_ok_and(&drop) {
                dropped = true;
            } else {
                kept.push(part);
            }
        }
    }
    if !dropped {
        return None;
    }
    if kept.is_empty() {
        return Some(None);
    }
    Some(Some(kept.join(&b"; "[..])))
}

/// `SameSite` of the session and XSRF cookies (rule argument `sameSite`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum SameSite {
    #[default]
    Lax,
    Strict,
    None,
}

impl SameSite {
    pub fn name(self) -> &'static str {
        match self {
            SameSite::Lax => "Lax",
            SameSite::Strict => "Strict",
            SameSite::None => "None",
        }
    }
}

/// Attributes of a cookie Portcullis sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CookieAttrs {
    pub secure: bool,
    pub same_site: SameSite,
    pub http_only: bool,
    /// `None`: a browser-session cookie (`useSessionCookies`).
    pub max_age: Option<u64>,
}

impl CookieAttrs {
    fn render(&self, name: &str, value: &str, max_age: Option<u64>) -> String {
        let mut out = format!("{name}={value}; Path=/");
        if let Some(age) = max_age {
            out.push_str(&format!("; Max-Age={age}"));
        }
        // SameSite=None is only accepted on Secure cookies.
        if self.secure || self.same_site == SameSite::None {
            out.push_str("; Secure");
        }
        if self.http_only {
            out.push_str("; HttpOnly");
        }
        out.push_str("; SameSite=");
        out.push_str(self.same_site.name());
        out
    }

    /// `Set-Cookie` value setting `name`.
    pub fn set(&self, name: &str, value: &str) -> String {
        self.render(name, value, self.max_age)
    }

    /// `Set-Cookie` value deleting `name`.
    pub fn clear(&self, name: &str) -> String {
        self.render(name, "", Some(0))
    }
}

/// `Set-Cookie` values writing `value` under `name`, chunked when larger than
/// [`CHUNK_SIZE`], and clearing whatever form of `name` the request carried
/// that the new value does not overwrite. `None` when the value needs more than
/// [`MAX_CHUNKS`] chunks.
pub fn write_chunked(
    name: &str,
    value: &str,
    attrs: &CookieAttrs,
    jar: &CookieJar,
) -> Option<Vec<String>> {
    let mut out = Vec::new();
    if value.len() <= CHUNK_SIZE {
        out.push(attrs.set(name, value));
        out.extend(stale_chunks(name, 0, jar).map(|n| attrs.clear(&n)));
        return Some(out);
    }
    let chunks: Vec<&str> = value
        .as_bytes()
        .chunks(CHUNK_SIZE)
        .filter_map(|c| std::str::from_utf8(c).ok())
        .collect();
    if chunks.len() > MAX_CHUNKS {
        return None;
    }
    for (i, chunk) in chunks.iter().enumerate() {
        out.push(attrs.set(&format!("{name}.{i}"), chunk));
    }
    if jar.get(name).is_some() {
        out.push(attrs.clear(name));
    }
    out.extend(stale_chunks(name, chunks.len(), jar).map(|n| attrs.clear(&n)));
    Some(out)
}

/// `Set-Cookie` values deleting `name` in every form the request carried.
pub fn clear_chunked(name: &str, attrs: &CookieAttrs, jar: &CookieJar) -> Vec<String> {
    let mut out: Vec<String> = stale_chunks(name, 0, jar)
        .map(|n| attrs.clear(&n))
        .collect();
    if jar.get(name).is_some() || out.is_empty() {
        out.insert(0, attrs.clear(name));
    }
    out
}

/// Names `name.<i>` with `i >= from` present in the request.
fn stale_chunks<'a>(
    name: &'a str,
    from: usize,
    jar: &'a CookieJar,
) -> impl Iterator<Item = String> + 'a {
    jar.names()
        .filter_map(move |n| {
            let index = n.strip_prefix(name)?.strip_prefix('.')?;
            let index: usize = index.parse().ok()?;
            (index >= from).then(|| n.to_string())
        })
        .collect::<Vec<_>>()
        .into_iter()
}
/// The most bytes of sealed sessions a default [`SessionCache`] remembers (the
/// host sizes it from `cacheBudget`: [`crate::config::Config::cache_shares`]).
pub const SESSION_CACHE_BYTES: usize = 4 << 20;

/// Sessions already opened, by a hash of the cookie's name and sealed value: a
/// hit skips AES-GCM and the JSON parse, which dominate a session check in Wasm.
/// Transparent: the same sealed value always opens to the same session (the
/// name and value are compared in full on a hit, so a hash collision is only a
/// miss), and an entry never outlives the expiry sealed into its cookie; the
/// idle and lifetime checks still run on every request. Bounded in bytes, oldest
/// out first.
#[derive(Debug)]
pub struct SessionCache {
    hasher: std::collections::hash_map::RandomState,
    entries: std::collections::HashMap<u64, SessionEntry>,
    order: std::collections::VecDeque<(u64, usize)>,
    bytes: usize,
    max_bytes: usize,
}

impl Default for SessionCache {
    fn default() -> SessionCache {
        SessionCache::with_budget(SESSION_CACHE_BYTES)
    }
}

#[derive(Debug)]
struct SessionEntry {
    name: String,
    sealed: String,
    session: std::sync::Arc<Session>,
    expires: u64,
}

impl SessionCache {
    /// A cache of at most `max_bytes` (estimated); 0 turns it off.
    pub fn with_budget(max_bytes: usize) -> SessionCache {
        SessionCache {
            hasher: Default::default(),
            entries: Default::default(),
            order: Default::default(),
            bytes: 0,
            max_bytes,
        }
    }

    /// Estimated bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// SipHash (random keys) of the cookie name, the sealed value's length and
    /// its last 48 bytes, which end with the AES-GCM tag of a fresh random nonce:
    /// hashing the whole 2–4 KB value on every request cost more than the rest
    /// of a hit. Entries are compared in full, so a shared tail is only a miss.
    fn key(&self, name: &str, sealed: &str) -> u64 {
        use std::hash::{BuildHasher, Hasher};
        let bytes = sealed.as_bytes();
        let tail = bytes.get(bytes.len().saturating_sub(48)..).unwrap_or(bytes);
        let mut h = self.hasher.build_hasher();
        h.write(name.as_bytes());
        h.write_u8(0);
        h.write_usize(bytes.len());
        h.write(tail);
        h.finish()
    }

    /// The session sealed in `sealed` for cookie `name`, if opened before and
    /// its cookie has not expired at `now`.
    pub fn get(&self, name: &str, sealed: &str, now: f64) -> Option<std::sync::Arc<Session>> {
        let e = self.entries.get(&self.key(name, sealed))?;
        (e.name == name
            && crate::bytes::same_bytes(e.sealed.as_bytes(), sealed.as_bytes())
            && (e.expires as f64) > now)
            .then(|| std::sync::Arc::clone(&e.session))
    }

    /// Remembers an opened session.
    pub fn insert(&mut self, name: &str, sealed: &str, session: &std::sync::Arc<Session>) {
        let Some(expires) = sealed.split('.').nth(1).and_then(|e| e.parse::<u64>().ok()) else {
            return;
        };
        let size = sealed
            .len()
            .saturating_mul(3)
            .saturating_add(name.len())
            .saturating_add(160);
        if size > self.max_bytes / 4 {
            return; // one huge cookie never flushes the cache
        }
        while self.bytes.saturating_add(size) > self.max_bytes {
            let Some((old, old_size)) = self.order.pop_front() else {
                break;
            };
            self.entries.remove(&old);
            self.bytes = self.bytes.saturating_sub(old_size);
        }
        let key = self.key(name, sealed);
        let entry = SessionEntry {
            name: name.to_string(),
            sealed: sealed.to_string(),
            session: std::sync::Arc::clone(session),
            expires,
        };
        if self.entries.insert(key, entry).is_none() {
            self.order.push_back((key, size));
            self.bytes = self.bytes.saturating_add(size);
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod cache_tests {
    use super::*;

    fn session(token: &str) -> std::sync::Arc<Session> {
        std::sync::Arc::new(
            serde_json::from_value(
                serde_json::json!({"at": token, "cr": 0, "ls": 0, "dl": 2000, "x": "x"}),
            )
            .unwrap_or_else(|e| panic!("session fixture: {e}")),
        )
    }

    #[test]
    fn session_cache_hits_only_the_same_cookie_before_its_expiry() {
        let mut c = SessionCache::default();
        c.insert("portcullis_session.a", "v1.1000.abc", &session("t1"));
        let hit = c.get("portcullis_session.a", "v1.1000.abc", 999.0);
        assert_eq!(hit.map(|s| s.access_token.clone()), Some("t1".to_string()));
        assert!(c
            .get("portcullis_session.b", "v1.1000.abc", 999.0)
            .is_none());
        assert!(c
            .get("portcullis_session.a", "v1.1000.abd", 999.0)
            .is_none());
        assert!(c
            .get("portcullis_session.a", "v1.1000.abc", 1000.0)
            .is_none());
    }

    #[test]
    fn session_cache_stays_within_its_byte_budget() {
        let mut c = SessionCache::default();
        let sealed = format!("v1.9999999999.{}", "x".repeat(30_000));
        for i in 0..200 {
            c.insert(&format!("portcullis_session.{i}"), &sealed, &session("t"));
        }
        assert!(c.bytes <= SESSION_CACHE_BYTES);
        assert!(c.len() < 200, "the oldest went out");
        assert!(c.get("portcullis_session.199", &sealed, 0.0).is_some());
    }

    #[test]
    fn session_cache_never_confuses_values_sharing_their_tail() {
        let mut c = SessionCache::default();
        let tail = "t".repeat(100);
        let (a, b) = (format!("v1.1000.A{tail}"), format!("v1.1000.B{tail}"));
        c.insert("s", &a, &session("for-a"));
        assert!(c.get("s", &b, 0.0).is_none());
        c.insert("s", &b, &session("for-b"));
        assert_eq!(
            c.get("s", &b, 0.0)
                .map(|s| s.access_token.clone())
                .as_deref(),
            Some("for-b")
        );
        assert!(c.get("s", &a, 0.0).is_none());
    }

    #[test]
    fn session_cache_budget_is_its_share_and_zero_turns_it_off() {
        let sealed = format!("v1.9999999999.{}", "x".repeat(3_000));
        let mut small = SessionCache::with_budget(64 * 1024);
        for i in 0..100 {
            small.insert(&format!("s.{i}"), &sealed, &session("t"));
            assert!(small.bytes() <= 64 * 1024);
        }
        assert!(small.get("s.99", &sealed, 0.0).is_some());
        let mut off = SessionCache::with_budget(0);
        off.insert("s", &sealed, &session("t"));
        assert!(off.is_empty());
    }
}

#[cfg(test)]
mod cookie_header_tests {
    use super::*;

    #[test]
    fn only_our_cookies_leave_and_the_rest_keep_their_bytes() {
        let headers = Headers::from_bytes(vec![
            (
                "cookie".to_string(),
                b"a=\xe9t\xe9;  ours=1;b=\"q\"".to_vec(),
            ),
            ("cookie".to_string(), b"ours.1=x".to_vec()),
        ]);
        let ours = |n: &str| n == "ours" || n == "ours.1";
        assert_eq!(
            cookie_header_without(&headers, ours),
            Some(Some(b"a=\xe9t\xe9; b=\"q\"".to_vec()))
        );
        assert_eq!(cookie_header_without(&headers, |_| false), None);
        assert_eq!(cookie_header_without(&headers, |_| true), Some(None));
    }
}
