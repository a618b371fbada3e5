//! Every configuration fault is refused with its JSON path.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use portcullis_core::config::{Config, FilterKind};

fn errors(json: &str) -> Vec<String> {
    match Config::from_json_with_env(json.as_bytes(), &|name| {
        (name == "SET").then(|| "from-env".to_string())
    }) {
        Ok(_) => panic!("config was accepted: {json}"),
        Err(errors) => errors.iter().map(ToString::to_string).collect(),
    }
}

fn first_error(json: &str) -> String {
    errors(json).into_iter().next().unwrap()
}

fn accepted(json: &str) -> Config {
    match Config::from_json_with_env(json.as_bytes(), &|name| {
        (name == "SET").then(|| "from-env".to_string())
    }) {
        Ok(c) => c,
        Err(e) => panic!("config refused: {e:?}"),
    }
}

const JWKS: &str =
    r#"{"keys":[{"kty":"oct","kid":"h","k":"c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA"}]}"#;

#[test]
fn invalid_duration_names_its_path() {
    let e = first_error(
        r#"{"filters":[{"name":"jwt","JWT":{"jwksURI":"http://idp/jwks","leewayForExpiresAt":"5 sec"}}]}"#,
    );
    assert_eq!(
        e,
        r#"filters[0].JWT.leewayForExpiresAt: invalid duration "5 sec""#
    );
}

#[test]
fn unknown_field_is_an_error() {
    let e = first_error(
        r#"{"filters":[{"name":"jwt","JWT":{"jwksURI":"http://idp/jwks","bogus":1}}]}"#,
    );
    assert!(
        e.starts_with("filters[0].JWT.bogus: unknown field `bogus`"),
        "{e}"
    );
}

#[test]
fn unknown_top_level_field_is_an_error() {
    let e = first_error(r#"{"filtres":[]}"#);
    assert!(e.starts_with("filtres: unknown field"), "{e}");
}

#[test]
fn not_json_is_an_error() {
    assert!(first_error("{").starts_with("configuration is not valid JSON"));
    assert_eq!(first_error("[]"), "configuration must be a JSON object");
}

#[test]
fn empty_config_lets_everything_through() {
    let c = accepted("{}");
    assert!(c.rules.is_empty());
}

#[test]
fn filter_needs_exactly_one_type() {
    let e = first_error(r#"{"filters":[{"name":"x"}]}"#);
    assert!(
        e.starts_with("filters[0]: a filter has exactly one of"),
        "{e}"
    );
    let e = first_error(&format!(
        r#"{{"filters":[{{"name":"x","JWT":{{"jwks":{JWKS}}},"APIKey":{{"keys":[{{"value":"k"}}]}}}}]}}"#
    ));
    assert!(e.contains("found JWT, APIKey"), "{e}");
}

#[test]
fn missing_name_is_an_error() {
    let e = first_error(r#"{"filters":[{"APIKey":{"keys":[{"value":"k"}]}}]}"#);
    assert!(e.starts_with("filters[0]: missing field `name`"), "{e}");
}

#[test]
fn duplicate_filter_names_are_refused() {
    let e = first_error(
        r#"{"filters":[{"name":"k","APIKey":{"keys":[{"value":"a"}]}},{"name":"k","APIKey":{"keys":[{"value":"b"}]}}]}"#,
    );
    assert_eq!(e, r#"filters[1].name: duplicate filter name "k""#);
}

#[test]
fn rule_referencing_unknown_filter_is_refused() {
    let e = first_error(r#"{"rules":[{"host":"*","path":"/a/*","filters":[{"name":"nope"}]}]}"#);
    assert_eq!(e, r#"rules[0].filters[0].name: unknown filter "nope""#);
}

#[test]
fn bad_glob_is_refused() {
    let e = first_error(r#"{"rules":[{"host":"*","path":"/a/[x","filters":[]}]}"#);
    assert!(
        e.starts_with(r#"rules[0].path: invalid glob "/a/[x""#),
        "{e}"
    );
}

#[test]
fn bad_url_is_refused() {
    let e = first_error(r#"{"filters":[{"name":"jwt","JWT":{"jwksURI":"ftp://idp/jwks"}}]}"#);
    assert!(e.starts_with("filters[0].JWT.jwksURI: invalid URL"), "{e}");
}

#[test]
fn bad_algorithm_is_refused() {
    let e = first_error(&format!(
        r#"{{"filters":[{{"name":"j","JWT":{{"jwks":{JWKS},"validAlgorithms":["RS256","HS1"]}}}}]}}"#
    ));
    assert!(
        e.starts_with("filters[0].JWT.validAlgorithms[1]: unsupported algorithm \"HS1\""),
        "{e}"
    );
}

#[test]
fn jwt_needs_keys_unless_only_none() {
    let e = first_error(r#"{"filters":[{"name":"j","JWT":{}}]}"#);
    assert_eq!(e, "filters[0].JWT: one of `jwksURI` or `jwks` is required");
    let c = accepted(r#"{"filters":[{"name":"j","JWT":{"validAlgorithms":["none"]}}]}"#);
    assert!(c.notices.iter().any(|n| n.contains("\"none\" is allowed")));
}

#[test]
fn template_syntax_error_is_a_config_error() {
    let e = first_error(&format!(
        r#"{{"filters":[{{"name":"j","JWT":{{"jwks":{JWKS},"injectRequestHeaders":[{{"name":"X-A","value":"{{{{ .token.Claims.sub "}}]}}}}]}}"#
    ));
    assert!(
        e.starts_with("filters[0].JWT.injectRequestHeaders[0].value: invalid template"),
        "{e}"
    );
}

#[test]
fn body_template_syntax_error_is_a_config_error() {
    let e = first_error(&format!(
        r#"{{"filters":[{{"name":"j","JWT":{{"jwks":{JWKS},"errorResponse":{{"bodyTemplate":"{{{{ if }}}}"}}}}}}]}}"#
    ));
    assert!(
        e.starts_with("filters[0].JWT.errorResponse.bodyTemplate: invalid template"),
        "{e}"
    );
}

#[test]
fn bad_header_name_is_refused() {
    let e = first_error(&format!(
        r#"{{"filters":[{{"name":"j","JWT":{{"jwks":{JWKS},"injectRequestHeaders":[{{"name":"X Bad","value":"v"}}]}}}}]}}"#
    ));
    assert_eq!(
        e,
        r#"filters[0].JWT.injectRequestHeaders[0].name: invalid header name "X Bad""#
    );
}

#[test]
fn bad_on_deny_is_refused() {
    let e = first_error(
        r#"{"filters":[{"name":"k","APIKey":{"keys":[{"value":"a"}]}}],"rules":[{"filters":[{"name":"k","onDeny":"stop"}]}]}"#,
    );
    assert_eq!(
        e,
        r#"rules[0].filters[0].onDeny: must be "break" or "continue", not "stop""#
    );
}

#[test]
fn bad_value_regex_is_refused() {
    let e = first_error(
        r#"{"filters":[{"name":"k","APIKey":{"keys":[{"value":"a"}]}}],"rules":[{"filters":[{"name":"k","ifRequestHeader":{"name":"x","valueRegex":"("}}]}]}"#,
    );
    assert!(
        e.starts_with("rules[0].filters[0].ifRequestHeader.valueRegex: invalid regex"),
        "{e}"
    );
}

#[test]
fn jwt_arguments_are_checked() {
    let e = first_error(&format!(
        r#"{{"filters":[{{"name":"j","JWT":{{"jwks":{JWKS}}}}}],"rules":[{{"filters":[{{"name":"j","arguments":{{"scope":"read"}}}}]}}]}}"#
    ));
    assert!(
        e.starts_with("rules[0].filters[0].arguments.scope: invalid type"),
        "{e}"
    );
    // AES 1.x documents the argument as `scopes`: it loads as `scope`.
    accepted(&format!(
        r#"{{"filters":[{{"name":"j","JWT":{{"jwks":{JWKS}}}}}],"rules":[{{"filters":[{{"name":"j","arguments":{{"scopes":["read"]}}}}]}}]}}"#
    ));
    let e = first_error(&format!(
        r#"{{"filters":[{{"name":"j","JWT":{{"jwks":{JWKS}}}}}],"rules":[{{"filters":[{{"name":"j","arguments":{{"scopez":["read"]}}}}]}}]}}"#
    ));
    assert!(
        e.starts_with("rules[0].filters[0].arguments.scopez: unknown field `scopez`"),
        "{e}"
    );
}

const OAUTH2_OK: &str = r#""authorizationURL":"https://idp.example.com","clientID":"c","secret":"s",
    "protectedOrigins":[{"origin":"https://app.example.com"}],"sessionKeys":["MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="]"#;

#[test]
fn oauth2_filter_loads_with_its_rule_arguments() {
    let c = accepted(&format!(
        r#"{{"filters":[{{"name":"login","OAuth2":{{{OAUTH2_OK}}}}}],
            "rules":[{{"host":"*","path":"/app/*","filters":[{{"name":"login","arguments":{{"scope":["profile"],"sameSite":"Strict",
              "insteadOfRedirect":{{"ifRequestHeader":{{"name":"Accept","value":"application/json"}},"httpStatusCode":401}}}}}}]}}]}}"#
    ));
    assert_eq!(c.filters[0].kind.type_name(), "OAuth2");
}

#[test]
fn oauth2_audience_is_an_authorization_parameter_given_once() {
    accepted(&format!(
        r#"{{"filters":[{{"name":"login","OAuth2":{{{OAUTH2_OK},"audience":"my-app"}}}}]}}"#
    ));
    let twice = first_error(&format!(
        r#"{{"filters":[{{"name":"login","OAuth2":{{{OAUTH2_OK},"audience":"my-app",
            "extraAuthorizationParameters":{{"audience":"other"}}}}}}]}}"#
    ));
    assert!(
        twice.starts_with("filters[0].OAuth2.audience: also given in extraAuthorizationParameters"),
        "{twice}"
    );
}

/// `response_mode: form_post` loads on https origins; on an http origin it is
/// refused with the reason (a SameSite=None state cookie must be Secure);
/// `fragment` and the JWT modes, which no callback can read, are refused.
#[test]
fn oauth2_form_post_needs_https_origins() {
    accepted(&format!(
        r#"{{"filters":[{{"name":"login","OAuth2":{{{OAUTH2_OK},
            "extraAuthorizationParameters":{{"response_mode":"form_post"}}}}}}]}}"#
    ));
    accepted(&format!(
        r#"{{"filters":[{{"name":"login","OAuth2":{{{OAUTH2_OK},
            "extraAuthorizationParameters":{{"response_mode":"query"}}}}}}]}}"#
    ));
    let http = first_error(
        r#"{"filters":[{"name":"login","OAuth2":{"authorizationURL":"https://idp.example.com","clientID":"c","secret":"s",
            "protectedOrigins":[{"origin":"https://app.example.com"},{"origin":"http://app.example.com:8080"}],
            "extraAuthorizationParameters":{"response_mode":"form_post"}}}]}"#,
    );
    assert!(
        http.starts_with(
            "filters[0].OAuth2.extraAuthorizationParameters.response_mode: form_post needs https protected origins, and http://app.example.com:8080 is http"
        ),
        "{http}"
    );
    assert!(http.contains("SameSite=None"), "{http}");
    assert!(http.contains("Secure (https)"), "{http}");
    for mode in ["fragment", "form_post.jwt", "jwt"] {
        let e = first_error(&format!(
            r#"{{"filters":[{{"name":"login","OAuth2":{{{OAUTH2_OK},
                "extraAuthorizationParameters":{{"response_mode":"{mode}"}}}}}}]}}"#
        ));
        assert!(
            e.starts_with("filters[0].OAuth2.extraAuthorizationParameters.response_mode: "),
            "{e}"
        );
    }
}

#[test]
fn oauth2_errors_name_their_paths() {
    // No sessionKeys and no secret (a public client): nothing to derive from.
    let no_keys = first_error(
        r#"{"filters":[{"name":"login","OAuth2":{"authorizationURL":"https://idp.example.com","clientID":"c",
            "protectedOrigins":[{"origin":"https://app.example.com"}]}}]}"#,
    );
    assert!(
        no_keys.starts_with("filters[0].OAuth2.sessionKeys"),
        "{no_keys}"
    );
    let bad_grant = first_error(&format!(
        r#"{{"filters":[{{"name":"login","OAuth2":{{{OAUTH2_OK},"grantType":"Implicit"}}}}]}}"#
    ));
    assert!(
        bad_grant.starts_with("filters[0].OAuth2.grantType"),
        "{bad_grant}"
    );
    let bad_key = first_error(
        r#"{"filters":[{"name":"login","OAuth2":{"authorizationURL":"https://idp.example.com","clientID":"c","secret":"s",
            "protectedOrigins":[{"origin":"https://app.example.com"}],"sessionKeys":["c2hvcnQ="]}}]}"#,
    );
    assert!(
        bad_key.starts_with("filters[0].OAuth2.sessionKeys[0]"),
        "{bad_key}"
    );
    let bad_args = first_error(&format!(
        r#"{{"filters":[{{"name":"login","OAuth2":{{{OAUTH2_OK}}}}}],"rules":[{{"filters":[{{"name":"login","arguments":{{"sameSite":"Sometimes"}}}}]}}]}}"#
    ));
    assert!(
        bad_args.starts_with("rules[0].filters[0].arguments.sameSite"),
        "{bad_args}"
    );
}

#[test]
fn kubernetes_secret_references_are_refused_with_advice() {
    let all = errors(
        r#"{"filters":[{"name":"o","OAuth2":{"authorizationURL":"https://idp","clientID":"c","secretName":"s"}}]}"#,
    );
    assert!(
        all.iter().any(|e| e
            .starts_with("filters[0].OAuth2.secretName: Kubernetes Secrets are not read")
            && e.contains("fromEnv")),
        "{all:?}"
    );
}

#[test]
fn apikey_secret_references_are_refused_with_advice() {
    let e = first_error(
        r#"{"filters":[{"name":"k","APIKey":{"keys":[{"secretName":"partner-keys"}]}}]}"#,
    );
    assert!(
        e.starts_with("filters[0].APIKey.keys[0].secretName: Kubernetes Secrets are not read")
            && e.contains("fromEnv")
            && e.contains("portcullis import"),
        "{e}"
    );
}

/// An AES OAuth2 spec as pasted: no sessionKeys, ambassador_id beside the type,
/// options Envoy or Portcullis cover.
#[test]
fn a_pasted_aes_oauth2_filter_loads() {
    let c = accepted(
        r#"{"filters":[{"name":"sso.default","ambassador_id":["default"],"OAuth2":{
            "authorizationURL":"https://idp.example.com","clientID":"app","secret":"s3cr3t",
            "protectedOrigins":[{"origin":"https://app.example.com","allowedInternalOrigins":["*://*"]}],
            "allowMalformedAccessToken":true,"maxStale":"1m"}}],
          "rules":[{"host":"*","path":"*","precedence":1,"filters":[{"name":"sso.default"}]}]}"#,
    );
    for start in [
        "filters[0].ambassador_id: ignored",
        "filters[0].OAuth2.sessionKeys: none given: the session key is derived from `secret`",
        "filters[0].OAuth2.allowMalformedAccessToken: ignored",
        "filters[0].OAuth2.maxStale: ignored",
    ] {
        assert!(
            c.notices.iter().any(|n| n.starts_with(start)),
            "{start}: {:?}",
            c.notices
        );
    }
}

#[test]
fn oauth2_jwt_assertion_with_the_client_secret_loads() {
    accepted(
        r#"{"filters":[{"name":"o","OAuth2":{"authorizationURL":"https://idp.example.com","clientID":"app","secret":"s",
            "protectedOrigins":[{"origin":"https://app.example.com"}],
            "clientAuthentication":{"method":"JWTAssertion","jwtAssertion":{"signingMethod":"HS256","setClientID":true,
              "lifetime":"30s","setIAT":true,"otherClaims":{"tenant":"t1"}}}}}]}"#,
    );
}

#[test]
fn aes_oauth2_options_without_an_equivalent_are_refused_with_advice() {
    let base = r#""authorizationURL":"https://idp.example.com","clientID":"app","secret":"s","protectedOrigins":[{"origin":"https://app.example.com"}]"#;
    for (extra, path, advice) in [
        (
            r#""accessTokenJWTFilter":{"name":"jwt"}"#,
            "filters[0].OAuth2.accessTokenJWTFilter",
            "accessTokenValidation",
        ),
        (
            r#""clientAuthentication":{"method":"JWTAssertion","jwtAssertion":{"signingMethod":"PS256"}}"#,
            "filters[0].OAuth2.clientAuthentication.jwtAssertion.signingMethod",
            "use RS256",
        ),
        (
            r#""clientAuthentication":{"method":"JWTAssertion"}"#,
            "filters[0].OAuth2.secret",
            "not an RSA private key for RS256",
        ),
        (
            r#""clientAuthentication":{"method":"BodyPassword","jwtAssertion":{"setClientID":true}}"#,
            "filters[0].OAuth2.clientAuthentication.jwtAssertion",
            "only with method \"JWTAssertion\"",
        ),
        (
            r#""xsrfProtection":"always""#,
            "filters[0].OAuth2.xsrfProtection",
            "unsafeMethods",
        ),
        (
            r#""callbackPath":"no-slash""#,
            "filters[0].OAuth2.callbackPath",
            "starting with '/'",
        ),
    ] {
        let all = errors(&format!(
            r#"{{"filters":[{{"name":"o","OAuth2":{{{base},{extra}}}}}]}}"#
        ));
        assert!(
            all.iter()
                .any(|e| e.starts_with(path) && e.contains(advice)),
            "{extra}: {all:?}"
        );
    }
    let e = first_error(&format!(
        r#"{{"filters":[{{"name":"o","OAuth2":{{{base}}}}}],"rules":[{{"filters":[{{"name":"o","arguments":{{"insteadOfRedirect":{{"filters":[{{"name":"x"}}]}}}}}}]}}]}}"#
    ));
    assert!(
        e.starts_with("rules[0].filters[0].arguments.insteadOfRedirect.filters: not supported"),
        "{e}"
    );
}

#[test]
fn aes_plugin_filters_and_the_v1alpha1_shape_are_refused_with_advice() {
    let e = first_error(r#"{"filters":[{"name":"p","Plugin":{"name":"param-filter"}}]}"#);
    assert!(
        e.starts_with("filters[0].Plugin: AES Go plugins") && e.contains("External"),
        "{e}"
    );
    let e = first_error(
        r#"{"filters":[{"name":"j","type":"jwt","jwt":{"jwksURI":"http://idp/jwks"}}]}"#,
    );
    assert!(
        e.starts_with("filters[0].type: this is the gateway.getambassador.io/v1alpha1"),
        "{e}"
    );
}

#[test]
fn client_credentials_needs_no_client_id() {
    accepted(
        r#"{"filters":[{"name":"cc","OAuth2":{"authorizationURL":"https://idp.example.com","grantType":"ClientCredentials"}}]}"#,
    );
    let e = first_error(
        r#"{"filters":[{"name":"p","OAuth2":{"authorizationURL":"https://idp.example.com","grantType":"Password"}}]}"#,
    );
    assert!(e.starts_with("filters[0].OAuth2.clientID: required"), "{e}");
}

#[test]
fn client_url_reads_as_one_origin_with_any_internal_origin() {
    let c = accepted(
        r#"{"filters":[{"name":"o","OAuth2":{"authorizationURL":"https://idp.example.com","clientID":"app","secret":"s","clientURL":"https://app.example.com"}}]}"#,
    );
    assert!(
        c.notices
            .iter()
            .any(|n| n.starts_with("filters[0].OAuth2.clientURL: deprecated")),
        "{:?}",
        c.notices
    );
}

#[test]
fn rule_precedence_orders_rules_higher_first_and_keeps_ties_in_order() {
    let c = accepted(&format!(
        r#"{{"filters":[{{"name":"a","JWT":{{"jwks":{JWKS}}}}},{{"name":"b","JWT":{{"jwks":{JWKS}}}}}],
           "rules":[{{"path":"/low","filters":[{{"name":"a"}}]}},
                    {{"path":"/high","precedence":10,"filters":[{{"name":"b"}}]}},
                    {{"path":"/tie","filters":[{{"name":"b"}}]}}]}}"#
    ));
    let paths: Vec<String> = c
        .rules
        .iter()
        .map(|r| r.path.as_str().to_string())
        .collect();
    assert_eq!(paths, ["/high", "/low", "/tie"]);
}

#[test]
fn fields_envoy_handles_are_ignored_with_a_notice() {
    let c = accepted(&format!(
        r#"{{"filters":[{{"name":"j","JWT":{{"jwks":{JWKS},"insecureTLS":true,"renegotiateTLS":"never","ambassador_id":["a"]}}}}]}}"#
    ));
    assert!(
        c.notices
            .iter()
            .any(|n| n.starts_with("filters[0].JWT.insecureTLS: ignored")),
        "{:?}",
        c.notices
    );
    assert!(c
        .notices
        .iter()
        .any(|n| n.starts_with("filters[0].JWT.ambassador_id: ignored")));
    // Where AES puts it: beside the type, in the Filter spec.
    let c = accepted(&format!(
        r#"{{"filters":[{{"name":"j","ambassador_id":["a"],"JWT":{{"jwks":{JWKS},"validAlgorithms":["ES256","ES384","ES512"]}}}}]}}"#
    ));
    assert!(c
        .notices
        .iter()
        .any(|n| n.starts_with("filters[0].ambassador_id: ignored")));
}

#[test]
fn secret_from_env_is_read_and_missing_variable_is_an_error() {
    accepted(r#"{"filters":[{"name":"k","APIKey":{"keys":[{"value":{"fromEnv":"SET"}}]}}]}"#);
    let e = first_error(
        r#"{"filters":[{"name":"k","APIKey":{"keys":[{"value":{"fromEnv":"UNSET"}}]}}]}"#,
    );
    assert!(
        e.starts_with(
            r#"filters[0].APIKey.keys[0].value: environment variable "UNSET" is not set"#
        ),
        "{e}"
    );
}

#[test]
fn apikey_sha256_must_be_hex_digest() {
    let e = first_error(r#"{"filters":[{"name":"k","APIKey":{"keys":[{"sha256":"abc"}]}}]}"#);
    assert!(
        e.starts_with("filters[0].APIKey.keys[0].sha256: must be a SHA-256 digest"),
        "{e}"
    );
    let e = first_error(
        r#"{"filters":[{"name":"k","APIKey":{"keys":[{"value":"a","sha256":"00"}]}}]}"#,
    );
    assert_eq!(
        e,
        "filters[0].APIKey.keys[0]: give exactly one of `value` or `sha256`"
    );
}

#[test]
fn every_error_is_reported_not_just_the_first() {
    let all = errors(
        r#"{"filters":[{"name":"k","APIKey":{"keys":[]}}],"rules":[{"path":"[","filters":[{"name":"x"}]}]}"#,
    );
    assert!(all.len() >= 3, "{all:?}");
}

#[test]
fn remote_jwks_uses_cluster_map() {
    let c = accepted(
        r#"{"clusters":{"idp.example.com:8443":"idp"},"filters":[{"name":"a","JWT":{"jwksURI":"https://idp.example.com:8443/jwks"}},{"name":"b","JWT":{"jwksURI":"https://idp.example.com:8443/jwks","jwksRefreshInterval":"1m"}}]}"#,
    );
    assert_eq!(c.jwks_sources.len(), 1, "one fetch serves both filters");
    let s = &c.jwks_sources[0];
    assert_eq!(s.target.cluster, "idp");
    assert_eq!(s.target.authority, "idp.example.com:8443");
    assert_eq!(s.target.path, "/jwks");
    assert_eq!(s.refresh_interval.as_secs(), 60);
    assert!(matches!(c.filters[0].kind, FilterKind::Jwt(_)));
}

#[test]
fn aes_spec_pasted_as_is_loads() {
    // The Edge Stack article's filter, with its policy, as a user pastes it.
    let c = accepted(
        r#"{"filters":[{"name":"example-jwt-filter","JWT":{"jwksURI":"https://getambassador-demo.auth0.com/.well-known/jwks.json","validAlgorithms":["none"],"audience":"myapp","requireAudience":false,
            "injectRequestHeaders":[{"name":"X-Fixed-String","value":"Fixed String"}],
            "errorResponse":{"headers":[{"name":"Content-Type","value":"application/json"}],"bodyTemplate":"{}"}}}],
          "rules":[{"host":"*","path":"*","filters":[{"name":"example-jwt-filter","namespace":"example-namespace","arguments":{"scope":["scope-value-1","scope-value-2"]}}]}]}"#,
    );
    assert_eq!(c.rules.len(), 1);
    assert_eq!(
        c.jwks_sources[0].target.cluster,
        "getambassador-demo.auth0.com"
    );
}

#[test]
fn cache_budget_is_shared_between_the_caches_and_never_exceeded() {
    let jwt_only = accepted(r#"{"cacheBudget":"8Mi"}"#);
    let shares = jwt_only.cache_shares();
    assert_eq!(
        (shares.tokens, shares.sessions, shares.shared_callouts),
        (8 << 20, 0, 0)
    );
    let with_oauth2 = accepted(&format!(
        r#"{{"cacheBudget":"8Mi","filters":[{{"name":"login","OAuth2":{{{OAUTH2_OK}}}}}]}}"#
    ));
    let shares = with_oauth2.cache_shares();
    assert_eq!(
        (shares.tokens, shares.sessions, shares.shared_callouts),
        (5 << 20, 2 << 20, 1 << 20)
    );
    let default = accepted(&format!(
        r#"{{"filters":[{{"name":"login","OAuth2":{{{OAUTH2_OK}}}}}]}}"#
    ));
    let shares = default.cache_shares();
    assert_eq!(
        shares.tokens + shares.sessions + shares.shared_callouts,
        16 << 20
    );
    let off = accepted(&format!(
        r#"{{"cacheBudget":0,"filters":[{{"name":"login","OAuth2":{{{OAUTH2_OK}}}}}]}}"#
    ));
    assert_eq!(off.cache_shares().tokens + off.cache_shares().sessions, 0);
}

#[test]
fn oauth2_filters_whose_cookie_names_would_collide_are_refused() {
    let e = first_error(&format!(
        r#"{{"filters":[{{"name":"app","OAuth2":{{{OAUTH2_OK}}}}},{{"name":"app.1","OAuth2":{{{OAUTH2_OK}}}}}]}}"#
    ));
    assert!(e.starts_with("filters[1].name"), "{e}");
    assert!(e.contains("cookie names"), "{e}");
    // A name and its AES `name.namespace` form live side by side.
    accepted(&format!(
        r#"{{"filters":[{{"name":"app","OAuth2":{{{OAUTH2_OK}}}}},{{"name":"app.default","OAuth2":{{{OAUTH2_OK}}}}}]}}"#
    ));
}

/// A host that cannot check signatures: without the pure-Rust ES384/ES512
/// checks (the module's build), listing them refuses the filter and the
/// default list drops them; with them (the default features) nothing changes.
#[test]
fn without_host_signatures_refuses_listed_es384_and_drops_it_from_the_default() {
    use portcullis_core::jwt::filter::HOST_ONLY_ALGORITHMS;
    use portcullis_core::jwt::Algorithm;
    let jwks = r#"{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}"#;
    let listed = format!(
        r#"{{"filters": [{{"name": "j", "JWT": {{"jwks": {jwks}, "validAlgorithms": ["RS256", "ES384"]}}}}]}}"#
    );
    let mut config = accepted(&listed);
    let result = config.without_host_signatures();
    if HOST_ONLY_ALGORITHMS.is_empty() {
        assert_eq!(result.unwrap(), Vec::<String>::new());
    } else {
        let errors: Vec<String> = result
            .unwrap_err()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with("filters[0].JWT.validAlgorithms: ES384 and ES512 are checked only by Envoy's verify_signature"),
            "{errors:?}"
        );
    }

    let default = format!(
        r#"{{"filters": [{{"name": "a", "APIKey": {{"keys": [{{"value": "k"}}]}}}}, {{"name": "j", "JWT": {{"jwks": {jwks}}}}}]}}"#
    );
    let mut config = accepted(&default);
    let notices = config.without_host_signatures().unwrap();
    let FilterKind::Jwt(jwt) = &config.filters[1].kind else {
        panic!("filter 1 is the JWT filter")
    };
    let algs = &jwt.policy.valid_algorithms;
    if HOST_ONLY_ALGORITHMS.is_empty() {
        assert!(notices.is_empty(), "{notices:?}");
        assert!(algs.contains(&Algorithm::ES384) && algs.contains(&Algorithm::ES512));
    } else {
        assert_eq!(
            notices,
            vec!["filters[1].JWT: ES384 and ES512 tokens are refused: Envoy's verify_signature is unavailable and this module has no pure-Rust check for them".to_string()]
        );
        assert!(!algs.contains(&Algorithm::ES384) && !algs.contains(&Algorithm::ES512));
        assert!(algs.contains(&Algorithm::ES256) && algs.contains(&Algorithm::RS256));
    }
}
