//! AES's `clientAuthentication: {method: JWTAssertion}` against an IdP that
//! requires it: oidc-provider (strict defaults) with clients registered for
//! `token_endpoint_auth_method: private_key_jwt` and their public keys, through
//! real Envoy (two workers). The private keys reach the VM as an environment
//! variable with `\n` for its line breaks, as `portcullis import` writes them
//! into `secrets.env`. A login completes only if the token request's
//! `client_assertion` (RFC 7523, OIDC Core §9) satisfies the IdP.

mod oauth2_common;

use std::sync::OnceLock;

use oauth2_common::*;
use portcullis_testbed::browserless::Agent;
use portcullis_testbed::idp::{Idp, IdpClient, IdpOptions};
use portcullis_testbed::tokens::jwks_of;
use portcullis_testbed::{EchoUpstream, Envoy, EnvoyConfig};
use serde_json::json;

const RSA1_PEM: &str = include_str!("../../testdata/keys/rsa1.pem");
const EC256_PEM: &str = include_str!("../../testdata/keys/ec256.pem");

struct Fixture {
    _envoy: Envoy,
    idp: Idp,
    port: u16,
    _echo: EchoUpstream,
}

fn fx() -> &'static Fixture {
    static FX: OnceLock<Fixture> = OnceLock::new();
    FX.get_or_init(|| {
        let echo = EchoUpstream::start();
        let port = portcullis_testbed::idp::free_port();
        let o = origin(port);
        let idp = Idp::start(IdpOptions {
            clients: vec![
                IdpClient::web("pk-rs256", "unused-secret", std::slice::from_ref(&o))
                    .private_key_jwt(jwks_of(&["rsa1"])),
                IdpClient::web("pk-es256", "unused-secret", std::slice::from_ref(&o))
                    .private_key_jwt(jwks_of(&["ec256"])),
            ],
            ..IdpOptions::default()
        });
        let filter = |name: &str, client: &str, var: &str, alg: &str| {
            json!({ "name": name, "OAuth2": {
                "authorizationURL": idp.issuer(),
                "clientID": client,
                "secret": { "fromEnv": var },
                "protectedOrigins": [{ "origin": o }],
                "clientAuthentication": { "method": "JWTAssertion",
                    "jwtAssertion": { "signingMethod": alg, "setIAT": true } },
            }})
        };
        let plugin = json!({
            "clusters": { idp.authority(): "idp" },
            "filters": [
                filter("rs", "pk-rs256", "RS_KEY", "RS256"),
                filter("es", "pk-es256", "ES_KEY", "ES256"),
                // The same client with a client secret instead: the IdP refuses it.
                { "name": "basic", "OAuth2": {
                    "authorizationURL": idp.issuer(), "clientID": "pk-rs256",
                    "secret": "unused-secret", "protectedOrigins": [{ "origin": o }] } },
            ],
            "rules": [
                { "host": "*", "path": "/rs/*", "filters": [{ "name": "rs" }] },
                { "host": "*", "path": "/es/*", "filters": [{ "name": "es" }] },
                { "host": "*", "path": "/basic/*", "filters": [{ "name": "basic" }] },
            ],
        });
        let cfg = EnvoyConfig::new(echo.port())
            .main_port(port)
            .plugin(plugin)
            .cluster("idp", idp.port())
            .vm_env("RS_KEY", &RSA1_PEM.replace('\n', "\\n"))
            .vm_env("ES_KEY", &EC256_PEM.replace('\n', "\\n"));
        let envoy = Envoy::try_start_workers(&cfg.build(), &[], 2).expect("Envoy starts");
        Fixture {
            _envoy: envoy,
            idp,
            port,
            _echo: echo,
        }
    })
}

fn url(path: &str) -> String {
    format!("{}{path}", origin(fx().port))
}

/// Logs in at `path` and returns the upstream's view of the next request.
fn login_and_fetch(path: &str) {
    let f = fx();
    let mut agent = Agent::new();
    let page = url(path);
    let login = f.idp.login_headless(&mut agent, &page, USER);
    assert_eq!(
        login.final_url,
        page,
        "hops: {:?}\nIdP log:\n{}",
        login
            .hops
            .iter()
            .map(|h| format!("{} {} {}", h.method, h.response.status, h.url))
            .collect::<Vec<_>>(),
        f.idp.log()
    );
    let e = echoed(&agent.get(&page));
    assert!(e
        .header("authorization")
        .is_some_and(|v| v.starts_with("Bearer ")));
}

#[test]
fn a_login_with_an_rs256_private_key_jwt_is_accepted_by_an_idp_that_requires_it() {
    login_and_fetch("/rs/page");
}

#[test]
fn a_login_with_an_es256_private_key_jwt_is_accepted_by_an_idp_that_requires_it() {
    login_and_fetch("/es/page");
}

#[test]
fn the_idp_refuses_that_client_with_a_client_secret() {
    let f = fx();
    let mut agent = Agent::new();
    let page = url("/basic/page");
    let login = f.idp.login_headless(&mut agent, &page, USER);
    assert_ne!(
        login.final_url, page,
        "a client_secret_basic login went through"
    );
    let callback = login.hops.last().unwrap();
    assert!(
        callback
            .url
            .contains("/.portcullis/oauth2/redirection-endpoint")
            && callback.response.status >= 400,
        "{} {}",
        callback.response.status,
        callback.url
    );
    // The IdP's own word: it refused the client at its token endpoint.
    assert!(
        f.idp
            .wait_for_log("POST /token -> 401 auth=basic client=pk-rs256", 1, WAIT),
        "{}",
        f.idp.log()
    );
}
