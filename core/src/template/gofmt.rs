//! Go's `fmt`, `strconv` and `encoding/json` output rules, as far as templates
//! can observe them: `%v` printing, `printf`, `print`/`println`, `json`, and the
//! `html`/`js`/`urlquery` escapers.

use super::value::{sorted_entries, Val};
use std::fmt::Write as _;

/// Nesting beyond this in data being printed or encoded is an error.
pub(super) const MAX_VALUE_DEPTH: usize = 200;

pub(super) type FmtResult = Result<(), String>;

fn too_deep(depth: usize) -> FmtResult {
    if depth > MAX_VALUE_DEPTH {
        return Err(format!("value nested deeper than {MAX_VALUE_DEPTH} levels"));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Quoting (strconv.Quote / QuoteRune) and unicode.IsPrint.

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

fn quote_char_into(out: &mut String, c: char, quote: char) {
    if c == quote || c == '\\' {
        out.push('\\');
        out.push(c);
        return;
    }
    if is_print(c) {
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

/// Go's `strconv.Quote`.
pub(super) fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len().saturating_add(2));
    out.push('"');
    for c in s.chars() {
        quote_char_into(&mut out, c, '"');
    }
    out.push('"');
    out
}

fn quote_rune(c: char) -> String {
    let mut out = String::with_capacity(4);
    out.push('\'');
    quote_char_into(&mut out, c, '\'');
    out.push('\'');
    out
}

// ---------------------------------------------------------------------------
// Floats (strconv.FormatFloat).

/// Decimal digits and decimal-point position, as Go's `decimalSlice`
/// (zero is no digits).
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
    if d.is_empty() {
        return Digits { d, dp: 0 };
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

/// Digits rounded to `sig` significant digits (trailing zeros trimmed).
fn rounded_digits(f: f64, sig: usize) -> Digits {
    parse_sci(&format!("{:.*e}", sig.saturating_sub(1), f.abs()))
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

/// `%x` on a float64, shortest form (`0x1.8p+01`).
fn fmt_x(out: &mut String, f: f64, upper: bool) {
    let bits = f.to_bits();
    let neg = bits >> 63 != 0;
    let raw_exp = i64::try_from((bits >> 52) & 0x7ff).unwrap_or(0);
    let mut mant = bits & ((1u64 << 52).wrapping_sub(1));
    let mut exp = if raw_exp == 0 { 1 } else { raw_exp };
    if raw_exp != 0 {
        mant |= 1u64 << 52;
    }
    exp = exp.saturating_sub(1023);
    if mant == 0 {
        exp = 0;
    }
    mant = mant.wrapping_shl(8);
    while mant != 0 && mant & (1u64 << 60) == 0 {
        mant = mant.wrapping_shl(1);
        exp = exp.saturating_sub(1);
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
    if mant != 0 {
        out.push('.');
        while mant != 0 {
            let idx = usize::try_from((mant >> 60) & 15).unwrap_or(0);
            out.push(char::from(hex.get(idx).copied().unwrap_or(b'0')));
            mant = mant.wrapping_shl(4);
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

/// Go's `strconv.FormatFloat(f, verb, prec, 64)`; `prec` `None` is `-1`.
pub(super) fn format_float(f: f64, verb: char, prec: Option<usize>) -> String {
    let mut out = String::new();
    if f.is_nan() {
        return "NaN".to_string();
    }
    if f.is_infinite() {
        return if f > 0.0 { "+Inf" } else { "-Inf" }.to_string();
    }
    let neg = f.is_sign_negative();
    let p = |x: usize| i64::try_from(x).unwrap_or(i64::MAX);
    match verb {
        'e' | 'E' => {
            let upper = verb == 'E';
            match prec {
                None => {
                    let d = shortest_digits(f);
                    let pr = nd(&d).saturating_sub(1).max(0);
                    fmt_e(&mut out, neg, &d, pr, upper);
                }
                Some(pr) => {
                    let d = rounded_digits(f, pr.saturating_add(1));
                    fmt_e(&mut out, neg, &d, p(pr), upper);
                }
            }
        }
        'f' | 'F' => match prec {
            None => {
                let d = shortest_digits(f);
                let pr = nd(&d).saturating_sub(d.dp).max(0);
                fmt_f(&mut out, neg, &d, pr);
            }
            Some(pr) => {
                if neg {
                    out.push('-');
                }
                let _ = write!(out, "{:.*}", pr, f.abs());
            }
        },
        'x' | 'X' => fmt_x(&mut out, f, verb == 'X'),
        _ => {
            let upper = verb == 'G';
            match prec {
                None => {
                    let d = shortest_digits(f);
                    let n = nd(&d);
                    fmt_g(&mut out, neg, &d, n, true, upper);
                }
                Some(pr) => {
                    let pr = pr.max(1);
                    let d = rounded_digits(f, pr);
                    fmt_g(&mut out, neg, &d, p(pr), false, upper);
                }
            }
        }
    }
    out
}

/// Go's `%v` for a float64.
pub(super) fn float_v(f: f64) -> String {
    format_float(f, 'g', None)
}

/// `encoding/json`'s float64 encoding.
pub(super) fn json_float(f: f64) -> Result<String, String> {
    if !f.is_finite() {
        return Err(format!("json: unsupported value: {}", float_v(f)));
    }
    let abs = f.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        let s = format_float(f, 'e', None);
        // Clean up e-09 to e-9.
        if let Some((m, e)) = s.split_once("e-0") {
            return Ok(format!("{m}e-{e}"));
        }
        return Ok(s);
    }
    Ok(format_float(f, 'f', None))
}

// ---------------------------------------------------------------------------
// fmt: Sprint, Sprintln, Sprintf.

#[derive(Debug, Clone, Copy, Default)]
struct Flags {
    plus: bool,
    minus: bool,
    sharp: bool,
    space: bool,
    zero: bool,
    wid: Option<usize>,
    prec: Option<usize>,
}

/// Largest width or precision honoured (Go rejects above 1e6; output is capped
/// long before that anyway).
const MAX_WIDTH: usize = 1_000_000;

fn pad(out: &mut String, s: &str, fl: &Flags) {
    let Some(w) = fl.wid else {
        out.push_str(s);
        return;
    };
    let n = s.chars().count();
    if n >= w {
        out.push_str(s);
        return;
    }
    let fill = w.saturating_sub(n);
    if fl.minus {
        out.push_str(s);
        out.extend(std::iter::repeat_n(' ', fill));
    } else {
        let c = if fl.zero { '0' } else { ' ' };
        out.extend(std::iter::repeat_n(c, fill));
        out.push_str(s);
    }
}

/// Pads a number: sign/prefix first, then zeros when zero-padding.
fn pad_number(out: &mut String, sign: &str, body: &str, fl: &Flags) {
    if fl.zero && !fl.minus {
        if let Some(w) = fl.wid {
            let n = sign.chars().count().saturating_add(body.chars().count());
            out.push_str(sign);
            out.extend(std::iter::repeat_n('0', w.saturating_sub(n)));
            out.push_str(body);
            return;
        }
    }
    let mut s = String::with_capacity(sign.len().saturating_add(body.len()));
    s.push_str(sign);
    s.push_str(body);
    let no_zero = Flags { zero: false, ..*fl };
    pad(out, &s, &no_zero);
}

fn fmt_integer(out: &mut String, neg: bool, mag: u128, verb: char, fl: &Flags) {
    let mut body = match verb {
        'b' => format!("{mag:b}"),
        'o' | 'O' => format!("{mag:o}"),
        'x' => format!("{mag:x}"),
        'X' => format!("{mag:X}"),
        _ => format!("{mag}"),
    };
    let mut zero_flag = fl.zero;
    if let Some(p) = fl.prec {
        zero_flag = false;
        if p == 0 && mag == 0 {
            body.clear();
        } else if body.len() < p {
            let mut z = "0".repeat(p.saturating_sub(body.len()));
            z.push_str(&body);
            body = z;
        }
    }
    let mut sign = String::new();
    if neg {
        sign.push('-');
    } else if fl.plus {
        sign.push('+');
    } else if fl.space {
        sign.push(' ');
    }
    if fl.sharp {
        match verb {
            'b' => sign.push_str("0b"),
            'o' if !body.starts_with('0') => sign.push('0'),
            'x' => sign.push_str("0x"),
            'X' => sign.push_str("0X"),
            _ => {}
        }
    }
    if verb == 'O' {
        sign.push_str("0o");
    }
    pad_number(
        out,
        &sign,
        &body,
        &Flags {
            zero: zero_flag,
            ..*fl
        },
    );
}

fn fmt_float(out: &mut String, f: f64, verb: char, fl: &Flags) {
    let (v, prec) = match verb {
        'v' => ('g', None),
        'e' | 'E' | 'f' | 'F' => (verb, Some(fl.prec.unwrap_or(6))),
        _ => (verb, fl.prec),
    };
    let s = format_float(f, v, prec);
    let (sign, body) = match s.strip_prefix('-') {
        Some(b) => ("-", b),
        None => match s.strip_prefix('+') {
            Some(b) => (if fl.plus { "+" } else { "" }, b),
            None if fl.plus => ("+", s.as_str()),
            None if fl.space => (" ", s.as_str()),
            None => ("", s.as_str()),
        },
    };
    if f.is_finite() {
        pad_number(out, sign, body, fl);
    } else {
        let mut t = sign.to_string();
        t.push_str(body);
        pad(out, &t, &Flags { zero: false, ..*fl });
    }
}

fn fmt_string(out: &mut String, s: &str, verb: char, fl: &Flags) {
    match verb {
        'q' => pad(out, &quote(s), fl),
        'x' | 'X' => {
            let mut h = String::with_capacity(s.len().saturating_mul(2));
            for b in s.bytes() {
                if verb == 'x' {
                    let _ = write!(h, "{b:02x}");
                } else {
                    let _ = write!(h, "{b:02X}");
                }
            }
            pad(out, &h, fl);
        }
        _ => match fl.prec {
            Some(p) => {
                let t: String = s.chars().take(p).collect();
                pad(out, &t, fl);
            }
            None => pad(out, s, fl),
        },
    }
}

fn bad_verb(out: &mut String, v: &Val<'_>, verb: char, depth: usize) -> FmtResult {
    out.push_str("%!");
    out.push(verb);
    out.push('(');
    if v.is_nil() {
        out.push_str("<nil>");
    } else {
        out.push_str(v.type_name());
        out.push('=');
        fmt_value(out, v, 'v', &Flags::default(), depth)?;
    }
    out.push(')');
    Ok(())
}

/// fmt's `printArg`/`printValue` for one value and verb.
fn fmt_value(out: &mut String, v: &Val<'_>, verb: char, fl: &Flags, depth: usize) -> FmtResult {
    too_deep(depth)?;
    if out.len() > super::exec::MAX_OUTPUT {
        return Err(format!("output exceeds {} bytes", super::exec::MAX_OUTPUT));
    }
    match v {
        Val::NoValue | Val::Nil => {
            if depth == 0 && verb != 'v' {
                return bad_verb(out, v, verb, depth);
            }
            pad(out, "<nil>", fl);
        }
        Val::Bool(b) => match verb {
            't' | 'v' => pad(out, if *b { "true" } else { "false" }, fl),
            _ => return bad_verb(out, v, verb, depth),
        },
        Val::Int(_) | Val::Uint(_) => {
            let (neg, mag) = match v {
                Val::Int(i) => (*i < 0, u128::from(i.unsigned_abs())),
                Val::Uint(u) => (false, u128::from(*u)),
                _ => (false, 0),
            };
            match verb {
                'v' | 'd' => fmt_integer(out, neg, mag, 'd', fl),
                'b' | 'o' | 'O' | 'x' | 'X' => fmt_integer(out, neg, mag, verb, fl),
                'c' | 'q' | 'U' => {
                    let c = if neg {
                        '\u{FFFD}'
                    } else {
                        u32::try_from(mag)
                            .ok()
                            .and_then(char::from_u32)
                            .unwrap_or('\u{FFFD}')
                    };
                    match verb {
                        'c' => pad(out, c.encode_utf8(&mut [0u8; 4]), fl),
                        'q' => pad(out, &quote_rune(c), fl),
                        _ => {
                            let s = if neg {
                                format!("U+-{mag:04X}")
                            } else {
                                format!("U+{mag:04X}")
                            };
                            pad(out, &s, fl);
                        }
                    }
                }
                _ => return bad_verb(out, v, verb, depth),
            }
        }
        Val::Float(f) => match verb {
            'v' | 'e' | 'E' | 'f' | 'F' | 'g' | 'G' | 'x' | 'X' => fmt_float(out, *f, verb, fl),
            _ => return bad_verb(out, v, verb, depth),
        },
        Val::Str(s) => match verb {
            'v' | 's' | 'q' | 'x' | 'X' => fmt_string(out, s, verb, fl),
            _ => return bad_verb(out, v, verb, depth),
        },
        Val::Arr(a) => {
            out.push('[');
            for (i, e) in a.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                fmt_value(out, &Val::from_json(e), verb, fl, depth.saturating_add(1))?;
            }
            out.push(']');
        }
        Val::Map(m) => {
            out.push_str("map[");
            for (i, (k, e)) in sorted_entries(m).into_iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                fmt_value(
                    out,
                    &Val::Str(k.as_str().into()),
                    verb,
                    fl,
                    depth.saturating_add(1),
                )?;
                out.push(':');
                fmt_value(out, &Val::from_json(e), verb, fl, depth.saturating_add(1))?;
            }
            out.push(']');
        }
        Val::Headers => out.push_str("map[]"),
    }
    Ok(())
}

/// `fmt.Sprint(v)` for one value.
pub(super) fn sprint_value(out: &mut String, v: &Val<'_>) -> FmtResult {
    fmt_value(out, v, 'v', &Flags::default(), 0)
}

/// `fmt.Sprint(args...)`: spaces between operands when neither is a string.
pub(super) fn sprint(args: &[Val<'_>]) -> Result<String, String> {
    let mut out = String::new();
    let mut prev_string = false;
    for (i, a) in args.iter().enumerate() {
        let is_string = matches!(a, Val::Str(_));
        if i > 0 && !is_string && !prev_string {
            out.push(' ');
        }
        sprint_value(&mut out, a)?;
        prev_string = is_string;
    }
    Ok(out)
}

/// `fmt.Sprintln(args...)`: always spaces, then a newline.
pub(super) fn sprintln(args: &[Val<'_>]) -> Result<String, String> {
    let mut out = String::new();
    for (i, a) in args.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        sprint_value(&mut out, a)?;
    }
    out.push('\n');
    Ok(out)
}

fn parse_num(chars: &[char], i: &mut usize) -> Option<usize> {
    let mut n: Option<usize> = None;
    while let Some(c) = chars.get(*i) {
        let Some(d) = c.to_digit(10) else { break };
        let cur = n.unwrap_or(0);
        n = Some(
            cur.saturating_mul(10)
                .saturating_add(usize::try_from(d).unwrap_or(0))
                .min(MAX_WIDTH),
        );
        *i = i.saturating_add(1);
    }
    n
}

/// `fmt.Sprintf(format, args...)`.
pub(super) fn sprintf(format: &str, args: &[Val<'_>]) -> Result<String, String> {
    let chars: Vec<char> = format.chars().collect();
    let mut out = String::with_capacity(format.len());
    let mut argn = 0usize;
    let mut i = 0usize;
    while let Some(&c) = chars.get(i) {
        i = i.saturating_add(1);
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut fl = Flags::default();
        while let Some(&f) = chars.get(i) {
            match f {
                '#' => fl.sharp = true,
                '0' => fl.zero = !fl.minus,
                '+' => fl.plus = true,
                '-' => {
                    fl.minus = true;
                    fl.zero = false;
                }
                ' ' => fl.space = true,
                _ => break,
            }
            i = i.saturating_add(1);
        }
        if chars.get(i) == Some(&'*') {
            i = i.saturating_add(1);
            match args.get(argn) {
                Some(Val::Int(wi)) => {
                    let w = usize::try_from(wi.unsigned_abs())
                        .unwrap_or(MAX_WIDTH)
                        .min(MAX_WIDTH);
                    if *wi < 0 {
                        fl.minus = true;
                        fl.zero = false;
                    }
                    fl.wid = Some(w);
                }
                _ => out.push_str("%!(BADWIDTH)"),
            }
            argn = argn.saturating_add(1);
        } else {
            fl.wid = parse_num(&chars, &mut i);
        }
        if chars.get(i) == Some(&'.') {
            i = i.saturating_add(1);
            if chars.get(i) == Some(&'*') {
                i = i.saturating_add(1);
                match args.get(argn) {
                    Some(Val::Int(p)) if *p >= 0 => {
                        fl.prec = Some(usize::try_from(*p).unwrap_or(MAX_WIDTH).min(MAX_WIDTH));
                    }
                    _ => out.push_str("%!(BADPREC)"),
                }
                argn = argn.saturating_add(1);
            } else {
                fl.prec = Some(parse_num(&chars, &mut i).unwrap_or(0));
            }
        }
        let Some(&verb) = chars.get(i) else {
            out.push_str("%!(NOVERB)");
            break;
        };
        i = i.saturating_add(1);
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(arg) = args.get(argn) else {
            out.push_str("%!");
            out.push(verb);
            out.push_str("(MISSING)");
            continue;
        };
        argn = argn.saturating_add(1);
        if verb == 'T' {
            pad(&mut out, arg.type_name(), &fl);
            continue;
        }
        fmt_value(&mut out, arg, verb, &fl, 0)?;
        if out.len() > super::exec::MAX_OUTPUT {
            return Err(format!("output exceeds {} bytes", super::exec::MAX_OUTPUT));
        }
    }
    if let Some(extra) = args.get(argn..).filter(|e| !e.is_empty()) {
        out.push_str("%!(EXTRA ");
        for (k, a) in extra.iter().enumerate() {
            if k > 0 {
                out.push_str(", ");
            }
            if a.is_nil() {
                out.push_str("<nil>");
            } else {
                out.push_str(a.type_name());
                out.push('=');
                sprint_value(&mut out, a)?;
            }
        }
        out.push(')');
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// encoding/json (Marshal / MarshalIndent with prefix "").

fn json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '<' | '>' | '&' => {
                let _ = write!(out, "\\u00{:02x}", u32::from(c));
            }
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u00{:02x}", u32::from(c));
            }
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out.push('"');
}

fn json_newline(out: &mut String, indent: &str, level: usize) {
    out.push('\n');
    for _ in 0..level {
        out.push_str(indent);
    }
}

fn json_value(
    out: &mut String,
    v: &Val<'_>,
    indent: Option<&str>,
    level: usize,
    depth: usize,
) -> FmtResult {
    too_deep(depth)?;
    if out.len() > super::exec::MAX_OUTPUT {
        return Err(format!("output exceeds {} bytes", super::exec::MAX_OUTPUT));
    }
    let next = level.saturating_add(1);
    match v {
        Val::NoValue | Val::Nil => out.push_str("null"),
        Val::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Val::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Val::Uint(u) => {
            let _ = write!(out, "{u}");
        }
        Val::Float(f) => out.push_str(&json_float(*f)?),
        Val::Str(s) => json_string(out, s),
        Val::Arr(a) => {
            out.push('[');
            for (i, e) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                if let Some(ind) = indent {
                    json_newline(out, ind, next);
                }
                json_value(
                    out,
                    &Val::from_json(e),
                    indent,
                    next,
                    depth.saturating_add(1),
                )?;
            }
            if let (Some(ind), false) = (indent, a.is_empty()) {
                json_newline(out, ind, level);
            }
            out.push(']');
        }
        Val::Map(m) => {
            out.push('{');
            let entries = match m
                .get(super::value::JSON_FIELDS_KEY)
                .and_then(|f| f.as_array())
            {
                // A Go struct: its JSON fields in declaration order.
                Some(fields) => fields
                    .iter()
                    .filter_map(|f| f.as_str())
                    .filter_map(|f| m.get_key_value(f))
                    .collect(),
                None => sorted_entries(m),
            };
            for (i, (k, e)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                if let Some(ind) = indent {
                    json_newline(out, ind, next);
                }
                json_string(out, k);
                out.push(':');
                if indent.is_some() {
                    out.push(' ');
                }
                json_value(
                    out,
                    &Val::from_json(e),
                    indent,
                    next,
                    depth.saturating_add(1),
                )?;
            }
            if let (Some(ind), false) = (indent, m.is_empty()) {
                json_newline(out, ind, level);
            }
            out.push('}');
        }
        Val::Headers => out.push_str("{}"),
    }
    Ok(())
}

/// AES's `json INDENT VALUE`: `json.Marshal` for an empty indent, else
/// `json.MarshalIndent(value, "", indent)`.
pub(super) fn json_marshal(v: &Val<'_>, indent: &str) -> Result<String, String> {
    let mut out = String::new();
    let ind = if indent.is_empty() {
        None
    } else {
        Some(indent)
    };
    json_value(&mut out, v, ind, 0, 0)?;
    Ok(out)
}

// ---------------------------------------------------------------------------
// Escapers (text/template's html, js, urlquery).

/// `template.HTMLEscapeString`.
pub(super) fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\0' => out.push('\u{FFFD}'),
            '"' => out.push_str("&#34;"),
            '\'' => out.push_str("&#39;"),
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

/// `template.JSEscapeString`.
pub(super) fn js_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '"' => out.push_str("\\\""),
            '<' => out.push_str("\\u003C"),
            '>' => out.push_str("\\u003E"),
            '&' => out.push_str("\\u0026"),
            '=' => out.push_str("\\u003D"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u00{:02X}", u32::from(c));
            }
            c if c.is_ascii() || is_print(c) => out.push(c),
            c => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
        }
    }
    out
}

/// `url.QueryEscape`.
pub(super) fn url_query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(char::from(b))
            }
            b' ' => out.push('+'),
            _ => {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    out
}
