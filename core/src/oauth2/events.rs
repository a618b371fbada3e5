//! What an OAuth2 filter did for a request beyond allowing or refusing it,
//! for metrics: the events Envoy's own `oauth2` filter counts
//! (`oauth_unauthorized_rq`, `oauth_success`, `oauth_failure`,
//! `oauth_refreshtoken_success`/`_failure`), named for the OIDC flow (login,
//! refresh, logout) and the identity provider's failures by kind.
//!
//! The flow notes them as it goes ([`OAuth2Events::note`], through
//! [`super::IdpState::events`]); the pipeline counts them per filter.

use crate::callout::CalloutAnswer;
use std::cell::Cell;

/// How the identity provider failed a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum IdpErrorKind {
    /// No answer (connection refused, timeout), an HTTP 5xx or a gRPC error
    /// from the token endpoint or the UserInfo endpoint.
    Unavailable,
    /// A 200 from the token endpoint that is not a usable token answer
    /// (RFC 6749 §5.1: not JSON, no `access_token`, a `token_type` other than
    /// Bearer), or a login's answer without an ID token.
    InvalidAnswer,
    /// The discovery document or the JWK Set was not loaded when a request
    /// needed it (the 503 "sign-in is unavailable" page).
    NotLoaded,
}

impl IdpErrorKind {
    pub const ALL: [IdpErrorKind; 3] = [
        IdpErrorKind::Unavailable,
        IdpErrorKind::InvalidAnswer,
        IdpErrorKind::NotLoaded,
    ];

    /// The kind as a metric name part (`unavailable`, `invalid_answer`,
    /// `not_loaded`).
    pub fn as_str(self) -> &'static str {
        match self {
            IdpErrorKind::Unavailable => "unavailable",
            IdpErrorKind::InvalidAnswer => "invalid_answer",
            IdpErrorKind::NotLoaded => "not_loaded",
        }
    }
}

/// One thing an OAuth2 filter did for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum OAuth2Event {
    /// A browser without a session was sent to the authorization endpoint
    /// (the 303 with a login state cookie; not the 401 of a background
    /// request).
    LoginStarted,
    /// A callback exchanged its code, the ID token held, and the session
    /// cookies went out with the way back.
    LoginCompleted,
    /// A callback ended without a session: the IdP's `error=`, a stale,
    /// forged or replayed state, a refused code, an ID token that failed, the
    /// IdP down.
    LoginRefused,
    /// A refresh token gave new tokens (RFC 6749 §6), counted by the request
    /// that sent the refresh (not by those that used its shared answer).
    RefreshDone,
    /// A refresh gave no tokens: refused (a new login follows) or the IdP
    /// down.
    RefreshFailed,
    /// A logout cleared the session (and sent the browser to the IdP's
    /// `end_session_endpoint` or `postLogoutRedirectURI`).
    Logout,
    /// The identity provider failed, by kind.
    IdpError(IdpErrorKind),
}

impl OAuth2Event {
    /// Every event, in the order metrics list them.
    pub const ALL: [OAuth2Event; 9] = [
        OAuth2Event::LoginStarted,
        OAuth2Event::LoginCompleted,
        OAuth2Event::LoginRefused,
        OAuth2Event::RefreshDone,
        OAuth2Event::RefreshFailed,
        OAuth2Event::Logout,
        OAuth2Event::IdpError(IdpErrorKind::Unavailable),
        OAuth2Event::IdpError(IdpErrorKind::InvalidAnswer),
        OAuth2Event::IdpError(IdpErrorKind::NotLoaded),
    ];

    /// The event as the last part of its metric name (`login.started`,
    /// `refresh.done`, `logout`, `idp_error.unavailable`, ...).
    pub fn metric_suffix(self) -> &'static str {
        match self {
            OAuth2Event::LoginStarted => "login.started",
            OAuth2Event::LoginCompleted => "login.completed",
            OAuth2Event::LoginRefused => "login.refused",
            OAuth2Event::RefreshDone => "refresh.done",
            OAuth2Event::RefreshFailed => "refresh.failed",
            OAuth2Event::Logout => "logout",
            OAuth2Event::IdpError(IdpErrorKind::Unavailable) => "idp_error.unavailable",
            OAuth2Event::IdpError(IdpErrorKind::InvalidAnswer) => "idp_error.invalid_answer",
            OAuth2Event::IdpError(IdpErrorKind::NotLoaded) => "idp_error.not_loaded",
        }
    }

    /// Whether the response that goes with this event is the flow's own
    /// answer, not a denial: the redirect to the IdP, the way back after a
    /// completed login, the way out after a logout.
    pub fn answers(self) -> bool {
        matches!(
            self,
            OAuth2Event::LoginStarted | OAuth2Event::LoginCompleted | OAuth2Event::Logout
        )
    }

    /// Whether the event tells of the IdP's answer to a callout (a refresh,
    /// an IdP error): a request that used another request's shared answer
    /// does not count it again.
    pub fn of_the_answer(self) -> bool {
        matches!(
            self,
            OAuth2Event::RefreshDone | OAuth2Event::RefreshFailed | OAuth2Event::IdpError(_)
        )
    }

    fn bit(self) -> u16 {
        let index = OAuth2Event::ALL
            .iter()
            .position(|e| *e == self)
            .unwrap_or(0);
        1 << index
    }
}

/// The events of one step of the flow, each noted at most once. A shared
/// reference notes (the flow's context is `Copy`).
#[derive(Debug, Default)]
pub struct OAuth2Events {
    bits: Cell<u16>,
}

impl OAuth2Events {
    pub fn new() -> OAuth2Events {
        OAuth2Events::default()
    }

    /// Notes `event`.
    pub fn note(&self, event: OAuth2Event) {
        self.bits.set(self.bits.get() | event.bit());
    }

    pub fn contains(&self, event: OAuth2Event) -> bool {
        self.bits.get() & event.bit() != 0
    }

    /// The events noted, in [`OAuth2Event::ALL`]'s order.
    pub fn iter(&self) -> impl Iterator<Item = OAuth2Event> + '_ {
        OAuth2Event::ALL.into_iter().filter(|e| self.contains(*e))
    }

    pub fn is_empty(&self) -> bool {
        self.bits.get() == 0
    }
}

/// Notes `event` where events are counted (`None`: they are not).
pub(super) fn note(events: Option<&OAuth2Events>, event: OAuth2Event) {
    if let Some(events) = events {
        events.note(event);
    }
}

/// Whether a callout's answer means the IdP failed (no answer, HTTP 5xx, a
/// gRPC error): [`IdpErrorKind::Unavailable`].
pub(super) fn idp_failed(answer: &CalloutAnswer) -> bool {
    match answer {
        CalloutAnswer::Failed { .. } | CalloutAnswer::Grpc { .. } => true,
        CalloutAnswer::Http { status, .. } => *status >= 500,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_event_is_noted_once_and_listed_in_order() {
        let events = OAuth2Events::new();
        assert!(events.is_empty());
        events.note(OAuth2Event::Logout);
        events.note(OAuth2Event::LoginStarted);
        events.note(OAuth2Event::Logout);
        assert_eq!(
            events.iter().collect::<Vec<_>>(),
            [OAuth2Event::LoginStarted, OAuth2Event::Logout]
        );
        assert!(!events.contains(OAuth2Event::RefreshDone));
    }

    #[test]
    fn every_event_has_its_own_bit_and_metric_name() {
        let events = OAuth2Events::new();
        for e in OAuth2Event::ALL {
            events.note(e);
        }
        assert_eq!(events.iter().count(), OAuth2Event::ALL.len());
        let mut names: Vec<_> = OAuth2Event::ALL.iter().map(|e| e.metric_suffix()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), OAuth2Event::ALL.len());
        for kind in IdpErrorKind::ALL {
            assert!(OAuth2Event::ALL.contains(&OAuth2Event::IdpError(kind)));
            assert!(OAuth2Event::IdpError(kind)
                .metric_suffix()
                .ends_with(kind.as_str()));
        }
    }
}

#[cfg(test)]
#[path = "events_tests.rs"]
mod flow_tests;
