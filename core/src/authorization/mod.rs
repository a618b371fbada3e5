//! The `Authorization` filter (a Portcullis addition): rules tried in order on
//! the identity the filters before it established and on the request
//! (`methods`, `clientCIDRs`, `headers`, `scopes`, `claims`); the first rule
//! whose conditions all hold decides `Allow` or `Deny`, else `defaultAction`.
//! A denial is a 403 `{"message":"access denied","status_code":403}`,
//! customizable with `errorResponse` as in the JWT filter. It establishes no
//! identity itself.
//!
//! `spec.rs`: the serde spec; `claims.rs`: claim and scope conditions;
//! `cidr.rs`: networks.

pub mod cidr;
pub mod claims;
pub mod spec;

use crate::compile::Compiler;
use crate::condition::HeaderCondition;
use crate::identity::Identity;
use crate::inject::HeaderTemplate;
use crate::request::Request;
use crate::response::Response;
use crate::template::{RenderData, Rendered, Template};
use cidr::Cidr;
use claims::{has_scopes, ClaimCondition};
use serde_json::{json, Value};
use spec::AuthorizationSpec;

/// The message of the default 403.
pub const DENIED_MESSAGE: &str = "access denied";
/// What `portcullis.rule` (and `.rule` in templates) says when
/// `defaultAction` decided.
pub const DEFAULT_RULE: &str = "default";
/// The most rules in one Authorization filter.
pub const MAX_RULES: usize = 256;
/// The most entries in one condition list (`methods`, `clientCIDRs`,
/// `headers`, `scopes`, `claims`, and each `anyOf`/`allOf`).
pub const MAX_LIST: usize = 1024;

/// `Allow` or `Deny`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Allow,
    Deny,
}

/// One compiled rule.
#[derive(Debug)]
struct AuthzRule {
    name: String,
    action: Action,
    methods: Option<Vec<String>>,
    client_cidrs: Option<Vec<Cidr>>,
    headers: Vec<HeaderCondition>,
    scopes: Option<Vec<String>>,
    claims: Vec<ClaimCondition>,
}

/// A compiled Authorization filter.
#[derive(Debug)]
pub struct AuthorizationFilter {
    rules: Vec<AuthzRule>,
    default_action: Action,
    error_headers: Vec<HeaderTemplate>,
    body_template: Option<Template>,
}

/// What the filter decided.
#[derive(Debug)]
pub struct AuthzOutcome {
    /// The deciding rule's index; `None` when `defaultAction` decided.
    pub rule: Option<usize>,
    /// `Ok` to go on, or the 403 to answer.
    pub result: Result<(), Response>,
}

impl AuthorizationFilter {
    /// Compiles `spec` found at `path` (`filters[2].Authorization`).
    pub fn compile(
        c: &mut Compiler<'_>,
        path: &str,
        spec: &AuthorizationSpec,
    ) -> Option<AuthorizationFilter> {
        let errors_before = c.errors.len();
        let default_action = match spec.default_action.as_deref() {
            None => Action::Deny,
            Some(text) => action(c, &format!("{path}.defaultAction"), text),
        };
        if spec.rules.len() > MAX_RULES {
            c.error(
                format!("{path}.rules"),
                format!("at most {MAX_RULES} rules"),
            );
        }
        let mut rules = Vec::new();
        for (i, rule) in spec.rules.iter().enumerate().take(MAX_RULES) {
            let at = format!("{path}.rules[{i}]");
            if rule.name.is_empty() {
                c.error(format!("{at}.name"), "must not be empty");
            }
            if spec.rules.iter().take(i).any(|r| r.name == rule.name) {
                c.error(
                    format!("{at}.name"),
                    format!("duplicate rule name {:?}", rule.name),
                );
            }
            if rule.name == DEFAULT_RULE {
                c.error(
                    format!("{at}.name"),
                    "\"default\" names the defaultAction's decision: choose another name",
                );
            }
            let lists = [
                ("methods", rule.methods.as_ref().map(Vec::len)),
                ("clientCIDRs", rule.client_cidrs.as_ref().map(Vec::len)),
                ("headers", rule.headers.as_ref().map(Vec::len)),
                ("scopes", rule.scopes.as_ref().map(Vec::len)),
                ("claims", rule.claims.as_ref().map(Vec::len)),
            ];
            for (field, len) in lists {
                if len.is_some_and(|n| n > MAX_LIST) {
                    c.error(
                        format!("{at}.{field}"),
                        format!("at most {MAX_LIST} entries"),
                    );
                }
            }
            let action = action(c, &format!("{at}.action"), &rule.action);
            let client_cidrs = rule.client_cidrs.as_ref().map(|list| {
                list.iter()
                    .enumerate()
                    .filter_map(|(j, text)| match Cidr::parse(text) {
                        Ok(cidr) => Some(cidr),
                        Err(e) => {
                            c.error(format!("{at}.clientCIDRs[{j}]"), e);
                            None
                        }
                    })
                    .collect()
            });
            let headers = rule
                .headers
                .iter()
                .flatten()
                .enumerate()
                .filter_map(|(j, h)| HeaderCondition::compile(c, &format!("{at}.headers[{j}]"), h))
                .collect();
            let claims = rule
                .claims
                .iter()
                .flatten()
                .enumerate()
                .filter_map(|(j, claim)| {
                    let cpath = format!("{at}.claims[{j}]");
                    let lists = [("anyOf", &claim.any_of), ("allOf", &claim.all_of)];
                    for (field, list) in lists {
                        if list.as_ref().is_some_and(|l| l.len() > MAX_LIST) {
                            c.error(
                                format!("{cpath}.{field}"),
                                format!("at most {MAX_LIST} entries"),
                            );
                        }
                    }
                    ClaimCondition::compile(c, &cpath, claim)
                })
                .collect();
            rules.push(AuthzRule {
                name: rule.name.clone(),
                action,
                methods: rule.methods.clone(),
                client_cidrs,
                headers,
                scopes: rule.scopes.clone(),
                claims,
            });
        }
        let mut error_headers = Vec::new();
        let mut body_template = None;
        if let Some(er) = &spec.error_response {
            let er_path = format!("{path}.errorResponse");
            if er.realm.is_some() {
                c.error(
                    format!("{er_path}.realm"),
                    "an Authorization denial is a 403 without WWW-Authenticate: it has no realm",
                );
            }
            let mut header_specs = er.headers.clone();
            if let Some(ct) = &er.content_type {
                if !header_specs
                    .iter()
                    .any(|h| h.name.eq_ignore_ascii_case("content-type"))
                {
                    header_specs.push(crate::compile::spec::HeaderTemplateSpec {
                        name: "Content-Type".to_string(),
                        value: ct.clone(),
                    });
                }
            }
            error_headers =
                HeaderTemplate::compile_list(c, &format!("{er_path}.headers"), &header_specs);
            if let Some(body) = &er.body_template {
                match Template::parse(body) {
                    Ok(t) => body_template = Some(t),
                    Err(e) => c.error(
                        format!("{er_path}.bodyTemplate"),
                        format!("invalid template: {e}"),
                    ),
                }
            }
        }
        if c.errors.len() != errors_before {
            return None;
        }
        Some(AuthorizationFilter {
            rules,
            default_action,
            error_headers,
            body_template,
        })
    }

    /// Whether a rule tests `clientCIDRs` (the host then reads Envoy's
    /// `source.address` into `Request::source_address`).
    pub fn reads_client_address(&self) -> bool {
        self.rules.iter().any(|r| r.client_cidrs.is_some())
    }

    /// Whether an `errorResponse` template reads `.tls` (the host then reads
    /// the client certificate).
    pub fn templates_read_tls(&self) -> bool {
        self.error_headers
            .iter()
            .map(|h| &h.template)
            .chain(self.body_template.as_ref())
            .any(|t| t.source().contains(".tls"))
    }

    /// Whether a rule tests `methods`.
    pub fn reads_method(&self) -> bool {
        self.rules.iter().any(|r| r.methods.is_some())
    }

    /// Whether a rule tests request headers.
    pub fn reads_headers(&self) -> bool {
        self.rules.iter().any(|r| !r.headers.is_empty())
    }

    /// Every decider, for metrics: each rule's index with its action, then
    /// `None` (`defaultAction`) with its own.
    pub fn deciders(&self) -> impl Iterator<Item = (Option<usize>, Action)> + '_ {
        self.rules
            .iter()
            .enumerate()
            .map(|(i, r)| (Some(i), r.action))
            .chain(std::iter::once((None, self.default_action)))
    }

    /// The action of rule `rule` (`None`: `defaultAction`).
    pub fn rule_action(&self, rule: Option<usize>) -> Action {
        rule.and_then(|i| self.rules.get(i))
            .map_or(self.default_action, |r| r.action)
    }

    /// The name `portcullis.rule` reports for a decision (`default` for
    /// `defaultAction`).
    pub fn rule_name(&self, rule: Option<usize>) -> &str {
        rule.and_then(|i| self.rules.get(i))
            .map_or(DEFAULT_RULE, |r| r.name.as_str())
    }

    /// Decides `request` for `identity` (the nearest one before this filter
    /// in the chain; `None`: no identity, which no `claims` or `scopes`
    /// condition holds on).
    pub fn check(&self, request: &Request, identity: Option<&Identity>) -> AuthzOutcome {
        let claims = identity.and_then(Identity::claims);
        let mut client: Option<Option<std::net::IpAddr>> = None;
        let found = self.rules.iter().position(|rule| {
            rule.methods
                .as_ref()
                .is_none_or(|m| m.contains(&request.method))
                && rule.client_cidrs.as_ref().is_none_or(|nets| {
                    let addr = *client
                        .get_or_insert_with(|| cidr::client_address(&request.source_address));
                    addr.is_some_and(|a| nets.iter().any(|n| n.contains(a)))
                })
                && rule.headers.iter().all(|h| h.matches(&request.headers))
                && rule.scopes.as_ref().is_none_or(|s| has_scopes(claims, s))
                && rule.claims.iter().all(|c| c.holds(claims))
        });
        let action = found
            .and_then(|i| self.rules.get(i))
            .map_or(self.default_action, |r| r.action);
        AuthzOutcome {
            rule: found,
            result: match action {
                Action::Allow => Ok(()),
                Action::Deny => Err(self.denial(request, identity, self.rule_name(found))),
            },
        }
    }

    /// The 403, with `errorResponse` rendered on the identity's data plus
    /// `.rule` and AES's error data (`.status_code`, `.message`, ...).
    fn denial(&self, request: &Request, identity: Option<&Identity>, rule: &str) -> Response {
        let mut response = Response::json_error(403, DENIED_MESSAGE);
        if self.body_template.is_none() && self.error_headers.is_empty() {
            return response;
        }
        let mut root = identity
            .map(|i| i.template_data(request))
            .unwrap_or_default();
        let fields = json!({
            "status_code": 403,
            "httpStatus": 403,
            "message": DENIED_MESSAGE,
            "request_id": request.request_id,
            "requestId": request.request_id,
            "error": {},
            "rule": rule,
            (crate::template::JSON_FIELDS_KEY): ["message", "status_code"],
        });
        if let Value::Object(fields) = fields {
            root.extend(fields);
        }
        let root = Value::Object(root);
        let data = RenderData {
            root: &root,
            headers: request.headers_as_sent(),
        };
        if let Some(t) = &self.body_template {
            match t.render(&data) {
                Ok(Rendered::Text(body)) => response.body = body.into_bytes(),
                Ok(Rendered::DoNotSet) => response.body.clear(),
                Err(e) => log::warn!("errorResponse.bodyTemplate failed: {e}; default body sent"),
            }
        }
        for h in &self.error_headers {
            if let Some(value) = h.render(&data) {
                if data.headers.has_opaque() {
                    response.set_header(&h.name, crate::request::unescape_opaque(&value));
                } else {
                    response.set_header(&h.name, &value);
                }
            }
        }
        response
    }
}

fn action(c: &mut Compiler<'_>, path: &str, text: &str) -> Action {
    match text {
        "Allow" => Action::Allow,
        "Deny" => Action::Deny,
        other => {
            c.error(
                path,
                format!("must be \"Allow\" or \"Deny\", not {other:?}"),
            );
            Action::Deny
        }
    }
}
