//! The imported configuration loaded as the plugin loads it, its errors and
//! notices told in the manifests' terms: `filters[2].OAuth2.audience` is the
//! user's `Filter default/sso: spec.OAuth2.audience`, `rules[4].filters[0]`
//! their `FilterPolicy web/p: spec.rules[1].filters[0]`.

use super::{Imported, Provenance};
use portcullis_core::config::Config;

/// The notices of the loaded configuration, or its errors, each naming the
/// source document and field where one is known.
pub fn load(imported: &Imported) -> Result<Vec<String>, Vec<String>> {
    let bytes = serde_json::to_vec(&imported.config).map_err(|e| vec![e.to_string()])?;
    let env = |name: &str| {
        imported.env.get(name).cloned().or_else(|| {
            imported
                .env_missing
                .iter()
                .any(|m| m == name)
                .then(|| "placeholder".to_string())
        })
    };
    match Config::from_json_with_env(&bytes, &env) {
        Ok(config) => Ok(config
            .notices
            .iter()
            .map(|n| to_source(imported, n))
            .collect()),
        Err(errors) => Err(errors
            .iter()
            .map(|e| to_source(imported, &e.to_string()))
            .collect()),
    }
}

/// `line` (starting with a configuration path) with that path told as the
/// source document and field it came from; unchanged when none is known.
pub fn to_source(imported: &Imported, line: &str) -> String {
    for (list, sources) in [
        ("filters", &imported.filter_sources),
        ("rules", &imported.rule_sources),
    ] {
        let Some(rest) = line.strip_prefix(list).and_then(|r| r.strip_prefix('[')) else {
            continue;
        };
        let Some((index, rest)) = rest.split_once(']') else {
            continue;
        };
        let Some(source) = index.parse::<usize>().ok().and_then(|i| sources.get(i)) else {
            continue;
        };
        return told(source, rest);
    }
    line.to_string()
}

fn told(source: &Provenance, rest: &str) -> String {
    let rest = match source.strip {
        Some(t) => rest
            .strip_prefix('.')
            .and_then(|r| r.strip_prefix(t))
            .filter(|r| r.starts_with(['.', ':']))
            .unwrap_or(rest),
        None => rest,
    };
    format!("{}: {}{rest}", source.place, source.field)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::BTreeMap;

    #[test]
    fn a_result_path_is_told_as_its_source() {
        let imported = Imported {
            config: json!({}),
            env: BTreeMap::new(),
            env_missing: Vec::new(),
            report: Vec::new(),
            refused: Vec::new(),
            filter_sources: vec![
                Provenance {
                    place: "Filter default/sso".into(),
                    field: "spec".into(),
                    strip: None,
                },
                Provenance {
                    place: "AuthService web/auth".into(),
                    field: "spec".into(),
                    strip: Some("External"),
                },
            ],
            rule_sources: vec![Provenance {
                place: "FilterPolicy web/p".into(),
                field: "spec.rules[1]".into(),
                strip: None,
            }],
        };
        assert_eq!(
            to_source(&imported, "filters[0].OAuth2.audience: refused"),
            "Filter default/sso: spec.OAuth2.audience: refused"
        );
        assert_eq!(
            to_source(&imported, "filters[1].External.timeout_ms: bad"),
            "AuthService web/auth: spec.timeout_ms: bad"
        );
        assert_eq!(
            to_source(&imported, "rules[0].filters[0].onDeny: bad"),
            "FilterPolicy web/p: spec.rules[1].filters[0].onDeny: bad"
        );
        assert_eq!(to_source(&imported, "clusters: x"), "clusters: x");
    }
}
