//! The events each step of the flow notes, driven against the fake IdP of
//! the OAuth2 tests: a login started, completed or refused, a refresh done or
//! failed, a logout, and the IdP's failures by kind.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use super::super::tests::{
    allowed, callback_request, callout, default_tokens, filter, http, jwt_session_request,
    jwt_tokens, logged_in, request, respond, rng, start_login, userinfo_claims, Idp, Login,
};
use super::super::{IdpState, OAuth2Args, OAuth2Filter, OAuth2Pending, OAuth2Step, LOGOUT_PATH};
use super::{IdpErrorKind, OAuth2Event, OAuth2Events};
use crate::callout::CalloutAnswer;
use crate::jwt::verify::test_fixtures::NOW;
use crate::request::Request;
use serde_json::json;

use OAuth2Event::*;

/// `check`, with the events it noted.
fn check(f: &OAuth2Filter, req: &Request, now: f64) -> (OAuth2Step, Vec<OAuth2Event>) {
    let idp = Idp::new();
    let events = OAuth2Events::new();
    let state = IdpState {
        events: Some(&events),
        ..idp.state()
    };
    let step = f.check(req, &OAuth2Args::default(), &state, now, &mut rng());
    (step, events.iter().collect())
}

/// `on_answer`, with the events it noted.
fn answer(
    f: &OAuth2Filter,
    req: &Request,
    pending: OAuth2Pending,
    a: CalloutAnswer,
    now: f64,
) -> (OAuth2Step, Vec<OAuth2Event>) {
    let idp = Idp::new();
    let events = OAuth2Events::new();
    let state = IdpState {
        events: Some(&events),
        ..idp.state()
    };
    let step = f.on_answer(
        req,
        &OAuth2Args::default(),
        pending.answered(a),
        &state,
        now,
        &mut rng(),
    );
    (step, events.iter().collect())
}

fn failed() -> CalloutAnswer {
    CalloutAnswer::Failed {
        reason: "connection refused".into(),
    }
}

/// A started login's callback answered by the token endpoint with `tokens`:
/// the step and events after the code exchange (and the login's UserInfo
/// request, answered for alice, when one follows).
fn callback_answered(
    f: &OAuth2Filter,
    login: &Login,
    tokens: CalloutAnswer,
) -> (OAuth2Step, Vec<OAuth2Event>) {
    let req = callback_request(login, "");
    let (step, events) = check(f, &req, NOW);
    assert_eq!(events, [], "sending the code exchange is no event yet");
    let (_, pending) = callout(step);
    match answer(f, &req, pending, tokens, NOW) {
        (OAuth2Step::Callout { pending, .. }, events) => {
            assert_eq!(events, [], "the login's UserInfo request is no event yet");
            answer(f, &req, pending, http(200, userinfo_claims()), NOW)
        }
        other => other,
    }
}

#[test]
fn a_navigation_without_session_starts_a_login_and_a_script_gets_401_without_one() {
    let f = filter();
    let (step, events) = check(&f, &request("GET", "/page", &[]), NOW);
    assert_eq!(respond(step).status, 303);
    assert_eq!(events, [LoginStarted]);
    let xhr = request("GET", "/page", &[("x-requested-with", "XMLHttpRequest")]);
    let (step, events) = check(&f, &xhr, NOW);
    assert_eq!(respond(step).status, 401);
    assert_eq!(events, [], "a 401 starts no login");
}

#[test]
fn a_callback_that_makes_the_session_completes_the_login() {
    let f = filter();
    let login = start_login(&f, &OAuth2Args::default(), "/page");
    let tokens = http(200, default_tokens(&login));
    let (step, events) = callback_answered(&f, &login, tokens);
    assert_eq!(respond(step).status, 303);
    assert_eq!(events, [LoginCompleted]);
}

#[test]
fn a_callback_that_ends_without_a_session_refuses_the_login() {
    let f = filter();
    // The IdP's error, and a state this browser never started.
    let login = start_login(&f, &OAuth2Args::default(), "/page");
    let (step, events) = check(&f, &callback_request(&login, "&error=access_denied"), NOW);
    assert_eq!(respond(step).status, 401);
    assert_eq!(events, [LoginRefused]);
    let forged = request(
        "GET",
        "/.portcullis/oauth2/redirection-endpoint?code=c&state=forged",
        &[],
    );
    let (step, events) = check(&f, &forged, NOW);
    assert_eq!(respond(step).status, 400);
    assert_eq!(events, [LoginRefused]);
    // The code refused, the IdP down, an answer that is no token answer.
    for (tokens, status, also) in [
        (http(400, json!({"error": "invalid_grant"})), 401, None),
        (failed(), 503, Some(IdpErrorKind::Unavailable)),
        (http(502, json!({})), 503, Some(IdpErrorKind::Unavailable)),
        (
            http(200, json!({"token_type": "Bearer"})),
            502,
            Some(IdpErrorKind::InvalidAnswer),
        ),
        (
            http(200, json!({"access_token": "a", "token_type": "Bearer"})),
            502,
            Some(IdpErrorKind::InvalidAnswer),
        ),
    ] {
        let login = start_login(&f, &OAuth2Args::default(), "/page");
        let (step, events) = callback_answered(&f, &login, tokens);
        assert_eq!(respond(step).status, status);
        let mut want = vec![LoginRefused];
        want.extend(also.map(IdpError));
        want.sort();
        assert_eq!(events, want, "{status}");
    }
}

#[test]
fn a_due_access_token_refreshed_is_a_refresh_done_and_a_refused_refresh_starts_a_login() {
    let mut f = filter();
    f.margin = 30;
    let jar = logged_in(&f, jwt_tokens);
    let req = jwt_session_request(&jar, "GET", "/", &[]);
    let refresh = |a: CalloutAnswer| {
        let (step, events) = check(&f, &req, NOW + 280.0);
        assert_eq!(events, [], "sending the refresh is no event yet");
        let (_, pending) = callout(step);
        match answer(&f, &req, pending, a, NOW + 280.0) {
            (OAuth2Step::Callout { pending, .. }, first) => {
                let (step, mut then) =
                    answer(&f, &req, pending, http(200, userinfo_claims()), NOW + 280.0);
                then.extend(first);
                then.sort();
                (step, then)
            }
            other => other,
        }
    };
    let (step, events) = refresh(http(
        200,
        json!({"access_token": "fresh", "expires_in": 600}),
    ));
    allowed(step);
    assert_eq!(events, [RefreshDone]);
    let (step, events) = refresh(http(400, json!({"error": "invalid_grant"})));
    assert_eq!(respond(step).status, 303);
    assert_eq!(events, [LoginStarted, RefreshFailed]);
    let (step, events) = refresh(failed());
    assert_eq!(respond(step).status, 503);
    assert_eq!(events, [RefreshFailed, IdpError(IdpErrorKind::Unavailable)]);
    let (step, events) = refresh(http(200, json!({"no": "token"})));
    assert_eq!(respond(step).status, 303);
    assert_eq!(
        events,
        [
            LoginStarted,
            RefreshFailed,
            IdpError(IdpErrorKind::InvalidAnswer)
        ]
    );
}

#[test]
fn a_logout_is_counted_once_it_clears_the_session() {
    let f = filter();
    let jar = logged_in(&f, jwt_tokens);
    let xsrf = jar["portcullis_xsrf.login"].clone();
    let req = jwt_session_request(&jar, "POST", &format!("{LOGOUT_PATH}?_xsrf={xsrf}"), &[]);
    let (step, events) = check(&f, &req, NOW + 5.0);
    assert_eq!(respond(step).status, 303);
    assert_eq!(events, [Logout]);
    // Refused (wrong _xsrf, GET): no logout.
    let req = jwt_session_request(&jar, "POST", &format!("{LOGOUT_PATH}?_xsrf=nope"), &[]);
    let (step, events) = check(&f, &req, NOW + 5.0);
    assert_eq!(respond(step).status, 403);
    assert_eq!(events, []);
    let req = jwt_session_request(&jar, "GET", LOGOUT_PATH, &[]);
    assert_eq!(check(&f, &req, NOW + 5.0).1, []);
}

#[test]
fn a_session_in_use_notes_nothing() {
    let f = filter();
    let jar = logged_in(&f, jwt_tokens);
    let (step, events) = check(&f, &jwt_session_request(&jar, "GET", "/", &[]), NOW + 5.0);
    allowed(step);
    assert_eq!(events, []);
}
