//! `injectRequestHeaders`: header templates compiled at configure time and
//! rendered into header changes for a request the filter allows.

use crate::compile::spec::HeaderTemplateSpec;
use crate::compile::Compiler;
use crate::response::{is_header_name, is_header_value, HeaderChange};
use crate::template::{RenderData, Rendered, Template};

/// A header whose value is a template.
#[derive(Debug, Clone)]
pub struct HeaderTemplate {
    /// Lower-case header name.
    pub name: String,
    pub template: Template,
}

impl HeaderTemplate {
    /// Compiles a list of `{name, value}` specs found at `path`.
    pub fn compile_list(
        c: &mut Compiler<'_>,
        path: &str,
        specs: &[HeaderTemplateSpec],
    ) -> Vec<HeaderTemplate> {
        let mut out = Vec::new();
        for (i, spec) in specs.iter().enumerate() {
            let at = format!("{path}[{i}]");
            if !is_header_name(&spec.name) {
                c.error(
                    format!("{at}.name"),
                    format!("invalid header name {:?}", spec.name),
                );
                continue;
            }
            let lower = spec.name.to_ascii_lowercase();
            if matches!(
                lower.as_str(),
                "host" | "content-length" | "transfer-encoding"
            ) {
                c.error(
                    format!("{at}.name"),
                    format!("header {:?} cannot be injected", spec.name),
                );
                continue;
            }
            match Template::parse(&spec.value) {
                Ok(template) => out.push(HeaderTemplate {
                    name: lower,
                    template,
                }),
                Err(e) => c.error(format!("{at}.value"), format!("invalid template: {e}")),
            }
        }
        out
    }

    /// Renders the value; `None` when the header is not to be set (`doNotSet`, a
    /// render error, or a value with CR/LF/NUL, which would split the header).
    pub fn render(&self, data: &RenderData<'_>) -> Option<String> {
        match self.template.render(data) {
            Ok(Rendered::Text(value)) if is_header_value(&value) => Some(value),
            Ok(Rendered::Text(_)) => {
                log::warn!(
                    "header {}: rendered value has CR, LF or NUL; not set",
                    self.name
                );
                None
            }
            Ok(Rendered::DoNotSet) => None,
            Err(e) => {
                log::warn!("header {}: template failed: {e}; not set", self.name);
                None
            }
        }
    }
}

/// Sets each rendered value. (The pipeline has already removed every injected
/// name from the client's request, so a header not set stays absent.)
pub fn render_injected(templates: &[HeaderTemplate], data: &RenderData<'_>) -> Vec<HeaderChange> {
    templates
        .iter()
        .filter_map(|t| {
            t.render(data).map(|value| {
                if data.headers.has_opaque() {
                    // A header value that is not UTF-8 went in escaped: its
                    // bytes come back out.
                    HeaderChange::set(&t.name, crate::request::unescape_opaque(&value))
                } else {
                    HeaderChange::set(&t.name, value)
                }
            })
        })
        .collect()
}
