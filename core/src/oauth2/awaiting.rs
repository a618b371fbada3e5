//! What a request waits on across a callout (the code exchange, a refresh, a UserInfo request, fresh IdP keys): the states `on_answer` and `resume` go on from.

use super::login::LoginState;
use super::session::Session;
use super::token_endpoint::TokenAnswer;
use super::OAuth2Pending;

/// State carried across a callout.
#[derive(Debug)]
pub(super) enum Awaiting {
    CodeExchange {
        state_cookie: String,
        login: LoginState,
    },
    Refresh {
        session: Session,
    },
    Userinfo {
        session: Session,
        /// `Set-Cookie` values to send whatever the answer allows.
        set_cookies: Vec<String>,
    },
    /// The UserInfo claims of a login whose code was just exchanged.
    LoginUserinfo {
        state_cookie: String,
        login: LoginState,
        session: Session,
    },
    /// The UserInfo claims of a refreshed session.
    RefreshUserinfo {
        session: Session,
    },
    Grant,
    /// The token endpoint's answer at login, kept while fresh IdP keys are
    /// fetched for an ID token (or a JWT access token) naming an unknown `kid`.
    IdTokenKeys {
        state_cookie: String,
        login: LoginState,
        tokens: TokenAnswer,
    },
}

pub(super) fn pending(kind: Awaiting) -> OAuth2Pending {
    OAuth2Pending {
        kind: Box::new(kind),
    }
}
