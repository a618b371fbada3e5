//! The decision record: what Portcullis decided about one request, once it
//! has decided. The host reads it once per request and publishes it as Envoy
//! filter state (`portcullis.decision`, `.filter`, `.rule`, `.subject`, seen
//! by Envoy as `wasm.portcullis.*`); a log line can print it whole.

/// `allow` or `deny`: whether the request went on upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    Deny,
}

impl Verdict {
    /// `allow` or `deny`, as `portcullis.decision` says it.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allow => "allow",
            Verdict::Deny => "deny",
        }
    }
}

/// One request's decision, borrowed from the configuration and the journey.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecisionRecord<'a> {
    pub verdict: Verdict,
    /// The filter that answered a denial, or the last filter that ran for an
    /// allowed request (`portcullis.filter`); `None` when none ran (an
    /// answer Portcullis gives itself, such as an ambiguous path's 400).
    pub filter: Option<&'a str>,
    /// That filter's type (`JWT`, `Authorization`, ...).
    pub filter_type: Option<&'static str>,
    /// The deciding Authorization rule's name (`default` when its
    /// `defaultAction` decided); `None` when no Authorization filter ran
    /// (`portcullis.rule` unset).
    pub rule: Option<&'a str>,
    /// The identity's `sub`, an API key's `name`, or the client
    /// certificate's subject (`portcullis.subject`).
    pub subject: Option<&'a str>,
    /// The status Portcullis answered with; `None` for a request that went
    /// upstream.
    pub status: Option<u16>,
}

impl DecisionRecord<'_> {
    /// Why, in words, for a log line: never a token, a header value or the
    /// query.
    pub fn reason(&self) -> String {
        let filter = self.filter.unwrap_or("");
        let kind = self.filter_type.unwrap_or("");
        match (self.verdict, self.status, self.filter_type) {
            (Verdict::Allow, _, None) => "no filter applied".to_string(),
            (Verdict::Allow, _, Some("Authorization")) => format!(
                "Authorization filter {filter:?} allowed by rule {:?}",
                self.rule.unwrap_or("")
            ),
            (Verdict::Allow, _, Some(_)) => {
                format!("allowed; the last filter to run was {kind} filter {filter:?}")
            }
            (Verdict::Deny, status, Some("Authorization")) => format!(
                "Authorization filter {filter:?} denied by rule {:?} ({})",
                self.rule.unwrap_or(""),
                status.unwrap_or(403)
            ),
            (Verdict::Deny, Some(status), Some(_)) => {
                format!("{kind} filter {filter:?} answered {status}")
            }
            (Verdict::Deny, status, _) => {
                format!("answered {} by Portcullis itself", status.unwrap_or(0))
            }
        }
    }
}
