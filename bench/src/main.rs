//! `bench-fixtures`: writes what `scripts/bench` runs against, into one directory.
//!
//! ```text
//! bench-fixtures --dir DIR --base-port P --wasm PATH --floor-dir DIR [--tokens N] [--plugin-extra JSON]
//! ```
//!
//! - `envoy.json`: one Envoy bootstrap (run it with `--concurrency 1`), listeners on
//!   `P + offset` (see [`LISTENERS`]), admin on `P + 20`;
//! - `token.txt`: one RS256 token (key `rsa1` of `testdata/`, exp in 2 days);
//! - `tokens.txt`: `N` distinct RS256 tokens, one a line (kept between runs while
//!   they are valid for another day: signing 20k takes a few seconds per core);
//! - `cookie.txt`: a `Cookie` header value holding a session sealed with the core's
//!   `oauth2::session` API, whose access token is a JWT of the bench IdP;
//! - `cookie_oauth2.txt`: a `Cookie` header value holding a valid session of Envoy's
//!   `oauth2` filter (`BearerToken` encrypted as the filter does, `OauthExpires`,
//!   `OauthHMAC` over host, expiry and token);
//! - `listeners.txt`: `name port` lines.
//!
//! With `--floor-dir DIR`, the floor listeners run `DIR/<name>.wasm` (see
//! `bench/floor`).
//!
//! Loopback only: every listener and cluster is on 127.0.0.1.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use jwt_compact::alg::Rsa;
use jwt_compact::{Algorithm as _, AlgorithmSignature as _};
use portcullis_core::oauth2::session::{Session, SessionKeys};
use serde_json::{json, Value};

const RSA1_PEM: &str = include_str!("../../testdata/keys/rsa1.pem");
const JWKS: &str = include_str!("../../testdata/jwks.json");

/// The issuer of bench tokens, and of the bench IdP (the OAuth2 filter's
/// `authorizationURL`: its cluster is `bench_idp`).
const ISSUER: &str = "http://idp.bench";
const SESSION_KEY: [u8; 32] = [7; 32];
/// Listener names and their port offsets.
pub const LISTENERS: &[(&str, u16)] = &[
    ("plain", 0),
    ("authsvc", 1),
    ("idp", 2),
    ("native_jwt", 3),
    ("native_jwt_cache", 4),
    ("pc_jwt", 5),
    ("native_ext_authz", 6),
    ("pc_external", 7),
    ("pc_oidc", 8),
    ("floor", 9),
    ("native_oauth2", 10),
    ("floor_callbacks", 11),
    ("floor_header", 12),
    ("floor_property", 13),
    ("floor_route_name", 14),
    ("floor_time", 15),
    ("pc_jwt_templates", 16),
    ("pc_jwt_authz", 17),
];
/// The floor modules (`bench/floor`): the do-nothing module, then one variant per
/// host call or callback it adds (listener names; `<name>.wasm` in `--floor-dir`).
const FLOORS: &[&str] = &[
    "floor",
    "floor_callbacks",
    "floor_header",
    "floor_property",
    "floor_route_name",
    "floor_time",
];
/// Envoy's `oauth2` filter: its HMAC secret (also the key its token cookies are
/// encrypted with) and client secret, as static generic secrets.
const OAUTH2_HMAC_SECRET: &str = "bench-hmac-secret";
const ADMIN_OFFSET: u16 = 20;

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn rsa_key() -> rsa::RsaPrivateKey {
    use rsa::pkcs8::DecodePrivateKey;
    rsa::RsaPrivateKey::from_pkcs8_pem(RSA1_PEM).unwrap_or_else(|e| fail(&format!("rsa1.pem: {e}")))
}

fn sign(key: &rsa::RsaPrivateKey, claims: &Value) -> String {
    let header = json!({"alg": "RS256", "typ": "JWT", "kid": "rsa1"});
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let sig = Rsa::rs256().sign(key, input.as_bytes());
    format!("{input}.{}", b64(&sig.as_bytes()))
}

/// `rsa1` alone, as a JWK Set (Envoy's `local_jwks` and the Portcullis `jwks`).
fn rsa_jwks() -> Value {
    let doc: Value =
        serde_json::from_str(JWKS).unwrap_or_else(|e| fail(&format!("jwks.json: {e}")));
    let keys: Vec<Value> = doc["keys"]
        .as_array()
        .map(|keys| {
            keys.iter()
                .filter(|k| k["kid"] == "rsa1")
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    json!({ "keys": keys })
}

fn fail(msg: &str) -> ! {
    eprintln!("bench-fixtures: {msg}");
    std::process::exit(2)
}

fn cluster(name: &str, port: u16) -> Value {
    json!({
        "name": name,
        "type": "STATIC",
        "connect_timeout": "2s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{ "lb_endpoints": [{ "endpoint": { "address": {
                "socket_address": { "address": "127.0.0.1", "port_value": port }
            }}}]}]
        }
    })
}

fn direct(prefix: &str, body: &str, content_type: &str) -> Value {
    json!({
        "match": { "prefix": prefix },
        "direct_response": { "status": 200, "body": { "inline_string": body } },
        "response_headers_to_add": [{ "header": { "key": "content-type", "value": content_type } }]
    })
}

fn listener(name: &str, port: u16, routes: Vec<Value>, filters: Vec<Value>) -> Value {
    let mut http_filters = filters;
    http_filters.push(json!({
        "name": "envoy.filters.http.router",
        "typed_config": { "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router" }
    }));
    json!({
        "name": name,
        "address": { "socket_address": { "address": "127.0.0.1", "port_value": port } },
        "filter_chains": [{ "filters": [{
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                "stat_prefix": name,
                "route_config": { "name": name, "virtual_hosts": [{
                    "name": "all", "domains": ["*"], "routes": routes
                }]},
                "http_filters": http_filters
            }
        }]}]
    })
}

fn wasm(name: &str, wasm: &Path, plugin: &Value) -> Value {
    json!({
        "name": "envoy.filters.http.wasm",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {
                "name": name,
                "configuration": {
                    "@type": "type.googleapis.com/google.protobuf.StringValue",
                    "value": plugin.to_string()
                },
                "vm_config": {
                    "vm_id": name,
                    "runtime": "envoy.wasm.runtime.v8",
                    "code": { "local": { "filename": wasm.display().to_string() } }
                }
            }
        }
    })
}

/// A module that reads no configuration (the floor modules).
fn bare_wasm(name: &str, wasm: &Path) -> Value {
    json!({
        "name": "envoy.filters.http.wasm",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {
                "name": name,
                "vm_config": {
                    "vm_id": name,
                    "runtime": "envoy.wasm.runtime.v8",
                    "code": { "local": { "filename": wasm.display().to_string() } }
                }
            }
        }
    })
}

/// Envoy's `oauth2` filter, forwarding the access token as `Authorization` like
/// Portcullis's OAuth2 filter; its IdP is the bench IdP listener.
fn native_oauth2(origin: &str) -> Value {
    json!({
        "name": "envoy.filters.http.oauth2",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.oauth2.v3.OAuth2",
            "config": {
                "token_endpoint": { "cluster": "bench_idp", "uri": format!("{ISSUER}/token"), "timeout": "5s" },
                "authorization_endpoint": format!("{ISSUER}/auth"),
                "redirect_uri": format!("{origin}/callback"),
                "redirect_path_matcher": { "path": { "exact": "/callback" } },
                "signout_path": { "path": { "exact": "/signout" } },
                "forward_bearer_token": true,
                "credentials": {
                    "client_id": "bench",
                    "token_secret": { "name": "oauth2_client_secret" },
                    "hmac_secret": { "name": "oauth2_hmac_secret" }
                },
                "auth_scopes": ["openid"]
            }
        }
    })
}

fn generic_secret(name: &str, value: &str) -> Value {
    json!({ "name": name, "generic_secret": { "secret": { "inline_string": value } } })
}

fn jwt_authn(cache: bool) -> Value {
    let mut provider = json!({
        "issuer": ISSUER,
        "local_jwks": { "inline_string": rsa_jwks().to_string() },
        "forward": true
    });
    if cache {
        provider["jwt_cache_config"] = json!({ "jwt_cache_size": 100 });
    }
    json!({
        "name": "envoy.filters.http.jwt_authn",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
            "providers": { "bench": provider },
            "rules": [{ "match": { "prefix": "/" }, "requires": { "provider_name": "bench" } }]
        }
    })
}

fn ext_authz(auth_port: u16) -> Value {
    let patterns: Vec<Value> = [
        "Authorization",
        "Cookie",
        "From",
        "Proxy-Authorization",
        "User-Agent",
        "X-Forwarded-For",
        "X-Forwarded-Host",
        "X-Forwarded-Proto",
    ]
    .iter()
    .map(|n| json!({ "exact": n, "ignore_case": true }))
    .collect();
    let answer: Vec<Value> = [
        "Authorization",
        "Location",
        "Proxy-Authenticate",
        "Set-cookie",
        "WWW-Authenticate",
    ]
    .iter()
    .map(|n| json!({ "exact": n, "ignore_case": true }))
    .collect();
    json!({
        "name": "envoy.filters.http.ext_authz",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz",
            "transport_api_version": "V3",
            "http_service": {
                "server_uri": { "uri": format!("http://127.0.0.1:{auth_port}"), "cluster": "bench_auth", "timeout": "5s" },
                "path_prefix": "",
                "authorization_request": { "allowed_headers": { "patterns": patterns } },
                "authorization_response": {
                    "allowed_upstream_headers": { "patterns": answer.clone() },
                    "allowed_client_headers": { "patterns": answer }
                }
            },
            "clear_route_cache": true,
            "status_on_error": { "code": 403 }
        }
    })
}

/// Merges `extra` (an object) over the top level of a Portcullis configuration.
fn plugin(mut base: Value, extra: &Value) -> Value {
    if let (Some(b), Some(e)) = (base.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            b.insert(k.clone(), v.clone());
        }
    }
    base
}

fn envoy_config(base: u16, wasm_path: &Path, floor_dir: &Path, extra: &Value) -> Value {
    let port = |name: &str| {
        LISTENERS
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, o)| base + o)
            .unwrap_or_else(|| fail(name))
    };
    let ok = || vec![direct("/", "ok", "text/plain")];
    let discovery = json!({
        "issuer": ISSUER,
        "authorization_endpoint": format!("{ISSUER}/auth"),
        "token_endpoint": format!("{ISSUER}/token"),
        "jwks_uri": format!("{ISSUER}/jwks"),
        "userinfo_endpoint": format!("{ISSUER}/userinfo"),
        "end_session_endpoint": format!("{ISSUER}/logout")
    });
    let all_rule = json!([{ "host": "*", "path": "*", "filters": [{ "name": "f" }] }]);
    let pc_jwt = plugin(
        json!({
            "filters": [{ "name": "f", "JWT": {
                "jwks": rsa_jwks(), "validAlgorithms": ["RS256"], "issuer": ISSUER
            }}],
            "rules": all_rule
        }),
        extra,
    );
    // pc_jwt plus injectRequestHeaders: the AES documentation's examples.
    let pc_jwt_templates = plugin(
        json!({
            "filters": [{ "name": "f", "JWT": {
                "jwks": rsa_jwks(), "validAlgorithms": ["RS256"], "issuer": ISSUER,
                "injectRequestHeaders": [
                    { "name": "X-Fixed-String", "value": "Fixed String" },
                    { "name": "X-Token-String", "value": "{{ .token.Raw }}" },
                    { "name": "X-Token-H-Alg", "value": "{{ .token.Header.alg }}" },
                    { "name": "X-Token-H-Typ", "value": "{{ .token.Header.typ }}" },
                    { "name": "X-Token-C-Sub", "value": "{{ .token.Claims.sub }}" },
                    { "name": "X-Token-C-Optional-Empty", "value": "{{ .token.Claims.optional }}" },
                    { "name": "X-Token-C-Optional-Unset", "value": "{{ if hasKey .token.Claims \"optional\" | not }}{{ doNotSet }}{{ end }}{{ .token.Claims.optional }}" },
                    { "name": "X-Token-C-Iat", "value": "{{ .token.Claims.iat }}" },
                    { "name": "X-Token-C-Iat-Int", "value": "{{ printf \"%.0f\" .token.Claims.exp }}" },
                    { "name": "X-Token-S", "value": "{{ .token.Signature }}" },
                    { "name": "X-UA", "value": "{{ .httpRequestHeader.Get \"User-Agent\" }}" }
                ]
            }}],
            "rules": all_rule
        }),
        extra,
    );
    // JWT and an Authorization filter of five rules, the last deciding: a
    // network, a method with a nested claim, a namespaced claim, a regex,
    // then `sub` present.
    let pc_jwt_authz = plugin(
        json!({
            "filters": [
                { "name": "f", "JWT": {
                    "jwks": rsa_jwks(), "validAlgorithms": ["RS256"], "issuer": ISSUER
                }},
                { "name": "authz", "Authorization": { "rules": [
                    { "name": "partners", "action": "Deny", "clientCIDRs": ["198.51.100.0/24"] },
                    { "name": "admins-write", "action": "Allow", "methods": ["POST"],
                      "claims": [{ "path": ["realm_access", "roles"], "anyOf": ["admin"] }] },
                    { "name": "editors", "action": "Allow",
                      "claims": [{ "path": "https://example.com/roles", "anyOf": ["editor"] }] },
                    { "name": "staff", "action": "Allow",
                      "claims": [{ "path": "email", "matches": "[^@]+@example\\.com" }] },
                    { "name": "users", "action": "Allow", "claims": [{ "path": "sub", "exists": true }] }
                ] } }
            ],
            "rules": [{ "host": "*", "path": "*", "filters": [{ "name": "f" }, { "name": "authz" }] }]
        }),
        extra,
    );
    let pc_ext = plugin(
        json!({
            "clusters": { format!("authsvc.bench:{}", port("authsvc")): "bench_auth" },
            "filters": [{ "name": "f", "External": {
                "auth_service": format!("http://authsvc.bench:{}", port("authsvc")),
                "proto": "http", "timeout_ms": 5000
            }}],
            "rules": all_rule
        }),
        extra,
    );
    let origin = format!("http://127.0.0.1:{}", port("pc_oidc"));
    let pc_oidc = plugin(
        json!({
            "clusters": { "idp.bench": "bench_idp" },
            "filters": [{ "name": "f", "OAuth2": {
                "authorizationURL": ISSUER,
                "clientID": "bench",
                "secret": "bench-secret",
                "protectedOrigins": [{ "origin": origin }],
                "sessionKeys": [STANDARD.encode(SESSION_KEY)]
            }}],
            "rules": all_rule
        }),
        extra,
    );
    let mut listeners = vec![
        listener("plain", port("plain"), ok(), vec![]),
        listener("authsvc", port("authsvc"), ok(), vec![]),
        listener(
            "idp",
            port("idp"),
            vec![
                direct(
                    "/.well-known/openid-configuration",
                    &discovery.to_string(),
                    "application/json",
                ),
                direct("/jwks", &rsa_jwks().to_string(), "application/json"),
                direct("/", "{}", "application/json"),
            ],
            vec![],
        ),
        listener(
            "native_jwt",
            port("native_jwt"),
            ok(),
            vec![jwt_authn(false)],
        ),
        listener(
            "native_jwt_cache",
            port("native_jwt_cache"),
            ok(),
            vec![jwt_authn(true)],
        ),
        listener(
            "pc_jwt",
            port("pc_jwt"),
            ok(),
            vec![wasm("pc_jwt", wasm_path, &pc_jwt)],
        ),
        listener(
            "pc_jwt_templates",
            port("pc_jwt_templates"),
            ok(),
            vec![wasm("pc_jwt_templates", wasm_path, &pc_jwt_templates)],
        ),
        listener(
            "pc_jwt_authz",
            port("pc_jwt_authz"),
            ok(),
            vec![wasm("pc_jwt_authz", wasm_path, &pc_jwt_authz)],
        ),
        listener(
            "native_ext_authz",
            port("native_ext_authz"),
            ok(),
            vec![ext_authz(port("authsvc"))],
        ),
        listener(
            "pc_external",
            port("pc_external"),
            ok(),
            vec![wasm("pc_external", wasm_path, &pc_ext)],
        ),
        listener(
            "pc_oidc",
            port("pc_oidc"),
            ok(),
            vec![wasm("pc_oidc", wasm_path, &pc_oidc)],
        ),
        listener(
            "native_oauth2",
            port("native_oauth2"),
            ok(),
            vec![native_oauth2(&format!(
                "http://127.0.0.1:{}",
                port("native_oauth2")
            ))],
        ),
    ];
    for name in FLOORS {
        let module = floor_dir.join(format!("{name}.wasm"));
        listeners.push(listener(
            name,
            port(name),
            ok(),
            vec![bare_wasm(name, &module)],
        ));
    }
    json!({
        "admin": { "address": { "socket_address": { "address": "127.0.0.1", "port_value": base + ADMIN_OFFSET } } },
        "static_resources": {
            "listeners": listeners,
            "clusters": [cluster("bench_auth", port("authsvc")), cluster("bench_idp", port("idp"))],
            "secrets": [
                generic_secret("oauth2_client_secret", "bench-secret"),
                generic_secret("oauth2_hmac_secret", OAUTH2_HMAC_SECRET)
            ]
        }
    })
}

/// `n` distinct tokens, signed on every core.
fn mint_many(n: usize, exp: u64) -> Vec<String> {
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .max(1);
    let iat = now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            std::thread::spawn(move || {
                let key = rsa_key();
                (t..n)
                    .step_by(threads)
                    .map(|i| {
                        sign(
                            &key,
                            &json!({"iss": ISSUER, "sub": format!("user-{i}"), "jti": format!("bench-{i}"), "iat": iat, "exp": exp}),
                        )
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut out = Vec::with_capacity(n);
    for h in handles {
        out.extend(h.join().unwrap_or_else(|_| fail("a signing thread failed")));
    }
    out
}

fn session_cookie(access_token: &str, expires: u64) -> String {
    let name = "portcullis_session.f";
    let t = now();
    let session = Session {
        access_token: access_token.to_string(),
        refresh_token: None,
        id_token: None,
        access_expires_at: Some(expires),
        access_obtained: t,
        created: t,
        last_seen: t,
        deadline: expires,
        xsrf: "bench-xsrf".to_string(),
        scope: "openid".to_string(),
        userinfo: None,
        userinfo_refused: false,
    };
    let plain = serde_json::to_vec(&session).unwrap_or_else(|e| fail(&e.to_string()));
    let mut counter = 0u8;
    let sealed = SessionKeys::new(&[SESSION_KEY])
        .seal(name, expires, &plain, &mut |buf: &mut [u8]| {
            for b in buf.iter_mut() {
                counter = counter.wrapping_add(1);
                *b = counter;
            }
        })
        .unwrap_or_else(|| fail("sealing the session failed"));
    format!("{name}={sealed}")
}

/// A valid session of Envoy's `oauth2` filter for `host` (the `Host` header the
/// client sends): the access token encrypted as the filter does (AES-256-CBC,
/// key SHA-256 of the HMAC secret, base64url of IV and ciphertext), and the
/// HMAC-SHA256 (base64) of `host`, expiry, token, ID token and refresh token
/// joined by newlines, over the token as decrypted.
fn oauth2_cookie(host: &str, access_token: &str, expires: u64) -> String {
    use aes::cipher::{BlockEncrypt, KeyInit};
    use hmac::Mac;
    use sha2::Digest;
    let key = sha2::Sha256::digest(OAUTH2_HMAC_SECRET.as_bytes());
    let cipher = aes::Aes256::new_from_slice(&key).unwrap_or_else(|_| fail("AES key"));
    // A fixed IV: the bench needs a valid cookie, not a secret one.
    let iv = [9u8; 16];
    let mut plain = access_token.as_bytes().to_vec();
    let pad = 16 - plain.len() % 16;
    plain.extend(std::iter::repeat_n(pad as u8, pad));
    let mut out = iv.to_vec();
    let mut prev = iv;
    for chunk in plain.chunks(16) {
        let mut block = aes::Block::default();
        for (b, (p, c)) in block.iter_mut().zip(chunk.iter().zip(prev.iter())) {
            *b = p ^ c;
        }
        cipher.encrypt_block(&mut block);
        prev.copy_from_slice(&block);
        out.extend_from_slice(&block);
    }
    let encrypted = b64(&out);
    let payload = format!("{host}\n{expires}\n{access_token}\n\n");
    let mut mac = <hmac::Hmac<sha2::Sha256> as Mac>::new_from_slice(OAUTH2_HMAC_SECRET.as_bytes())
        .unwrap_or_else(|_| fail("HMAC key"));
    mac.update(payload.as_bytes());
    let hmac = STANDARD.encode(mac.finalize().into_bytes());
    format!("OauthHMAC={hmac}; OauthExpires={expires}; BearerToken={encrypted}")
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let dir = PathBuf::from(flag("--dir").unwrap_or_else(|| fail("--dir is required")));
    let base: u16 = flag("--base-port")
        .unwrap_or_else(|| "18000".into())
        .parse()
        .unwrap_or_else(|_| fail("--base-port: not a port"));
    let wasm_path = PathBuf::from(flag("--wasm").unwrap_or_else(|| fail("--wasm is required")));
    let count: usize = flag("--tokens")
        .unwrap_or_else(|| "20000".into())
        .parse()
        .unwrap_or_else(|_| fail("--tokens: not a number"));
    let floor_dir =
        PathBuf::from(flag("--floor-dir").unwrap_or_else(|| fail("--floor-dir is required")));
    let extra: Value = flag("--plugin-extra")
        .map(|s| serde_json::from_str(&s).unwrap_or_else(|e| fail(&format!("--plugin-extra: {e}"))))
        .unwrap_or(Value::Null);
    fs::create_dir_all(&dir).unwrap_or_else(|e| fail(&format!("{}: {e}", dir.display())));
    let write = |name: &str, text: &str| {
        fs::write(dir.join(name), text).unwrap_or_else(|e| fail(&format!("{name}: {e}")))
    };

    let config = envoy_config(base, &wasm_path, &floor_dir, &extra);
    write(
        "envoy.json",
        &serde_json::to_string_pretty(&config).unwrap_or_default(),
    );
    let mut names = String::new();
    for (name, offset) in LISTENERS {
        names.push_str(&format!("{name} {}\n", base + offset));
    }
    names.push_str(&format!("admin {}\n", base + ADMIN_OFFSET));
    write("listeners.txt", &names);

    let t = now();
    let exp = t + 2 * 86_400;
    let key = rsa_key();
    let one = sign(
        &key,
        &json!({"iss": ISSUER, "sub": "bench-user", "iat": t, "exp": exp}),
    );
    write("token.txt", &format!("{one}\n"));
    write("cookie.txt", &format!("{}\n", session_cookie(&one, exp)));
    let oauth2_port = LISTENERS
        .iter()
        .find(|(n, _)| *n == "native_oauth2")
        .map(|(_, o)| base + o)
        .unwrap_or(base);
    write(
        "cookie_oauth2.txt",
        &format!(
            "{}\n",
            oauth2_cookie(&format!("127.0.0.1:{oauth2_port}"), &one, exp)
        ),
    );

    // Distinct tokens are reused while they hold for another day.
    let stamp = dir.join("tokens.exp");
    let reusable = fs::read_to_string(&stamp)
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace();
            Some((
                it.next()?.parse::<u64>().ok()?,
                it.next()?.parse::<usize>().ok()?,
            ))
        })
        .is_some_and(|(e, n)| e > t + 86_400 && n == count)
        && dir.join("tokens.txt").is_file();
    if !reusable {
        let started = std::time::Instant::now();
        let tokens = mint_many(count, exp);
        let mut text = tokens.join("\n");
        text.push('\n');
        write("tokens.txt", &text);
        write("tokens.exp", &format!("{exp} {count}\n"));
        eprintln!(
            "bench-fixtures: {count} distinct RS256 tokens signed in {:.1} s",
            started.elapsed().as_secs_f64()
        );
    }
}
