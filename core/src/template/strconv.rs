//! Go's `strconv` as templates observe it: quoting (`Quote`, `QuoteToASCII`,
//! `QuoteRune`, `CanBackquote`) and float formatting (`FormatFloat` with the
//! verbs `e E f g G x X b`). A leaf: imports nothing of the engine.

use std::fmt::Write as _;

/// Largest precision formatted (Go allows 10⁶; the output cap is far below).
pub(super) const MAX_PRECISION: usize = 65_000;

/// Approximates Go's `unicode.IsPrint` (letters, marks, numbers, punctuation,
/// symbols and the ASCII space) without Unicode tables: controls, non-ASCII spaces,
/// common format characters, surrogates and private-use characters are unprintable.
pub(super) fn is_print(c: char) -> bool {
    if c == ' ' {
        return true;
    }
    if c.is_control() || c.is_whitespace() {
        return false;
    }
    let u = u32::from(c);
    !matches!(u,
        0x00AD
        | 0x0600..=0x0605
        | 0x061C
        | 0x06DD
        | 0x070F
        | 0x08E2
        | 0x180E
        | 0x200B..=0x200F
        | 0x202A..=0x202E
        | 0x2060..=0x2064
        | 0x2066..=0x206F
        | 0xE000..=0xF8FF
        | 0xFEFF
        | 0xFFF9..=0xFFFB
        | 0xFFFE..=0xFFFF
        | 0x110BD
        | 0x1D173..=0x1D17A
        | 0xE0001
        | 0xE0020..=0xE007F
        | 0xF0000..=0x10FFFF)
}

/// Go's `appendEscapedRune`.
fn escaped_rune_into(out: &mut String, c: char, quote: char, ascii_only: bool) {
    if c == quote || c == '\\' {
        out.push('\\');
        out.push(c);
        return;
    }
    if ascii_only {
        if c.is_ascii() && is_print(c) {
            out.push(c);
            return;
        }
    } else if is_print(c) {
        out.push(c);
        return;
    }
    match c {
        '\u{7}' => out.push_str("\\a"),
        '\u{8}' => out.push_str("\\b"),
        '\u{c}' => out.push_str("\\f"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        '\u{b}' => out.push_str("\\v"),
        c if u32::from(c) < 0x20 || c == '\u{7f}' => {
            let _ = write!(out, "\\x{:02x}", u32::from(c));
        }
        c if u32::from(c) < 0x10000 => {
            let _ = write!(out, "\\u{:04x}", u32::from(c));
        }
        c => {
            let _ = write!(out, "\\U{:08x}", u32::from(c));
        }
    }
}

/// Go's `strconv.Quote` (`ascii_only`: `QuoteToASCII`).
pub(super) fn quote_with(s: &str, ascii_only: bool) -> String {
    let mut out = String::with_capacity(s.len().saturating_add(2));
    out.push('"');
    for c in s.chars() {
        escaped_rune_into(&mut out, c, '"', ascii_only);
    }
    out.push('"');
    out
}

/// Go's `strconv.Quote`.
pub(super) fn quote(s: &str) -> String {
    quote_with(s, false)
}

/// Go's `strconv.QuoteRune` (`ascii_only`: `QuoteRuneToASCII`); a value that
/// is no valid rune is U+FFFD.
pub(super) fn quote_rune(r: u64, ascii_only: bool) -> String {
    let c = rune(r);
    let mut out = String::with_capacity(8);
    out.push('\'');
    escaped_rune_into(&mut out, c, '\'', ascii_only);
    out.push('\'');
    out
}

/// The character of a rune value (U+FFFD for a surrogate or anything past U+10FFFF).
pub(super) fn rune(r: u64) -> char {
    u32::try_from(r)
        .ok()
        .and_then(char::from_u32)
        .unwrap_or('\u{FFFD}')
}

/// Go's `strconv.CanBackquote`.
pub(super) fn can_backquote(s: &str) -> bool {
    s.chars().all(|c| {
        if c.len_utf8() > 1 {
            return c != '\u{FEFF}';
        }
        !((c < ' ' && c != '\t') || c == '`' || c == '\u{7f}')
    })
}

// ---------------------------------------------------------------------------
// Floats (strconv.FormatFloat, bitSize 64).

/// Decimal digits and decimal-point position, as Go's `decimalSlice`
/// (zero is no digits; trailing zeros trimmed).
struct Digits {
    d: Vec<u8>,
    dp: i64,
}

fn parse_sci(s: &str) -> Digits {
    let (mant, exp) = s.split_once('e').unwrap_or((s, "0"));
    let exp: i64 = exp.parse().unwrap_or(0);
    let mut d: Vec<u8> = mant.bytes().filter(u8::is_ascii_digit).collect();
    while d.last() == Some(&b'0') {
        d.pop();
    }
    // Leading zeros only for zero itself.
    if d.iter().all(|&b| b == b'0') {
        return Digits {
            d: Vec::new(),
            dp: 0,
        };
    }
    Digits {
        d,
        dp: exp.saturating_add(1),
    }
}

/// Shortest digits that round-trip (`prec == -1`).
fn shortest_digits(f: f64) -> Digits {
    parse_sci(&format!("{:e}", f.abs()))
}

/// Digits exactly rounded to `sig` significant digits (half to even on the
/// exact binary value, as Go), trailing zeros trimmed.
fn rounded_digits(f: f64, sig: usize) -> Digits {
    parse_sci(&format!(
        "{:.*e}",
        sig.saturating_sub(1).min(MAX_PRECISION),
        f.abs()
    ))
}

fn digit_at(d: &Digits, i: i64) -> u8 {
    usize::try_from(i)
        .ok()
        .and_then(|i| d.d.get(i))
        .copied()
        .unwrap_or(b'0')
}

fn nd(d: &Digits) -> i64 {
    i64::try_from(d.d.len()).unwrap_or(i64::MAX)
}

/// `%e`: -d.ddddde±dd
fn fmt_e(out: &mut String, neg: bool, d: &Digits, prec: i64, upper: bool) {
    if neg {
        out.push('-');
    }
    out.push(char::from(d.d.first().copied().unwrap_or(b'0')));
    if prec > 0 {
        out.push('.');
        let mut i = 1i64;
        while i <= prec {
            out.push(char::from(digit_at(d, i)));
            i = i.saturating_add(1);
        }
    }
    out.push(if upper { 'E' } else { 'e' });
    let mut exp = d.dp.saturating_sub(1);
    if d.d.is_empty() {
        exp = 0;
    }
    if exp < 0 {
        out.push('-');
        exp = exp.saturating_neg();
    } else {
        out.push('+');
    }
    if exp < 10 {
        out.push('0');
    }
    let _ = write!(out, "{exp}");
}

/// `%f`: -ddddd.ddddd
fn fmt_f(out: &mut String, neg: bool, d: &Digits, prec: i64) {
    if neg {
        out.push('-');
    }
    if d.dp > 0 {
        let mut i = 0i64;
        while i < d.dp {
            out.push(char::from(digit_at(d, i)));
            i = i.saturating_add(1);
        }
    } else {
        out.push('0');
    }
    if prec > 0 {
        out.push('.');
        let mut i = 1i64;
        while i <= prec {
            let j = d.dp.saturating_add(i).saturating_sub(1);
            let ch = if j >= 0 && j < nd(d) {
                digit_at(d, j)
            } else {
                b'0'
            };
            out.push(char::from(ch));
            i = i.saturating_add(1);
        }
    }
}

/// `%g` after Go's `formatDigits`.
fn fmt_g(out: &mut String, neg: bool, d: &Digits, mut prec: i64, shortest: bool, upper: bool) {
    let n = nd(d);
    let mut eprec = prec;
    if eprec > n && n >= d.dp {
        eprec = n;
    }
    if shortest {
        eprec = 6;
    }
    let exp = d.dp.saturating_sub(1);
    if exp < -4 || exp >= eprec {
        if prec > n {
            prec = n;
        }
        fmt_e(out, neg, d, prec.saturating_sub(1), upper);
        return;
    }
    if prec > d.dp {
        prec = n;
    }
    fmt_f(out, neg, d, prec.saturating_sub(d.dp).max(0));
}

/// The mantissa (with the implicit bit) and binary exponent of `f`, as
/// strconv's `FormatFloat` splits it.
fn mant_exp(f: f64) -> (bool, u64, i64) {
    let bits = f.to_bits();
    let neg = bits >> 63 != 0;
    let raw_exp = i64::try_from((bits >> 52) & 0x7ff).unwrap_or(0);
    let mut mant = bits & ((1u64 << 52).wrapping_sub(1));
    let exp = if raw_exp == 0 {
        1
    } else {
        mant |= 1u64 << 52;
        raw_exp
    };
    (neg, mant, exp.saturating_sub(1023))
}

/// `%b`: -ddddp±ddd
fn fmt_b(out: &mut String, f: f64) {
    let (neg, mant, exp) = mant_exp(f);
    if neg {
        out.push('-');
    }
    let exp = exp.saturating_sub(52);
    let _ = write!(out, "{mant}p");
    if exp >= 0 {
        out.push('+');
    }
    let _ = write!(out, "{exp}");
}

/// `%x`: -0x1.yyyyyyyyp±ddd, rounded to `prec` hex digits when `prec` is
/// below 15 (Go's `fmtX`).
fn fmt_x(out: &mut String, f: f64, prec: i64, upper: bool) {
    let (neg, mut mant, mut exp) = mant_exp(f);
    if mant == 0 {
        exp = 0;
    }
    mant = mant.wrapping_shl(8);
    while mant != 0 && mant & (1u64 << 60) == 0 {
        mant = mant.wrapping_shl(1);
        exp = exp.saturating_sub(1);
    }
    if (0..15).contains(&prec) {
        let shift = u32::try_from(prec.saturating_mul(4)).unwrap_or(0);
        let extra = mant.wrapping_shl(shift) & ((1u64 << 60).wrapping_sub(1));
        mant >>= 60u32.saturating_sub(shift);
        if extra | (mant & 1) > 1u64 << 59 {
            mant = mant.wrapping_add(1);
        }
        mant = mant.wrapping_shl(60u32.saturating_sub(shift));
        if mant & (1u64 << 61) != 0 {
            mant >>= 1;
            exp = exp.saturating_add(1);
        }
    }
    let hex: &[u8; 16] = if upper {
        b"0123456789ABCDEF"
    } else {
        b"0123456789abcdef"
    };
    if neg {
        out.push('-');
    }
    out.push('0');
    out.push(if upper { 'X' } else { 'x' });
    out.push(if (mant >> 60) & 1 == 1 { '1' } else { '0' });
    mant = mant.wrapping_shl(4);
    let digit = |m: u64| {
        let idx = usize::try_from((m >> 60) & 15).unwrap_or(0);
        char::from(hex.get(idx).copied().unwrap_or(b'0'))
    };
    if prec < 0 && mant != 0 {
        out.push('.');
        while mant != 0 {
            out.push(digit(mant));
            mant = mant.wrapping_shl(4);
        }
    } else if prec > 0 {
        out.push('.');
        let mut i = 0i64;
        while i < prec {
            out.push(digit(mant));
            mant = mant.wrapping_shl(4);
            i = i.saturating_add(1);
        }
    }
    out.push(if upper { 'P' } else { 'p' });
    if exp < 0 {
        out.push('-');
        exp = exp.saturating_neg();
    } else {
        out.push('+');
    }
    if exp < 10 {
        out.push('0');
    }
    let _ = write!(out, "{exp}");
}

/// Go's `strconv.FormatFloat(f, verb, prec, 64)`; `prec` -1 is the shortest
/// form that reads back. Precision is capped at [`MAX_PRECISION`].
pub(super) fn format_float(f: f64, verb: char, prec: i64) -> String {
    let mut out = String::new();
    if f.is_nan() {
        return "NaN".to_string();
    }
    if f.is_infinite() {
        return if f > 0.0 { "+Inf" } else { "-Inf" }.to_string();
    }
    let neg = f.is_sign_negative();
    let shortest = prec < 0;
    let pr = usize::try_from(prec.max(0))
        .unwrap_or(MAX_PRECISION)
        .min(MAX_PRECISION);
    let pr_i = i64::try_from(pr).unwrap_or(0);
    match verb {
        'b' => fmt_b(&mut out, f),
        'x' | 'X' => fmt_x(&mut out, f, if shortest { -1 } else { pr_i }, verb == 'X'),
        'e' | 'E' => {
            let upper = verb == 'E';
            if shortest {
                let d = shortest_digits(f);
                let p = nd(&d).saturating_sub(1).max(0);
                fmt_e(&mut out, neg, &d, p, upper);
            } else {
                let d = rounded_digits(f, pr.saturating_add(1));
                fmt_e(&mut out, neg, &d, pr_i, upper);
            }
        }
        'f' => {
            if shortest {
                let d = shortest_digits(f);
                let p = nd(&d).saturating_sub(d.dp).max(0);
                fmt_f(&mut out, neg, &d, p);
            } else {
                if neg {
                    out.push('-');
                }
                let _ = write!(out, "{:.*}", pr, f.abs());
            }
        }
        'g' | 'G' => {
            let upper = verb == 'G';
            if shortest {
                let d = shortest_digits(f);
                let n = nd(&d);
                fmt_g(&mut out, neg, &d, n, true, upper);
            } else {
                let p = pr.max(1);
                let d = rounded_digits(f, p);
                fmt_g(
                    &mut out,
                    neg,
                    &d,
                    i64::try_from(p).unwrap_or(1),
                    false,
                    upper,
                );
            }
        }
        other => {
            out.push('%');
            out.push(other);
        }
    }
    out
}

/// `encoding/json`'s float64 encoding (an error for NaN and infinities).
pub(super) fn json_float(f: f64) -> Result<String, String> {
    if !f.is_finite() {
        return Err(format!(
            "json: unsupported value: {}",
            format_float(f, 'g', -1)
        ));
    }
    let abs = f.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        let s = format_float(f, 'e', -1);
        // Clean up e-09 to e-9.
        if let Some((m, e)) = s.split_once("e-0") {
            return Ok(format!("{m}e-{e}"));
        }
        return Ok(s);
    }
    Ok(format_float(f, 'f', -1))
}
