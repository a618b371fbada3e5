//! The words a user reads when the IdP answers the callback with an `error`
//! (RFC 6749 §4.1.2.1, OpenID Connect Core 1.0 §3.1.2.6). Anyone can craft a
//! callback link on the site's own domain, so nothing of the answer reaches
//! the page but a known code, mapped to fixed text; `error_description` and
//! `error_uri` are not trustworthy (RFC 6749 §10.13) and go to the log only.

const REFUSED: &str = "The sign-in was refused: you, or the identity provider's policy, did not allow this application access.";
const INTERACTION: &str = "The identity provider needs you to sign in or confirm there first. Go back to the application and sign in again.";
const UNAVAILABLE: &str =
    "The identity provider is temporarily unable to sign you in. Please try again in a moment.";
const IDP_FAILED: &str =
    "The identity provider met an error while signing you in. Please try again later.";
const MISCONFIGURED: &str = "The identity provider refused this application's sign-in request: its configuration does not match the identity provider's. The operator can find the reason in the gateway's log.";
const UNKNOWN: &str = "The identity provider could not sign you in. The operator can find the reason in the gateway's log.";

/// The standard codes (RFC 6749 §4.1.2.1; OIDC Core §3.1.2.6) and their text.
const CODES: &[(&str, &str)] = &[
    ("access_denied", REFUSED),
    ("login_required", INTERACTION),
    ("interaction_required", INTERACTION),
    ("consent_required", INTERACTION),
    ("account_selection_required", INTERACTION),
    ("temporarily_unavailable", UNAVAILABLE),
    ("server_error", IDP_FAILED),
    ("invalid_request", MISCONFIGURED),
    ("unauthorized_client", MISCONFIGURED),
    ("unsupported_response_type", MISCONFIGURED),
    ("invalid_scope", MISCONFIGURED),
    ("invalid_request_uri", MISCONFIGURED),
    ("invalid_request_object", MISCONFIGURED),
    ("request_not_supported", MISCONFIGURED),
    ("request_uri_not_supported", MISCONFIGURED),
    ("registration_not_supported", MISCONFIGURED),
];

/// The fixed text for the IdP's `error` code, and the code itself when it is
/// one of the standard ones (safe to show: it comes from this fixed list).
/// Unknown codes get a general sentence and are not shown.
pub(super) fn refused_text(error: &str) -> (&'static str, Option<&'static str>) {
    CODES
        .iter()
        .find(|(code, _)| *code == error)
        .map(|(code, text)| (*text, Some(*code)))
        .unwrap_or((UNKNOWN, None))
}

#[cfg(test)]
mod tests {
    use super::refused_text;

    #[test]
    fn known_codes_get_fixed_text_and_unknown_ones_are_not_shown() {
        let (text, code) = refused_text("access_denied");
        assert_eq!(code, Some("access_denied"));
        assert!(text.starts_with("The sign-in was refused"));
        assert_eq!(refused_text("consent_required").1, Some("consent_required"));
        let (text, code) = refused_text("<b>call +1-555-0100</b>");
        assert_eq!(code, None);
        assert!(!text.contains("555"));
    }
}
