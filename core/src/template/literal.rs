//! Go's literal syntax as text/template reads it: `strconv.Unquote`,
//! `UnquoteChar`, `ParseInt`/`ParseUint` with base 0 and `ParseFloat` (hex
//! floats, `_` separators). A leaf below `parse`.

/// Whether `_` separators are well placed (Go's `underscoreOK`): only
/// between digits or after a base prefix.
fn underscore_ok(s: &str) -> bool {
    let b = s.as_bytes();
    let mut saw = b'^';
    let mut i = 0usize;
    if matches!(b.first(), Some(b'+' | b'-')) {
        i = 1;
    }
    let mut hex = false;
    if b.len().saturating_sub(i) >= 2
        && b.get(i) == Some(&b'0')
        && matches!(
            b.get(i.saturating_add(1)).map(u8::to_ascii_lowercase),
            Some(b'b' | b'o' | b'x')
        )
    {
        hex = b.get(i.saturating_add(1)).map(u8::to_ascii_lowercase) == Some(b'x');
        i = i.saturating_add(2);
        saw = b'0';
    }
    while let Some(&c) = b.get(i) {
        if c.is_ascii_digit() || (hex && c.is_ascii_hexdigit()) {
            saw = b'0';
        } else if c == b'_' {
            if saw != b'0' {
                return false;
            }
            saw = b'_';
        } else {
            if saw == b'_' {
                return false;
            }
            saw = b'!';
        }
        i = i.saturating_add(1);
    }
    saw != b'_'
}

/// The digits and radix of an integer literal as `strconv.ParseUint(s, 0, 64)`
/// reads it (sign removed first).
fn int_digits(s: &str) -> Option<(String, u32)> {
    if !underscore_ok(s) {
        return None;
    }
    let clean: String = s.chars().filter(|&c| c != '_').collect();
    let lower = clean.to_ascii_lowercase();
    let (radix, digits) = if let Some(d) = lower.strip_prefix("0x") {
        (16, d.to_string())
    } else if let Some(d) = lower.strip_prefix("0o") {
        (8, d.to_string())
    } else if let Some(d) = lower.strip_prefix("0b") {
        (2, d.to_string())
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, lower.get(1..).unwrap_or("").to_string())
    } else {
        (10, lower)
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    Some((digits, radix))
}

/// `strconv.ParseUint(s, 0, 64)`.
pub(super) fn go_parse_uint(s: &str) -> Option<u64> {
    let (digits, radix) = int_digits(s)?;
    u64::from_str_radix(&digits, radix).ok()
}

/// `strconv.ParseInt(s, 0, 64)`.
pub(super) fn go_parse_int(s: &str) -> Option<i64> {
    let (neg, body) = match s.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let (digits, radix) = int_digits(body)?;
    let u = u64::from_str_radix(&digits, radix).ok()?;
    if neg {
        0i64.checked_sub_unsigned(u)
    } else {
        i64::try_from(u).ok()
    }
}

/// `strconv.ParseFloat(s, 64)` for the literals the lexer passes: decimal
/// and hexadecimal (`0x1.8p3`) forms, `_` separators; out of range is no number.
pub(super) fn go_parse_float(s: &str) -> Option<f64> {
    if !underscore_ok(s) {
        return None;
    }
    let clean: String = s.chars().filter(|&c| c != '_').collect();
    let (neg, body) = match clean.strip_prefix('-') {
        Some(b) => (true, b.to_string()),
        None => (false, clean.strip_prefix('+').unwrap_or(&clean).to_string()),
    };
    let lower = body.to_ascii_lowercase();
    let v = if let Some(hex) = lower.strip_prefix("0x") {
        let (mant, exp) = hex.split_once('p')?;
        let exp: i32 = exp.parse().ok()?;
        let (int_part, frac) = mant.split_once('.').unwrap_or((mant, ""));
        if int_part.is_empty() && frac.is_empty() {
            return None;
        }
        let mut m: u64 = 0;
        let mut e = exp;
        let mut sticky = false;
        for (k, c) in int_part.chars().chain(frac.chars()).enumerate() {
            let d = u64::from(c.to_digit(16)?);
            if m >> 58 == 0 {
                m = m.wrapping_mul(16) | d;
                if k >= int_part.len() {
                    e = e.checked_sub(4)?;
                }
            } else {
                sticky |= d != 0;
                if k < int_part.len() {
                    e = e.checked_add(4)?;
                }
            }
        }
        if sticky {
            m |= 1;
        }
        #[allow(clippy::cast_precision_loss)]
        let mf = m as f64;
        mf * 2f64.powi(e)
    } else {
        if lower.starts_with("0b") || lower.starts_with("0o") {
            return None;
        }
        if !lower
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | '+' | '-'))
        {
            return None;
        }
        lower.parse::<f64>().ok()?
    };
    if !v.is_finite() {
        return None;
    }
    Some(if neg { -v } else { v })
}

pub(super) enum UnquotedChar {
    Char(char),
    Byte(u8),
}

fn hex_val(c: char) -> Option<u32> {
    c.to_digit(16)
}

/// Go's `strconv.UnquoteChar` for one character of a quoted literal.
pub(super) fn unquote_char(
    chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
    quote: char,
) -> Option<UnquotedChar> {
    let c = chars.next()?;
    if c == quote && (quote == '\'' || quote == '"') {
        return None;
    }
    if c != '\\' {
        return Some(UnquotedChar::Char(c));
    }
    let e = chars.next()?;
    let simple = match e {
        'a' => Some('\u{7}'),
        'b' => Some('\u{8}'),
        'f' => Some('\u{c}'),
        'n' => Some('\n'),
        'r' => Some('\r'),
        't' => Some('\t'),
        'v' => Some('\u{b}'),
        '\\' => Some('\\'),
        '\'' | '"' if e == quote => Some(e),
        _ => None,
    };
    if let Some(s) = simple {
        return Some(UnquotedChar::Char(s));
    }
    match e {
        'x' | 'u' | 'U' => {
            let n = match e {
                'x' => 2,
                'u' => 4,
                _ => 8,
            };
            let mut v: u32 = 0;
            for _ in 0..n {
                let d = hex_val(chars.next()?)?;
                v = v.checked_mul(16)?.checked_add(d)?;
            }
            if e == 'x' {
                return Some(UnquotedChar::Byte(u8::try_from(v).ok()?));
            }
            char::from_u32(v).map(UnquotedChar::Char)
        }
        '0'..='7' => {
            let mut v = e.to_digit(8)?;
            for _ in 0..2 {
                let d = chars.next()?.to_digit(8)?;
                v = v.checked_mul(8)?.checked_add(d)?;
            }
            Some(UnquotedChar::Byte(u8::try_from(v).ok()?))
        }
        _ => None,
    }
}

/// Go's `strconv.Unquote` for a double-quoted literal (with the quotes).
pub(super) fn unquote(text: &str) -> Option<String> {
    let inner = text.strip_prefix('"')?.strip_suffix('"')?;
    let mut out: Vec<u8> = Vec::with_capacity(inner.len());
    let mut chars = inner.chars().peekable();
    while chars.peek().is_some() {
        match unquote_char(&mut chars, '"')? {
            UnquotedChar::Char(c) => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
            UnquotedChar::Byte(b) => out.push(b),
        }
    }
    Some(match String::from_utf8(out) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    })
}
