//! Go's `fmt` as templates observe it: `%v` printing, `print`/`println`
//! (`Sprint`, `Sprintln`) and `printf` (`Sprintf`) with every verb, flag,
//! width, precision, `*` and `[n]` argument index, and Go's error forms
//! (`%!d(string=x)`, `%!s(MISSING)`, `%!(EXTRA ...)`, `%!(BADINDEX)`).
//! After Go's `fmt/print.go` and `fmt/format.go`; below `exec`, above
//! `value` and `strconv`.

use super::strconv::{can_backquote, format_float, quote_rune, quote_with, rune, MAX_PRECISION};
use super::value::{sorted_entries, Entry, HeaderMap, Val, MAX_OUTPUT};

/// Nesting beyond this in data being printed is an error.
pub(super) const MAX_VALUE_DEPTH: usize = 200;

/// A value printed through `%p` (no real address exists to show).
const FAKE_POINTER: u64 = 0x00c0_0001_0000;

#[derive(Debug, Clone, Copy, Default)]
struct Flags {
    plus: bool,
    minus: bool,
    sharp: bool,
    space: bool,
    zero: bool,
    plus_v: bool,
    sharp_v: bool,
    wid: Option<usize>,
    prec: Option<usize>,
}

struct Printer<'h> {
    buf: String,
    f: Flags,
    /// What the root's `httpRequestHeader` holds.
    hdr: Option<HeaderMap<'h>>,
    /// Output past the cap, or data nested too deep.
    fault: Option<String>,
}

fn too_long() -> String {
    format!("output exceeds {MAX_OUTPUT} bytes")
}

impl<'h> Printer<'h> {
    fn new(hdr: Option<&HeaderMap<'h>>) -> Printer<'h> {
        Printer {
            buf: String::new(),
            f: Flags::default(),
            hdr: hdr.cloned(),
            fault: None,
        }
    }

    fn check(&mut self) -> bool {
        if self.fault.is_none() && self.buf.len() > MAX_OUTPUT {
            self.fault = Some(too_long());
        }
        self.fault.is_none()
    }

    fn write_padding(&mut self, n: usize) {
        if n == 0 {
            return;
        }
        if self.buf.len().saturating_add(n) > MAX_OUTPUT {
            self.fault = Some(too_long());
            return;
        }
        let c = if self.f.zero { '0' } else { ' ' };
        self.buf.extend(std::iter::repeat_n(c, n));
    }

    /// Go's `fmt.pad`: width counted in runes.
    fn pad(&mut self, s: &str) {
        let Some(w) = self.f.wid.filter(|w| *w > 0) else {
            self.buf.push_str(s);
            return;
        };
        let fill = w.saturating_sub(s.chars().count());
        if self.f.minus {
            self.buf.push_str(s);
            self.write_padding(fill);
        } else {
            self.write_padding(fill);
            self.buf.push_str(s);
        }
    }

    fn pad_no_zero(&mut self, s: &str) {
        let old = self.f.zero;
        self.f.zero = false;
        self.pad(s);
        self.f.zero = old;
    }

    /// `fmtS`: precision truncates (in runes).
    fn fmt_s(&mut self, s: &str) {
        let s = truncate(s, self.f.prec);
        self.pad(s);
    }

    /// `fmtSbx` for a string: hex of its bytes.
    fn fmt_sx(&mut self, s: &str, upper: bool) {
        let digits: &[u8; 16] = if upper {
            b"0123456789ABCDEF"
        } else {
            b"0123456789abcdef"
        };
        let x = if upper { 'X' } else { 'x' };
        let bytes = s.as_bytes();
        let mut length = bytes.len();
        if let Some(p) = self.f.prec {
            length = length.min(p);
        }
        let mut width = length.saturating_mul(2);
        if width > 0 {
            if self.f.space {
                if self.f.sharp {
                    width = width.saturating_mul(2);
                }
                width = width.saturating_add(length.saturating_sub(1));
            } else if self.f.sharp {
                width = width.saturating_add(2);
            }
        } else {
            if let Some(w) = self.f.wid {
                self.write_padding(w);
            }
            return;
        }
        let wid = self.f.wid.unwrap_or(0);
        if wid > width && !self.f.minus {
            self.write_padding(wid.saturating_sub(width));
        }
        if self.f.sharp {
            self.buf.push('0');
            self.buf.push(x);
        }
        for (i, b) in bytes.iter().take(length).enumerate() {
            if self.f.space && i > 0 {
                self.buf.push(' ');
                if self.f.sharp {
                    self.buf.push('0');
                    self.buf.push(x);
                }
            }
            for nibble in [b >> 4, b & 0xF] {
                let d = digits.get(usize::from(nibble)).copied().unwrap_or(b'0');
                self.buf.push(char::from(d));
            }
        }
        if wid > width && self.f.minus {
            self.write_padding(wid.saturating_sub(width));
        }
    }

    fn fmt_q(&mut self, s: &str) {
        let s = truncate(s, self.f.prec);
        if self.f.sharp && can_backquote(s) {
            let mut q = String::with_capacity(s.len().saturating_add(2));
            q.push('`');
            q.push_str(s);
            q.push('`');
            self.pad(&q);
            return;
        }
        let q = quote_with(s, self.f.plus);
        self.pad(&q);
    }

    fn fmt_c(&mut self, c: u64) {
        let mut b = [0u8; 4];
        let s = rune(c).encode_utf8(&mut b);
        self.pad(s);
    }

    fn fmt_qc(&mut self, c: u64) {
        let q = quote_rune(c, self.f.plus);
        self.pad(&q);
    }

    fn fmt_unicode(&mut self, u: u64) {
        let prec = match self.f.prec {
            Some(p) if p > 4 => p.min(MAX_PRECISION),
            _ => 4,
        };
        let mut s = String::from("U+");
        let hex = format!("{u:X}");
        s.extend(std::iter::repeat_n('0', prec.saturating_sub(hex.len())));
        s.push_str(&hex);
        if self.f.sharp {
            if let Some(c) = u32::try_from(u).ok().and_then(char::from_u32) {
                if super::strconv::is_print(c) {
                    s.push_str(" '");
                    s.push(c);
                    s.push('\'');
                }
            }
        }
        self.pad_no_zero(&s);
    }

    /// `fmt.fmtInteger`.
    fn fmt_integer(&mut self, u: u64, base: u32, signed: bool, verb: char, upper: bool) {
        let negative = signed && (u as i64) < 0;
        let mag = if negative {
            (u as i64).unsigned_abs()
        } else {
            u
        };
        let mut prec = 0usize;
        if let Some(p) = self.f.prec {
            prec = p.min(MAX_PRECISION);
            if prec == 0 && mag == 0 {
                let old = self.f.zero;
                self.f.zero = false;
                let w = self.f.wid.unwrap_or(0);
                self.write_padding(w);
                self.f.zero = old;
                return;
            }
        } else if self.f.zero {
            if let Some(w) = self.f.wid {
                prec = w;
                if negative || self.f.plus || self.f.space {
                    prec = prec.saturating_sub(1);
                }
            }
        }
        let digits = match (base, upper) {
            (2, _) => format!("{mag:b}"),
            (8, _) => format!("{mag:o}"),
            (16, false) => format!("{mag:x}"),
            (16, true) => format!("{mag:X}"),
            _ => format!("{mag}"),
        };
        let mut s = String::with_capacity(prec.max(digits.len()).saturating_add(4));
        if negative {
            s.push('-');
        } else if self.f.plus {
            s.push('+');
        } else if self.f.space {
            s.push(' ');
        }
        if verb == 'O' {
            s.push_str("0o");
        }
        let zeros = prec.saturating_sub(digits.len());
        if self.f.sharp {
            match base {
                2 => s.push_str("0b"),
                8 if zeros == 0 && !digits.starts_with('0') => s.push('0'),
                16 => s.push_str(if upper { "0X" } else { "0x" }),
                _ => {}
            }
        }
        if s.len().saturating_add(zeros) > MAX_OUTPUT {
            self.fault = Some(too_long());
            return;
        }
        s.extend(std::iter::repeat_n('0', zeros));
        s.push_str(&digits);
        self.pad_no_zero(&s);
    }

    /// `fmt.fmtFloat` (format.go): `verb` is strconv's, `prec` -1 for shortest.
    fn fmt_float_raw(&mut self, v: f64, verb: char, prec: i64) {
        let prec = match self.f.prec {
            Some(p) => i64::try_from(p).unwrap_or(i64::MAX),
            None => prec,
        };
        if prec > i64::try_from(MAX_PRECISION).unwrap_or(i64::MAX) {
            self.fault = Some(too_long());
            return;
        }
        let formatted = format_float(v, verb, prec);
        // No flags and no width: the number as strconv writes it.
        // (Go keeps the sign of "+Inf".)
        if !self.f.plus
            && !self.f.space
            && !self.f.sharp
            && self.f.wid.is_none()
            && formatted != "+Inf"
        {
            self.buf.push_str(&formatted);
            return;
        }
        // num[0] is the sign.
        let mut num = String::with_capacity(formatted.len().saturating_add(8));
        if formatted.starts_with('-') || formatted.starts_with('+') {
            num.push_str(&formatted);
        } else {
            num.push('+');
            num.push_str(&formatted);
        }
        if self.f.space && num.starts_with('+') && !self.f.plus {
            num.replace_range(0..1, " ");
        }
        let second = num.as_bytes().get(1).copied();
        if second == Some(b'I') || second == Some(b'N') {
            let mut s: &str = &num;
            if second == Some(b'N') && !self.f.space && !self.f.plus {
                s = num.get(1..).unwrap_or("");
            }
            let s = s.to_string();
            self.pad_no_zero(&s);
            return;
        }
        if self.f.sharp && verb != 'b' {
            let mut digits: i64 = 0;
            if matches!(verb, 'v' | 'g' | 'G' | 'x') {
                digits = if prec == -1 { 6 } else { prec };
            }
            let mut tail = String::new();
            let mut has_point = false;
            let mut saw_nonzero = false;
            let bytes: Vec<u8> = num.bytes().collect();
            let mut cut = bytes.len();
            let mut i = 1usize;
            while i < bytes.len() {
                let c = bytes.get(i).copied().unwrap_or(b'0');
                match c {
                    b'.' => has_point = true,
                    b'p' | b'P' => {
                        cut = i;
                        break;
                    }
                    b'e' | b'E' if verb != 'x' && verb != 'X' => {
                        cut = i;
                        break;
                    }
                    _ => {
                        if c != b'0' {
                            saw_nonzero = true;
                        }
                        if saw_nonzero {
                            digits = digits.saturating_sub(1);
                        }
                    }
                }
                i = i.saturating_add(1);
            }
            tail.push_str(num.get(cut..).unwrap_or(""));
            num.truncate(cut);
            if !has_point {
                if num.len() == 2 && num.as_bytes().get(1) == Some(&b'0') {
                    digits = digits.saturating_sub(1);
                }
                num.push('.');
            }
            while digits > 0 {
                num.push('0');
                digits = digits.saturating_sub(1);
            }
            num.push_str(&tail);
        }
        if self.f.plus || !num.starts_with('+') {
            if let Some(w) = self.f.wid {
                let n = num.chars().count();
                if self.f.zero && w > n {
                    let sign = num.get(..1).unwrap_or("").to_string();
                    self.buf.push_str(&sign);
                    self.write_padding(w.saturating_sub(n));
                    self.buf.push_str(num.get(1..).unwrap_or(""));
                    return;
                }
            }
            self.pad(&num);
            return;
        }
        let rest = num.get(1..).unwrap_or("").to_string();
        self.pad(&rest);
    }

    /// print.go's `fmtFloat`.
    fn fmt_float(&mut self, v: f64, verb: char, arg: &Val<'_>, depth: usize) {
        match verb {
            'v' => self.fmt_float_raw(v, 'g', -1),
            'b' | 'g' | 'G' | 'x' | 'X' => self.fmt_float_raw(v, verb, -1),
            'f' | 'e' | 'E' => self.fmt_float_raw(v, verb, 6),
            'F' => self.fmt_float_raw(v, 'f', 6),
            _ => self.bad_verb(verb, arg, depth),
        }
    }

    fn fmt_complex(&mut self, re: f64, im: f64, verb: char, arg: &Val<'_>, depth: usize) {
        match verb {
            'v' | 'b' | 'g' | 'G' | 'x' | 'X' | 'f' | 'F' | 'e' | 'E' => {
                let old_plus = self.f.plus;
                self.buf.push('(');
                self.fmt_float(re, verb, arg, depth);
                self.f.plus = true;
                self.fmt_float(im, verb, arg, depth);
                self.buf.push_str("i)");
                self.f.plus = old_plus;
            }
            _ => self.bad_verb(verb, arg, depth),
        }
    }

    /// print.go's `fmtInteger`.
    fn fmt_int(&mut self, v: u64, signed: bool, verb: char, arg: &Val<'_>, depth: usize) {
        match verb {
            'v' => {
                if self.f.sharp_v && !signed {
                    let old = self.f.sharp;
                    self.f.sharp = true;
                    self.fmt_integer(v, 16, false, 'v', false);
                    self.f.sharp = old;
                } else {
                    self.fmt_integer(v, 10, signed, verb, false);
                }
            }
            'd' => self.fmt_integer(v, 10, signed, verb, false),
            'b' => self.fmt_integer(v, 2, signed, verb, false),
            'o' | 'O' => self.fmt_integer(v, 8, signed, verb, false),
            'x' => self.fmt_integer(v, 16, signed, verb, false),
            'X' => self.fmt_integer(v, 16, signed, verb, true),
            'c' => self.fmt_c(v),
            'q' => self.fmt_qc(v),
            'U' => self.fmt_unicode(v),
            _ => self.bad_verb(verb, arg, depth),
        }
    }

    fn fmt_string(&mut self, s: &str, verb: char, arg: &Val<'_>, depth: usize) {
        match verb {
            'v' => {
                if self.f.sharp_v {
                    self.fmt_q(s);
                } else {
                    self.fmt_s(s);
                }
            }
            's' => self.fmt_s(s),
            'x' => self.fmt_sx(s, false),
            'X' => self.fmt_sx(s, true),
            'q' => self.fmt_q(s),
            _ => self.bad_verb(verb, arg, depth),
        }
    }

    /// `%!verb(type=value)`, or `%!verb(<nil>)`.
    fn bad_verb(&mut self, verb: char, arg: &Val<'_>, depth: usize) {
        self.buf.push_str("%!");
        self.buf.push(verb);
        self.buf.push('(');
        if arg.is_nil() {
            self.buf.push_str("<nil>");
        } else {
            self.buf.push_str(arg.type_name());
            self.buf.push('=');
            self.print_value(arg, 'v', depth);
        }
        self.buf.push(')');
    }

    /// `printArg`: one operand at the top.
    fn print_arg(&mut self, arg: &Val<'_>, verb: char) {
        if arg.is_nil() {
            match verb {
                'T' | 'v' => self.pad("<nil>"),
                _ => self.bad_verb(verb, arg, 0),
            }
            return;
        }
        match verb {
            'T' => {
                self.fmt_s(arg.type_name());
                return;
            }
            'p' => {
                self.fmt_pointer(arg, verb);
                return;
            }
            _ => {}
        }
        self.print_value(arg, verb, 0);
    }

    fn fmt_pointer(&mut self, arg: &Val<'_>, verb: char) {
        let addr = match arg {
            Val::Arr(_) | Val::Map(..) | Val::Headers | Val::HeaderMap(_) => FAKE_POINTER,
            Val::Strings(s) => {
                if s.is_some() {
                    FAKE_POINTER
                } else {
                    0
                }
            }
            _ => {
                self.bad_verb(verb, arg, 0);
                return;
            }
        };
        let old = self.f.sharp;
        self.f.sharp = !old;
        self.fmt_integer(addr, 16, false, 'v', false);
        self.f.sharp = old;
    }

    /// `printValue`.
    fn print_value(&mut self, v: &Val<'_>, verb: char, depth: usize) {
        if !self.check() {
            return;
        }
        if depth > MAX_VALUE_DEPTH {
            self.fault = Some(format!("value nested deeper than {MAX_VALUE_DEPTH} levels"));
            return;
        }
        match v {
            Val::NoValue | Val::Nil => {
                // A nil interface{} inside a map or slice.
                if self.f.sharp_v {
                    self.buf.push_str("interface {}(nil)");
                } else {
                    self.buf.push_str("<nil>");
                }
            }
            Val::Bool(b) => match verb {
                't' | 'v' => self.pad(if *b { "true" } else { "false" }),
                _ => self.bad_verb(verb, v, depth),
            },
            Val::Int(i) => self.fmt_int(*i as u64, true, verb, v, depth),
            Val::Byte(b) => self.fmt_int(u64::from(*b), false, verb, v, depth),
            Val::Uint(u) => self.fmt_int(*u, false, verb, v, depth),
            Val::Float(f) => self.fmt_float(*f, verb, v, depth),
            Val::Complex(re, im) => self.fmt_complex(*re, *im, verb, v, depth),
            Val::Str(s) => self.fmt_string(s, verb, v, depth),
            Val::Arr(a) => {
                let items: Vec<Val<'_>> = a.iter().map(Val::from_json).collect();
                self.print_list("[]interface {}", &items, verb, depth, false);
            }
            Val::Strings(s) => {
                let items: Vec<Val<'_>> =
                    s.iter().flatten().map(|x| Val::Str((*x).into())).collect();
                self.print_list("[]string", &items, verb, depth, s.is_none());
            }
            Val::Map(m, root) => {
                let entries = sorted_entries(m, *root);
                self.open_map("map[string]interface {}");
                for (i, (k, e)) in entries.iter().enumerate() {
                    self.map_sep(i);
                    self.print_value(&Val::Str((*k).into()), verb, depth.saturating_add(1));
                    self.buf.push(':');
                    match e {
                        Entry::Json(j) => {
                            self.print_value(&Val::from_json(j), verb, depth.saturating_add(1))
                        }
                        // The root's headers are filled in by exec before
                        // printing; here they only show their type.
                        Entry::Headers => {
                            self.print_value(&Val::Headers, verb, depth.saturating_add(1))
                        }
                    }
                }
                self.close_map();
            }
            Val::Headers => {
                let h = self.hdr.clone().unwrap_or_default();
                self.print_value(&Val::HeaderMap(h), verb, depth);
            }
            Val::HeaderMap(h) => {
                self.open_map("http.Header");
                for (i, (k, values)) in h.iter().enumerate() {
                    self.map_sep(i);
                    self.print_value(&Val::Str(k.as_str().into()), verb, depth.saturating_add(1));
                    self.buf.push(':');
                    self.print_value(
                        &Val::Strings(Some(values.clone())),
                        verb,
                        depth.saturating_add(1),
                    );
                }
                self.close_map();
            }
        }
    }

    fn open_map(&mut self, type_name: &str) {
        if self.f.sharp_v {
            self.buf.push_str(type_name);
            self.buf.push('{');
        } else {
            self.buf.push_str("map[");
        }
    }

    fn map_sep(&mut self, i: usize) {
        if i > 0 {
            if self.f.sharp_v {
                self.buf.push_str(", ");
            } else {
                self.buf.push(' ');
            }
        }
    }

    fn close_map(&mut self) {
        self.buf.push(if self.f.sharp_v { '}' } else { ']' });
    }

    fn print_list(
        &mut self,
        type_name: &str,
        items: &[Val<'_>],
        verb: char,
        depth: usize,
        nil: bool,
    ) {
        if self.f.sharp_v {
            self.buf.push_str(type_name);
            if nil {
                self.buf.push_str("(nil)");
                return;
            }
            self.buf.push('{');
            for (i, e) in items.iter().enumerate() {
                if i > 0 {
                    self.buf.push_str(", ");
                }
                self.print_value(e, verb, depth.saturating_add(1));
            }
            self.buf.push('}');
        } else {
            self.buf.push('[');
            for (i, e) in items.iter().enumerate() {
                if i > 0 {
                    self.buf.push(' ');
                }
                self.print_value(e, verb, depth.saturating_add(1));
            }
            self.buf.push(']');
        }
    }

    fn finish(self) -> Result<String, String> {
        match self.fault {
            Some(e) => Err(e),
            None if self.buf.len() > MAX_OUTPUT => Err(too_long()),
            None => Ok(self.buf),
        }
    }
}

/// `truncateString`: the first `prec` runes.
fn truncate(s: &str, prec: Option<usize>) -> &str {
    match prec {
        Some(p) => match s.char_indices().nth(p) {
            Some((i, _)) => s.get(..i).unwrap_or(s),
            None => s,
        },
        None => s,
    }
}

/// `fmt.Sprint(v)` for one value, appended to `out`.
pub(super) fn sprint_value<'h>(
    out: &mut String,
    v: &Val<'_>,
    hdr: Option<&HeaderMap<'h>>,
) -> Result<(), String> {
    let mut p = Printer::new(hdr);
    p.print_arg(v, 'v');
    out.push_str(&p.finish()?);
    Ok(())
}

/// `fmt.Sprint(args...)`: spaces between operands when neither is a string.
pub(super) fn sprint<'h>(args: &[Val<'_>], hdr: Option<&HeaderMap<'h>>) -> Result<String, String> {
    let mut p = Printer::new(hdr);
    let mut prev_string = false;
    for (i, a) in args.iter().enumerate() {
        let is_string = matches!(a, Val::Str(_));
        if i > 0 && !is_string && !prev_string {
            p.buf.push(' ');
        }
        p.print_arg(a, 'v');
        prev_string = is_string;
    }
    p.finish()
}

/// `fmt.Sprintln(args...)`: always spaces, then a newline.
pub(super) fn sprintln<'h>(
    args: &[Val<'_>],
    hdr: Option<&HeaderMap<'h>>,
) -> Result<String, String> {
    let mut p = Printer::new(hdr);
    for (i, a) in args.iter().enumerate() {
        if i > 0 {
            p.buf.push(' ');
        }
        p.print_arg(a, 'v');
    }
    p.buf.push('\n');
    p.finish()
}

/// Go's `parsenum`: digits from `i`; a number past 10⁶ is no number and
/// consumes the rest of the format (as Go).
fn parse_num(b: &[u8], i: usize, end: usize) -> (Option<usize>, usize) {
    let mut num: usize = 0;
    let mut isnum = false;
    let mut j = i;
    while j < end {
        let Some(&c) = b.get(j) else { break };
        if !c.is_ascii_digit() {
            break;
        }
        if num > 1_000_000 {
            return (None, end);
        }
        num = num.saturating_mul(10).saturating_add(usize::from(c - b'0'));
        isnum = true;
        j = j.saturating_add(1);
    }
    (isnum.then_some(num), j)
}

/// Go's `parseArgNumber` on `b[i..]` (starting at `[`): the zero-based
/// index, the bytes used and whether it parsed.
fn parse_arg_number(b: &[u8], i: usize) -> (Option<usize>, usize, bool) {
    let rest = b.get(i..).unwrap_or(&[]);
    if rest.len() < 3 {
        return (None, 1, false);
    }
    for k in 1..rest.len() {
        if rest.get(k) == Some(&b']') {
            let (n, newi) = parse_num(rest, 1, k);
            return match n {
                Some(n) if newi == k => (n.checked_sub(1), k.saturating_add(1), true),
                _ => (None, k.saturating_add(1), false),
            };
        }
    }
    (None, 1, false)
}

/// An int operand for `*` (Go's `intFromArg`).
fn int_from_arg(a: Option<&Val<'_>>) -> Option<i64> {
    let n = match a? {
        Val::Int(i) => *i,
        Val::Byte(b) => i64::from(*b),
        Val::Uint(u) => i64::try_from(*u).ok()?,
        _ => return None,
    };
    (-1_000_000..=1_000_000).contains(&n).then_some(n)
}

/// Where `Sprintf` is in its format: the byte, the operand, and Go's
/// `reordered` / `goodArgNum` state.
struct Scan<'b> {
    b: &'b [u8],
    end: usize,
    i: usize,
    arg_num: usize,
    nargs: usize,
    reordered: bool,
    good_arg_num: bool,
}

impl Scan<'_> {
    /// Go's `argNumber`: an explicit `[n]` at `i`; whether one was found.
    fn arg_number(&mut self) -> bool {
        if self.b.get(self.i) != Some(&b'[') {
            return false;
        }
        self.reordered = true;
        let (index, wid, ok) = parse_arg_number(self.b, self.i);
        self.i = self.i.saturating_add(wid);
        match index {
            Some(ix) if ok && ix < self.nargs => {
                self.arg_num = ix;
                true
            }
            _ => {
                self.good_arg_num = false;
                ok
            }
        }
    }

    /// A `*` operand (Go's `intFromArg`), past the `*`.
    fn star(&mut self, args: &[Val<'_>]) -> Option<i64> {
        self.i = self.i.saturating_add(1);
        let v = int_from_arg(args.get(self.arg_num));
        if self.arg_num < self.nargs {
            self.arg_num = self.arg_num.saturating_add(1);
        }
        v
    }

    /// Flags: `# 0 + - space`.
    fn flags(&mut self, f: &mut Flags) {
        while let Some(&c) = self.b.get(self.i) {
            match c {
                b'#' => f.sharp = true,
                b'0' => f.zero = !f.minus,
                b'+' => f.plus = true,
                b'-' => {
                    f.minus = true;
                    f.zero = false;
                }
                b' ' => f.space = true,
                _ => break,
            }
            self.i = self.i.saturating_add(1);
        }
    }

    /// Argument index, width and precision of one directive.
    fn width_and_precision(&mut self, p: &mut Printer<'_>, args: &[Val<'_>]) {
        let mut after_index = self.arg_number();
        if self.b.get(self.i) == Some(&b'*') {
            match self.star(args) {
                Some(w) => {
                    if w < 0 {
                        p.f.minus = true;
                        p.f.zero = false;
                    }
                    p.f.wid = Some(usize::try_from(w.unsigned_abs()).unwrap_or(0));
                }
                None => p.buf.push_str("%!(BADWIDTH)"),
            }
            after_index = false;
        } else {
            let (w, ni) = parse_num(self.b, self.i, self.end);
            p.f.wid = w;
            self.i = ni;
            if after_index && w.is_some() {
                self.good_arg_num = false;
            }
        }
        if self.i.saturating_add(1) < self.end && self.b.get(self.i) == Some(&b'.') {
            self.i = self.i.saturating_add(1);
            if after_index {
                self.good_arg_num = false;
            }
            after_index = self.arg_number();
            if self.b.get(self.i) == Some(&b'*') {
                match self.star(args) {
                    Some(pr) if pr >= 0 => p.f.prec = usize::try_from(pr).ok(),
                    // Negative or no int: no precision.
                    _ => {
                        p.f.prec = None;
                        p.buf.push_str("%!(BADPREC)");
                    }
                }
                after_index = false;
            } else {
                let (pr, ni) = parse_num(self.b, self.i, self.end);
                self.i = ni;
                p.f.prec = Some(pr.unwrap_or(0));
            }
        }
        if !after_index {
            self.arg_number();
        }
    }
}

/// `fmt.Sprintf(format, args...)`.
pub(super) fn sprintf<'h>(
    format: &str,
    args: &[Val<'_>],
    hdr: Option<&HeaderMap<'h>>,
) -> Result<String, String> {
    let mut p = Printer::new(hdr);
    let mut s = Scan {
        b: format.as_bytes(),
        end: format.len(),
        i: 0,
        arg_num: 0,
        nargs: args.len(),
        reordered: false,
        good_arg_num: true,
    };
    while s.i < s.end {
        if !p.check() {
            break;
        }
        s.good_arg_num = true;
        let last = s.i;
        while s.i < s.end && s.b.get(s.i) != Some(&b'%') {
            s.i = s.i.saturating_add(1);
        }
        if s.i > last {
            p.buf.push_str(format.get(last..s.i).unwrap_or(""));
        }
        if s.i >= s.end {
            break;
        }
        s.i = s.i.saturating_add(1);
        p.f = Flags::default();
        s.flags(&mut p.f);
        s.width_and_precision(&mut p, args);
        if s.i >= s.end {
            p.buf.push_str("%!(NOVERB)");
            break;
        }
        let verb = format
            .get(s.i..)
            .and_then(|t| t.chars().next())
            .unwrap_or('?');
        s.i = s.i.saturating_add(verb.len_utf8());
        if verb == '%' {
            p.buf.push('%');
            continue;
        }
        if !s.good_arg_num {
            p.buf.push_str("%!");
            p.buf.push(verb);
            p.buf.push_str("(BADINDEX)");
            continue;
        }
        let Some(arg) = args.get(s.arg_num) else {
            p.buf.push_str("%!");
            p.buf.push(verb);
            p.buf.push_str("(MISSING)");
            continue;
        };
        if verb == 'v' {
            p.f.sharp_v = p.f.sharp;
            p.f.sharp = false;
            p.f.plus_v = p.f.plus;
            p.f.plus = false;
        }
        p.print_arg(arg, verb);
        s.arg_num = s.arg_num.saturating_add(1);
    }
    if !s.reordered && s.arg_num < args.len() {
        p.f = Flags::default();
        p.buf.push_str("%!(EXTRA ");
        for (k, a) in args.iter().skip(s.arg_num).enumerate() {
            if k > 0 {
                p.buf.push_str(", ");
            }
            if a.is_nil() {
                p.buf.push_str("<nil>");
            } else {
                p.buf.push_str(a.type_name());
                p.buf.push('=');
                p.print_arg(a, 'v');
            }
        }
        p.buf.push(')');
    }
    p.finish()
}
