//! The `ClientCredentials` and `Password` grants: API clients hand their
//! credentials in request headers (AES's names), Portcullis trades them at the
//! token endpoint for an access token, and the request goes upstream with it.
//! The credential headers never reach the upstream.

use super::events::{note, IdpErrorKind, OAuth2Event, OAuth2Events};
use super::token_endpoint::{read_token_answer, token_callout, TokenFailure};
use super::upstream::upstream_changes;
use super::{GrantType, IdpState, OAuth2Args, OAuth2Filter, OAuth2Pending, OAuth2Step};
use crate::callout::CalloutAnswer;
use crate::request::Request;
use crate::response::{HeaderChange, Response};

pub const CLIENT_ID_HEADER: &str = "x-ambassador-client-id";
pub const CLIENT_SECRET_HEADER: &str = "x-ambassador-client-secret";
pub const USERNAME_HEADER: &str = "x-ambassador-username";
pub const PASSWORD_HEADER: &str = "x-ambassador-password";

/// The longest credential header read.
const MAX_CREDENTIAL_LEN: usize = 4096;

fn credential<'a>(request: &'a Request, name: &str) -> Option<&'a str> {
    request
        .headers
        .get(name)
        .filter(|v| !v.is_empty() && v.len() <= MAX_CREDENTIAL_LEN)
}

fn missing(what: &str) -> OAuth2Step {
    let mut r = Response::json_error(401, &format!("{what} required"));
    r.set_header("www-authenticate", "Bearer");
    OAuth2Step::Respond(r)
}

pub(super) fn check(
    f: &OAuth2Filter,
    request: &Request,
    args: &OAuth2Args,
    idp: &IdpState<'_>,
    now: f64,
    random: &mut dyn FnMut(&mut [u8]),
) -> OAuth2Step {
    let Some(discovery) = idp.discovery else {
        return OAuth2Step::NeedIdp;
    };
    let Some(target) = f.callout_target(&discovery.token_endpoint) else {
        return OAuth2Step::Respond(f.idp_unavailable());
    };
    let scope = args.scopes.join(" ");
    let callout = match f.grant {
        GrantType::ClientCredentials => {
            let (Some(id), Some(secret)) = (
                credential(request, CLIENT_ID_HEADER),
                credential(request, CLIENT_SECRET_HEADER),
            ) else {
                return missing("X-Ambassador-Client-ID and X-Ambassador-Client-Secret are");
            };
            let mut form = vec![("grant_type", "client_credentials")];
            if !scope.is_empty() {
                form.push(("scope", scope.as_str()));
            }
            token_callout(f, &target, &mut form, Some((id, secret)), now, random)
        }
        GrantType::Password => {
            let (Some(user), Some(password)) = (
                credential(request, USERNAME_HEADER),
                credential(request, PASSWORD_HEADER),
            ) else {
                return missing("X-Ambassador-Username and X-Ambassador-Password are");
            };
            let mut form = vec![
                ("grant_type", "password"),
                ("username", user),
                ("password", password),
            ];
            if !scope.is_empty() {
                form.push(("scope", scope.as_str()));
            }
            token_callout(f, &target, &mut form, None, now, random)
        }
        GrantType::AuthorizationCode => return OAuth2Step::Respond(f.idp_unavailable()),
    };
    OAuth2Step::Callout {
        callout,
        pending: OAuth2Pending {
            kind: Box::new(super::awaiting::Awaiting::Grant),
        },
    }
}

/// The token endpoint's answer to a grant; a 200 that is no token answer is
/// noted in `events`.
pub(super) fn on_answer(
    f: &OAuth2Filter,
    request: &Request,
    answer: CalloutAnswer,
    events: Option<&OAuth2Events>,
) -> OAuth2Step {
    match read_token_answer(answer) {
        Ok(tokens) => {
            let mut changes = upstream_changes(
                f,
                request,
                &tokens.access_token,
                tokens.id_token.as_deref(),
                None,
            );
            for name in [
                CLIENT_ID_HEADER,
                CLIENT_SECRET_HEADER,
                USERNAME_HEADER,
                PASSWORD_HEADER,
            ] {
                if request.headers.contains(name) {
                    changes.push(HeaderChange::remove(name));
                }
            }
            OAuth2Step::Allow {
                request: changes,
                response: Vec::new(),
                identity: Some(crate::identity::Identity::Login(std::sync::Arc::new(
                    crate::identity::Login::new(
                        tokens.access_token.clone(),
                        tokens.id_token.clone(),
                        None,
                    ),
                ))),
            }
        }
        Err(TokenFailure::Refused(why)) => {
            log::info!("OAuth2 filter {}: grant refused: {why}", f.name);
            let mut r = Response::json_error(401, "the identity provider refused the credentials");
            r.set_header("www-authenticate", "Bearer error=\"invalid_token\"");
            OAuth2Step::Respond(r)
        }
        Err(TokenFailure::Garbled(why)) => {
            log::warn!("OAuth2 filter {}: grant: {why}", f.name);
            note(events, OAuth2Event::IdpError(IdpErrorKind::InvalidAnswer));
            OAuth2Step::Respond(Response::json_error(
                502,
                "the identity provider's answer could not be used",
            ))
        }
        Err(TokenFailure::Unavailable(why)) => {
            log::warn!("OAuth2 filter {}: grant failed: {why}", f.name);
            OAuth2Step::Respond(Response::json_error(
                503,
                "the identity provider cannot be reached",
            ))
        }
    }
}
