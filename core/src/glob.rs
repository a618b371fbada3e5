//! Globs for rule `host` and `path`: `*` matches any run of characters (including
//! `/` and `.`), `?` one character, `[...]` a class (`[!...]`/`[^...]` negated,
//! ranges `a-z`), `{a,b}` alternatives. Compiled once; matching never backtracks
//! more than linearly per alternative.

/// Upper bound on the alternatives a `{...}` pattern expands to.
const MAX_ALTERNATIVES: usize = 64;
/// Upper bound on a pattern's length.
const MAX_PATTERN_LEN: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Literal(char),
    AnyOne,
    AnyRun,
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

/// A compiled glob.
#[derive(Debug, Clone)]
pub struct Glob {
    source: String,
    alternatives: Vec<Vec<Token>>,
}

impl Glob {
    /// Compiles `pattern`; the error says what is wrong with it.
    pub fn new(pattern: &str) -> Result<Glob, String> {
        if pattern.len() > MAX_PATTERN_LEN {
            return Err(format!("pattern longer than {MAX_PATTERN_LEN} bytes"));
        }
        let expanded = expand_braces(pattern)?;
        let alternatives = expanded
            .iter()
            .map(|alt| tokenize(alt))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Glob {
            source: pattern.to_string(),
            alternatives,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether the pattern is `*` (matches everything).
    pub fn matches_all(&self) -> bool {
        self.alternatives.iter().any(|a| a == &[Token::AnyRun])
    }

    pub fn is_match(&self, text: &str) -> bool {
        self.alternatives
            .iter()
            .any(|tokens| match_tokens(tokens, text))
    }
}

/// Expands `{a,b}` groups (nested allowed) into plain patterns.
fn expand_braces(pattern: &str) -> Result<Vec<String>, String> {
    let chars: Vec<char> = pattern.chars().collect();
    // Find the first top-level '{' outside a class.
    let mut i = 0;
    let mut in_class = false;
    while let Some(&c) = chars.get(i) {
        match c {
            '[' if !in_class => in_class = true,
            ']' if in_class => in_class = false,
            '{' if !in_class => break,
            '}' if !in_class => return Err("unmatched '}'".to_string()),
            _ => {}
        }
        i += 1;
    }
    if i >= chars.len() {
        return Ok(vec![pattern.to_string()]);
    }
    // Find its matching '}' and the top-level commas.
    let mut depth = 0usize;
    let mut commas = Vec::new();
    let mut close = None;
    for (j, &c) in chars.iter().enumerate().skip(i) {
        match c {
            '{' => depth += 1,
            '}' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    close = Some(j);
                    break;
                }
            }
            ',' if depth == 1 => commas.push(j),
            _ => {}
        }
    }
    let close = close.ok_or_else(|| "unmatched '{'".to_string())?;
    let prefix: String = chars.iter().take(i).collect();
    let suffix: String = chars.iter().skip(close + 1).collect();
    let mut bounds = vec![i];
    bounds.extend(commas);
    bounds.push(close);
    let mut out = Vec::new();
    for pair in bounds.windows(2) {
        let (start, end) = match pair {
            [a, b] => (*a, *b),
            _ => continue,
        };
        let middle: String = chars.iter().skip(start + 1).take(end - start - 1).collect();
        for tail in expand_braces(&format!("{middle}{suffix}"))? {
            out.push(format!("{prefix}{tail}"));
            if out.len() > MAX_ALTERNATIVES {
                return Err(format!("more than {MAX_ALTERNATIVES} alternatives"));
            }
        }
    }
    Ok(out)
}

fn tokenize(pattern: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '*' => {
                if tokens.last() != Some(&Token::AnyRun) {
                    tokens.push(Token::AnyRun);
                }
            }
            '?' => tokens.push(Token::AnyOne),
            '\\' => match chars.next() {
                Some(escaped) => tokens.push(Token::Literal(escaped)),
                None => return Err("trailing '\\'".to_string()),
            },
            '[' => {
                let mut negated = false;
                if matches!(chars.peek(), Some('!') | Some('^')) {
                    negated = true;
                    chars.next();
                }
                let mut ranges = Vec::new();
                let mut closed = false;
                let mut first = true;
                while let Some(c) = chars.next() {
                    if c == ']' && !first {
                        closed = true;
                        break;
                    }
                    first = false;
                    let low = if c == '\\' {
                        chars.next().ok_or("trailing '\\' in class")?
                    } else {
                        c
                    };
                    let mut high = low;
                    if chars.peek() == Some(&'-') {
                        let mut lookahead = chars.clone();
                        lookahead.next();
                        if let Some(&h) = lookahead.peek() {
                            if h != ']' {
                                chars.next();
                                high = chars.next().ok_or("unterminated range")?;
                                if high < low {
                                    return Err(format!("bad range {low}-{high}"));
                                }
                            }
                        }
                    }
                    ranges.push((low, high));
                }
                if !closed {
                    return Err("unterminated '['".to_string());
                }
                tokens.push(Token::Class { negated, ranges });
            }
            other => tokens.push(Token::Literal(other)),
        }
    }
    Ok(tokens)
}

fn token_matches(token: &Token, c: char) -> bool {
    match token {
        Token::Literal(l) => *l == c,
        Token::AnyOne => true,
        Token::AnyRun => true,
        Token::Class { negated, ranges } => {
            let inside = ranges.iter().any(|(lo, hi)| *lo <= c && c <= *hi);
            inside != *negated
        }
    }
}

/// Classic wildcard matching with single-star backtracking: O(n·m) worst case.
fn match_tokens(tokens: &[Token], text: &str) -> bool {
    let text: Vec<char> = text.chars().collect();
    let (mut t, mut p) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match (tokens.get(p), text.get(t)) {
            (Some(Token::AnyRun), _) => {
                star = Some((p, t));
                p += 1;
            }
            (Some(token), Some(&c)) if token_matches(token, c) => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    tokens.iter().skip(p).all(|tok| *tok == Token::AnyRun)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, t: &str) -> bool {
        match Glob::new(p) {
            Ok(g) => g.is_match(t),
            Err(e) => panic!("{p}: {e}"),
        }
    }

    #[test]
    fn star_crosses_slashes_and_dots() {
        assert!(m("*", ""));
        assert!(m("*", "/a/b.c"));
        assert!(m("/api/*", "/api/v1/users"));
        assert!(m("/api/*", "/api/"));
        assert!(!m("/api/*", "/api"));
        assert!(m("*.example.com", "a.b.example.com"));
        assert!(m("/a*b*c", "/axxbyyc"));
        assert!(!m("/a*b*c", "/axxbyy"));
    }

    #[test]
    fn question_mark_and_classes() {
        assert!(m("/v?/x", "/v1/x"));
        assert!(!m("/v?/x", "/v10/x"));
        assert!(m("/v[0-9]", "/v7"));
        assert!(!m("/v[!0-9]", "/v7"));
        assert!(m("/v[^0-9]", "/vx"));
        assert!(m("[]]", "]"));
    }

    #[test]
    fn braces_are_alternatives() {
        assert!(m("/{api,admin}/*", "/admin/x"));
        assert!(m("/{api,admin}/*", "/api/x"));
        assert!(!m("/{api,admin}/*", "/other/x"));
        assert!(m("/{a,b{c,d}}", "/bd"));
    }

    #[test]
    fn literal_text_must_match_exactly() {
        assert!(m("/exact", "/exact"));
        assert!(!m("/exact", "/exact/"));
        assert!(m("/a\\*b", "/a*b"));
        assert!(!m("/a\\*b", "/axb"));
    }

    #[test]
    fn bad_patterns_are_refused() {
        for bad in ["[abc", "{a,b", "a}", "[z-a]", "x\\"] {
            assert!(Glob::new(bad).is_err(), "{bad}");
        }
        let many = "{a,b}{a,b}{a,b}{a,b}{a,b}{a,b}{a,b}";
        assert!(Glob::new(many).is_err());
    }

    #[test]
    fn many_stars_stay_fast() {
        let g = Glob::new("*a*a*a*a*a*a*a*b").unwrap_or_else(|e| panic!("{e}"));
        let text = "a".repeat(5000);
        assert!(!g.is_match(&text));
    }
}
