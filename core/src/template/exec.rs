//! Template execution (after Go's `text/template/exec.go` and `funcs.go`).

use super::gofmt;
use super::parse::{Arg, ArgKind, Cmd, Control, Func, Node, Pipe};
use super::value::{sorted_entries, Val};
use super::{HeaderLookup, TemplateError};
use serde_json::Value;
use std::borrow::Cow;
use std::cmp::Ordering;

/// Rendered output (and any single string a function builds) is capped here.
pub(super) const MAX_OUTPUT: usize = 64 * 1024;
/// Evaluation steps (nodes walked, commands run, range iterations) per render.
pub(super) const MAX_STEPS: u32 = 1_000_000;

pub(super) enum Flow {
    Err(TemplateError),
    DoNotSet,
    Break,
    Continue,
}

type R<T> = Result<T, Flow>;

pub(super) struct State<'a> {
    src: &'a str,
    root: &'a Value,
    headers: &'a dyn HeaderLookup,
    pub(super) out: String,
    vars: Vec<(&'a str, Val<'a>)>,
    steps: u32,
}

fn line_col(src: &str, pos: usize) -> (usize, usize) {
    let before = src.get(..pos).unwrap_or(src);
    let line = before.matches('\n').count().saturating_add(1);
    let col = match before.rfind('\n') {
        Some(nl) => pos.saturating_sub(nl.saturating_add(1)),
        None => pos,
    };
    (line, col)
}

/// `template: LINE:COL: MSG`, Go's `ErrorContext` position style.
pub(super) fn error_at(src: &str, pos: usize, msg: &str) -> TemplateError {
    let (line, col) = line_col(src, pos);
    TemplateError {
        message: format!("template: {line}:{col}: {msg}"),
    }
}

impl<'a> State<'a> {
    pub(super) fn new(src: &'a str, root: &'a Value, headers: &'a dyn HeaderLookup) -> Self {
        State {
            src,
            root,
            headers,
            out: String::new(),
            vars: vec![("$", Val::from_json(root))],
            steps: 0,
        }
    }

    fn fail<T>(&self, cmd: &Cmd, msg: impl AsRef<str>) -> R<T> {
        let text = self.src.get(cmd.pos..cmd.end).unwrap_or("");
        let msg = format!("executing at <{}>: {}", text, msg.as_ref());
        Err(Flow::Err(error_at(self.src, cmd.pos, &msg)))
    }

    fn step(&mut self, cmd: Option<&Cmd>) -> R<()> {
        self.steps = self.steps.saturating_add(1);
        if self.steps > MAX_STEPS {
            let msg = format!("template execution exceeded {MAX_STEPS} steps");
            return match cmd {
                Some(c) => self.fail(c, msg),
                None => Err(Flow::Err(TemplateError {
                    message: format!("template: {msg}"),
                })),
            };
        }
        Ok(())
    }

    fn write(&mut self, s: &str) -> R<()> {
        if self.out.len().saturating_add(s.len()) > MAX_OUTPUT {
            return Err(Flow::Err(TemplateError {
                message: format!("template: output exceeds {MAX_OUTPUT} bytes"),
            }));
        }
        self.out.push_str(s);
        Ok(())
    }

    pub(super) fn walk(&mut self, dot: &Val<'a>, nodes: &'a [Node]) -> R<()> {
        for node in nodes {
            self.step(None)?;
            match node {
                Node::Text(t) => self.write(t)?,
                Node::Action(pipe) => {
                    let v = self.eval_pipeline(dot, pipe)?;
                    if pipe.decl.is_empty() {
                        self.print_value(&v, pipe)?;
                    }
                }
                Node::If(c) => self.walk_if_with(dot, c, false)?,
                Node::With(c) => self.walk_if_with(dot, c, true)?,
                Node::Range(c) => self.walk_range(dot, c)?,
                Node::Break => return Err(Flow::Break),
                Node::Continue => return Err(Flow::Continue),
            }
        }
        Ok(())
    }

    fn print_value(&mut self, v: &Val<'a>, pipe: &Pipe) -> R<()> {
        match v {
            Val::NoValue | Val::Nil => self.write("<no value>"),
            Val::Str(s) => self.write(s),
            other => {
                let mut s = String::new();
                if let Err(e) = gofmt::sprint_value(&mut s, other) {
                    return match pipe.cmds.last() {
                        Some(c) => self.fail(c, e),
                        None => Err(Flow::Err(TemplateError { message: e })),
                    };
                }
                self.write(&s)
            }
        }
    }

    fn walk_if_with(&mut self, dot: &Val<'a>, c: &'a Control, with: bool) -> R<()> {
        let mark = self.vars.len();
        let v = self.eval_pipeline(dot, &c.pipe)?;
        if v.truth() {
            if with {
                self.walk(&v, &c.list)?;
            } else {
                self.walk(dot, &c.list)?;
            }
        } else if let Some(e) = &c.else_list {
            self.walk(dot, e)?;
        }
        self.vars.truncate(mark);
        Ok(())
    }

    fn set_top_var(&mut self, n: usize, v: Val<'a>) {
        let len = self.vars.len();
        if let Some(slot) = len.checked_sub(n).and_then(|i| self.vars.get_mut(i)) {
            slot.1 = v;
        }
    }

    /// Runs one iteration; returns false on `break`.
    fn range_iteration(
        &mut self,
        c: &'a Control,
        mark: usize,
        index: Val<'a>,
        elem: Val<'a>,
    ) -> R<bool> {
        self.step(c.pipe.cmds.first())?;
        if !c.pipe.decl.is_empty() {
            self.set_top_var(1, elem.clone());
        }
        if c.pipe.decl.len() > 1 {
            self.set_top_var(2, index);
        }
        let r = self.walk(&elem, &c.list);
        self.vars.truncate(mark);
        match r {
            Ok(()) | Err(Flow::Continue) => Ok(true),
            Err(Flow::Break) => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn walk_range(&mut self, dot: &Val<'a>, c: &'a Control) -> R<()> {
        let outer = self.vars.len();
        let v = self.eval_pipeline(dot, &c.pipe)?;
        let mark = self.vars.len();
        let mut ran = false;
        match v {
            Val::Arr(a) => {
                for (i, e) in a.iter().enumerate() {
                    ran = true;
                    let idx = Val::Int(i64::try_from(i).unwrap_or(i64::MAX));
                    if !self.range_iteration(c, mark, idx, Val::from_json(e))? {
                        break;
                    }
                }
            }
            Val::Map(m) => {
                for (k, e) in sorted_entries(m) {
                    ran = true;
                    let key = Val::Str(Cow::Borrowed(k.as_str()));
                    if !self.range_iteration(c, mark, key, Val::from_json(e))? {
                        break;
                    }
                }
            }
            Val::Int(n) => {
                let mut i = 0i64;
                while i < n {
                    ran = true;
                    if !self.range_iteration(c, mark, Val::Int(i), Val::Int(i))? {
                        break;
                    }
                    i = i.saturating_add(1);
                }
            }
            Val::NoValue | Val::Nil => {}
            other => {
                let mut s = String::new();
                let _ = gofmt::sprint_value(&mut s, &other);
                return match c.pipe.cmds.first() {
                    Some(cmd) => self.fail(cmd, format!("range can't iterate over {s}")),
                    None => Err(Flow::Err(TemplateError {
                        message: format!("template: range can't iterate over {s}"),
                    })),
                };
            }
        }
        if !ran {
            if let Some(e) = &c.else_list {
                self.walk(dot, e)?;
            }
        }
        self.vars.truncate(outer);
        Ok(())
    }

    fn eval_pipeline(&mut self, dot: &Val<'a>, pipe: &'a Pipe) -> R<Val<'a>> {
        let mut value: Option<Val<'a>> = None;
        for cmd in &pipe.cmds {
            value = Some(self.eval_command(dot, cmd, value.take())?);
        }
        // A nil interface{} is dug out to an invalid value.
        let value = match value {
            Some(Val::Nil) | None => Val::NoValue,
            Some(v) => v,
        };
        for name in &pipe.decl {
            if pipe.is_assign {
                if let Some(slot) = self
                    .vars
                    .iter_mut()
                    .rev()
                    .find(|(n, _)| *n == name.as_str())
                {
                    slot.1 = value.clone();
                }
            } else {
                self.vars.push((name.as_str(), value.clone()));
            }
        }
        Ok(value)
    }

    fn not_a_function(&self, cmd: &Cmd, final_: &Option<Val<'a>>) -> R<()> {
        if cmd.args.len() > 1 || final_.is_some() {
            let first = cmd
                .args
                .first()
                .and_then(|a| self.src.get(a.pos..a.end))
                .unwrap_or("");
            return self.fail(cmd, format!("can't give argument to non-function {first}"));
        }
        Ok(())
    }

    fn var_value(&self, name: &str) -> Val<'a> {
        self.vars
            .iter()
            .rev()
            .find(|(n, _)| *n == name)
            .map_or(Val::NoValue, |(_, v)| v.clone())
    }

    fn eval_command(&mut self, dot: &Val<'a>, cmd: &'a Cmd, final_: Option<Val<'a>>) -> R<Val<'a>> {
        self.step(Some(cmd))?;
        let Some(first) = cmd.args.first() else {
            return self.fail(cmd, "empty command");
        };
        let rest = cmd.args.get(1..).unwrap_or(&[]);
        match &first.kind {
            ArgKind::Field(idents) => {
                self.eval_field_chain(dot, dot.clone(), idents, cmd, rest, final_)
            }
            ArgKind::Chain(inner, idents) => {
                if matches!(inner.kind, ArgKind::Nil) {
                    return self.fail(cmd, "indirection through explicit nil");
                }
                let recv = self.eval_arg(dot, inner, cmd)?;
                self.eval_field_chain(dot, recv, idents, cmd, rest, final_)
            }
            ArgKind::Func(f) => self.call(*f, dot, cmd, rest, final_),
            ArgKind::Pipe(p) => {
                self.not_a_function(cmd, &final_)?;
                self.eval_pipeline(dot, p)
            }
            ArgKind::Var(name, idents) => {
                let v = self.var_value(name);
                if idents.is_empty() {
                    self.not_a_function(cmd, &final_)?;
                    return Ok(v);
                }
                self.eval_field_chain(dot, v, idents, cmd, rest, final_)
            }
            ArgKind::Nil => self.fail(cmd, "nil is not a command"),
            _ => {
                self.not_a_function(cmd, &final_)?;
                self.eval_arg(dot, first, cmd)
            }
        }
    }

    fn eval_field_chain(
        &mut self,
        dot: &Val<'a>,
        mut recv: Val<'a>,
        idents: &'a [String],
        cmd: &'a Cmd,
        args: &'a [Arg],
        final_: Option<Val<'a>>,
    ) -> R<Val<'a>> {
        let Some((last, init)) = idents.split_last() else {
            return Ok(recv);
        };
        for name in init {
            recv = self.eval_field(dot, name, recv, cmd, &[], None)?;
        }
        self.eval_field(dot, last, recv, cmd, args, final_)
    }

    fn eval_field(
        &mut self,
        dot: &Val<'a>,
        name: &str,
        recv: Val<'a>,
        cmd: &'a Cmd,
        args: &'a [Arg],
        final_: Option<Val<'a>>,
    ) -> R<Val<'a>> {
        let has_args = !args.is_empty() || final_.is_some();
        match recv {
            Val::NoValue => Ok(Val::NoValue),
            Val::Nil => self.fail(cmd, format!("nil pointer evaluating interface {{}}.{name}")),
            Val::Headers => {
                if name == "Get" {
                    let n = args.len().saturating_add(usize::from(final_.is_some()));
                    if n != 1 {
                        return self
                            .fail(cmd, format!("wrong number of args for Get: want 1 got {n}"));
                    }
                    let key = match (args.first(), final_) {
                        (Some(a), _) => self.eval_arg(dot, a, cmd)?,
                        (None, Some(f)) => f,
                        (None, None) => Val::NoValue,
                    };
                    let Val::Str(key) = key else {
                        return self.fail(
                            cmd,
                            format!(
                                "wrong type for value; expected string; got {}",
                                key.type_name()
                            ),
                        );
                    };
                    let headers = self.headers;
                    return Ok(Val::Str(Cow::Owned(
                        headers.get_header(&key).unwrap_or("").to_string(),
                    )));
                }
                if has_args {
                    return self.fail(cmd, format!("{name} is not a method but has arguments"));
                }
                let headers = self.headers;
                Ok(match headers.get_header(name) {
                    Some(v) => Val::Str(Cow::Owned(v.to_string())),
                    None => Val::NoValue,
                })
            }
            Val::Map(m) => {
                let is_root = matches!(self.root, Value::Object(r) if std::ptr::eq(r, m));
                if is_root && name == "httpRequestHeader" && !m.contains_key(name) {
                    if has_args {
                        return self.fail(cmd, format!("{name} is not a method but has arguments"));
                    }
                    return Ok(Val::Headers);
                }
                if has_args {
                    return self.fail(cmd, format!("{name} is not a method but has arguments"));
                }
                Ok(m.get(name).map_or(Val::NoValue, Val::from_json))
            }
            other => self.fail(
                cmd,
                format!("can't evaluate field {name} in type {}", other.type_name()),
            ),
        }
    }

    /// Go's `evalArg` for an `interface{}` / `reflect.Value` parameter.
    fn eval_arg(&mut self, dot: &Val<'a>, arg: &'a Arg, cmd: &'a Cmd) -> R<Val<'a>> {
        Ok(match &arg.kind {
            ArgKind::Dot => dot.clone(),
            ArgKind::Nil => Val::Nil,
            ArgKind::Bool(b) => Val::Bool(*b),
            ArgKind::Int(i) => Val::Int(*i),
            ArgKind::Float(f) => Val::Float(*f),
            ArgKind::Str(s) => Val::Str(Cow::Borrowed(s.as_str())),
            ArgKind::Field(idents) => {
                self.eval_field_chain(dot, dot.clone(), idents, cmd, &[], None)?
            }
            ArgKind::Var(name, idents) => {
                let v = self.var_value(name);
                self.eval_field_chain(dot, v, idents, cmd, &[], None)?
            }
            ArgKind::Chain(inner, idents) => {
                if matches!(inner.kind, ArgKind::Nil) {
                    return self.fail(cmd, "indirection through explicit nil");
                }
                let recv = self.eval_arg(dot, inner, cmd)?;
                self.eval_field_chain(dot, recv, idents, cmd, &[], None)?
            }
            ArgKind::Func(f) => self.call(*f, dot, cmd, &[], None)?,
            ArgKind::Pipe(p) => self.eval_pipeline(dot, p)?,
        })
    }

    fn call(
        &mut self,
        f: Func,
        dot: &Val<'a>,
        cmd: &'a Cmd,
        args: &'a [Arg],
        final_: Option<Val<'a>>,
    ) -> R<Val<'a>> {
        let name = f.name();
        let n = args.len().saturating_add(usize::from(final_.is_some()));
        // (fixed, variadic)
        let (fixed, variadic) = match f {
            Func::And | Func::Or | Func::Eq | Func::Index | Func::Printf => (1, true),
            Func::Not | Func::Len => (1, false),
            Func::Ne | Func::Lt | Func::Le | Func::Gt | Func::Ge | Func::HasKey | Func::Json => {
                (2, false)
            }
            Func::DoNotSet => (0, false),
            Func::Print | Func::Println | Func::Urlquery | Func::Html | Func::Js => (0, true),
        };
        if variadic && n < fixed {
            return self.fail(
                cmd,
                format!("wrong number of args for {name}: want at least {fixed} got {n}"),
            );
        }
        if !variadic && n != fixed {
            return self.fail(
                cmd,
                format!("wrong number of args for {name}: want {fixed} got {n}"),
            );
        }
        if matches!(f, Func::And | Func::Or) {
            let want = f == Func::Or;
            let mut v = Val::NoValue;
            for a in args {
                v = self.eval_arg(dot, a, cmd)?;
                if v.truth() == want {
                    return Ok(v);
                }
            }
            if let Some(fv) = final_ {
                v = fv;
            }
            return Ok(v);
        }
        let mut vals: Vec<Val<'a>> = Vec::with_capacity(n);
        for a in args {
            vals.push(self.eval_arg(dot, a, cmd)?);
        }
        if let Some(fv) = final_ {
            vals.push(fv);
        }
        match self.builtin(f, &vals) {
            Ok(v) => {
                if let Val::Str(s) = &v {
                    if s.len() > MAX_OUTPUT {
                        return self.fail(
                            cmd,
                            format!("error calling {name}: result exceeds {MAX_OUTPUT} bytes"),
                        );
                    }
                }
                Ok(v)
            }
            Err(Call::DoNotSet) => Err(Flow::DoNotSet),
            Err(Call::Err(e)) => self.fail(cmd, format!("error calling {name}: {e}")),
        }
    }

    fn builtin(&self, f: Func, vals: &[Val<'a>]) -> Result<Val<'a>, Call> {
        let nov = Val::NoValue;
        let arg = |i: usize| vals.get(i).unwrap_or(&nov);
        let owned = |s: String| Val::Str(Cow::Owned(s));
        Ok(match f {
            Func::And | Func::Or => arg(0).clone(),
            Func::Not => Val::Bool(!arg(0).truth()),
            Func::Eq => {
                let a = arg(0);
                let rest = vals.get(1..).unwrap_or(&[]);
                if rest.is_empty() {
                    return Err(Call::Err("missing argument for comparison".into()));
                }
                let mut any = false;
                for b in rest {
                    if go_eq(a, b)? {
                        any = true;
                        break;
                    }
                }
                Val::Bool(any)
            }
            Func::Ne => Val::Bool(!go_eq(arg(0), arg(1))?),
            Func::Lt => Val::Bool(go_lt(arg(0), arg(1))?),
            Func::Le => {
                let (a, b) = (arg(0), arg(1));
                Val::Bool(go_lt(a, b)? || go_eq(a, b)?)
            }
            Func::Gt => {
                let (a, b) = (arg(0), arg(1));
                Val::Bool(!(go_lt(a, b)? || go_eq(a, b)?))
            }
            Func::Ge => Val::Bool(!go_lt(arg(0), arg(1))?),
            Func::Index => go_index(arg(0).clone(), vals.get(1..).unwrap_or(&[]))?,
            Func::Len => Val::Int(match arg(0).clone() {
                Val::Str(s) => len_i64(s.len()),
                Val::Arr(a) => len_i64(a.len()),
                Val::Map(m) => len_i64(m.len()),
                Val::NoValue | Val::Nil => return Err(Call::Err("len of nil pointer".into())),
                other => return Err(Call::Err(format!("len of type {}", other.type_name()))),
            }),
            Func::HasKey => {
                let key = string_param(arg(1))?;
                match arg(0).clone() {
                    Val::Map(m) => Val::Bool(m.contains_key(key.as_ref())),
                    Val::NoValue | Val::Nil => Val::Bool(false),
                    Val::Headers => Val::Bool(self.headers.get_header(&key).is_some()),
                    other => {
                        return Err(Call::Err(format!(
                            "wrong type for value; expected map[string]interface {{}}; got {}",
                            other.type_name()
                        )))
                    }
                }
            }
            Func::DoNotSet => return Err(Call::DoNotSet),
            Func::Json => {
                let indent = string_param(arg(0))?;
                owned(gofmt::json_marshal(arg(1), &indent).map_err(Call::Err)?)
            }
            Func::Print => owned(gofmt::sprint(vals).map_err(Call::Err)?),
            Func::Println => owned(gofmt::sprintln(vals).map_err(Call::Err)?),
            Func::Printf => {
                let format = string_param(arg(0))?;
                owned(gofmt::sprintf(&format, vals.get(1..).unwrap_or(&[])).map_err(Call::Err)?)
            }
            Func::Urlquery => owned(gofmt::url_query_escape(&eval_args(vals)?)),
            Func::Html => owned(gofmt::html_escape(&eval_args(vals)?)),
            Func::Js => owned(gofmt::js_escape(&eval_args(vals)?)),
        })
    }
}

fn len_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

pub(super) enum Call {
    Err(String),
    DoNotSet,
}

impl From<String> for Call {
    fn from(s: String) -> Self {
        Call::Err(s)
    }
}

fn string_param<'v>(v: &'v Val<'_>) -> Result<Cow<'v, str>, Call> {
    match v {
        Val::Str(s) => Ok(Cow::Borrowed(s.as_ref())),
        Val::NoValue => Err(Call::Err("invalid value; expected string".into())),
        other => Err(Call::Err(format!(
            "wrong type for value; expected string; got {}",
            other.type_name()
        ))),
    }
}

/// text/template's `evalArgs`: a lone string as-is, else `fmt.Sprint` with
/// missing values printed as `<no value>`.
fn eval_args(vals: &[Val<'_>]) -> Result<String, Call> {
    if let [Val::Str(s)] = vals {
        return Ok(s.to_string());
    }
    let fixed: Vec<Val<'_>> = vals
        .iter()
        .map(|v| {
            if v.is_nil() {
                Val::Str(Cow::Borrowed("<no value>"))
            } else {
                v.clone()
            }
        })
        .collect();
    Ok(gofmt::sprint(&fixed)?)
}

/// Numeric comparison across Go's int, uint and float64 kinds.
fn num_cmp(a: &Val<'_>, b: &Val<'_>) -> Option<Ordering> {
    fn as_i128(v: &Val<'_>) -> Option<i128> {
        match v {
            Val::Int(i) => Some(i128::from(*i)),
            Val::Uint(u) => Some(i128::from(*u)),
            _ => None,
        }
    }
    fn as_f64(v: &Val<'_>) -> Option<f64> {
        match v {
            Val::Float(f) => Some(*f),
            #[allow(clippy::cast_precision_loss)]
            Val::Int(i) => Some(*i as f64),
            #[allow(clippy::cast_precision_loss)]
            Val::Uint(u) => Some(*u as f64),
            _ => None,
        }
    }
    if let (Some(x), Some(y)) = (as_i128(a), as_i128(b)) {
        return Some(x.cmp(&y));
    }
    as_f64(a)?.partial_cmp(&as_f64(b)?)
}

fn is_number(v: &Val<'_>) -> bool {
    matches!(v, Val::Int(_) | Val::Uint(_) | Val::Float(_))
}

/// Go's `eq` for one pair (numbers compare by value across int and float).
fn go_eq(a: &Val<'_>, b: &Val<'_>) -> Result<bool, Call> {
    match (a, b) {
        (x, y) if x.is_nil() || y.is_nil() => Ok(x.is_nil() && y.is_nil()),
        (Val::Bool(x), Val::Bool(y)) => Ok(x == y),
        (Val::Str(x), Val::Str(y)) => Ok(x == y),
        (x, y) if is_number(x) && is_number(y) => Ok(num_cmp(x, y) == Some(Ordering::Equal)),
        (Val::Arr(_), Val::Arr(_)) | (Val::Map(_), Val::Map(_)) | (Val::Headers, Val::Headers) => {
            Err(Call::Err(format!("non-comparable type {}", a.type_name())))
        }
        _ => Err(Call::Err("incompatible types for comparison".into())),
    }
}

/// Go's `lt`.
fn go_lt(a: &Val<'_>, b: &Val<'_>) -> Result<bool, Call> {
    let basic = |v: &Val<'_>| matches!(v, Val::Str(_)) || is_number(v);
    if !basic(a) || !basic(b) {
        return Err(Call::Err("invalid type for comparison".into()));
    }
    match (a, b) {
        (Val::Str(x), Val::Str(y)) => Ok(x.as_bytes() < y.as_bytes()),
        (x, y) if is_number(x) && is_number(y) => Ok(num_cmp(x, y) == Some(Ordering::Less)),
        _ => Err(Call::Err("incompatible types for comparison".into())),
    }
}

/// Go's `index`.
fn go_index<'a>(item: Val<'a>, indexes: &[Val<'a>]) -> Result<Val<'a>, Call> {
    if item.is_nil() {
        return Err(Call::Err("index of untyped nil".into()));
    }
    let mut item = item;
    for ix in indexes {
        item = match item {
            Val::Nil | Val::NoValue => return Err(Call::Err("index of nil pointer".into())),
            Val::Arr(_) | Val::Str(_) => {
                let len = match &item {
                    Val::Arr(a) => a.len(),
                    Val::Str(s) => s.len(),
                    _ => 0,
                };
                let x: i128 = match ix {
                    Val::Int(i) => i128::from(*i),
                    Val::Uint(u) => i128::from(*u),
                    Val::Nil | Val::NoValue => {
                        return Err(Call::Err("cannot index slice/array with nil".into()))
                    }
                    other => {
                        return Err(Call::Err(format!(
                            "cannot index slice/array with type {}",
                            other.type_name()
                        )))
                    }
                };
                let Some(i) = usize::try_from(x).ok().filter(|i| *i < len) else {
                    return Err(Call::Err(format!("index out of range: {x}")));
                };
                match item {
                    Val::Arr(a) => a.get(i).map_or(Val::NoValue, Val::from_json),
                    Val::Str(s) => Val::Int(s.as_bytes().get(i).map_or(0, |b| i64::from(*b))),
                    _ => Val::NoValue,
                }
            }
            Val::Map(m) => match ix {
                Val::Str(k) => m.get(k.as_ref()).map_or(Val::Nil, Val::from_json),
                Val::Nil | Val::NoValue => {
                    return Err(Call::Err("value is nil; should be of type string".into()))
                }
                other => {
                    return Err(Call::Err(format!(
                        "value has type {}; should be string",
                        other.type_name()
                    )))
                }
            },
            other => {
                return Err(Call::Err(format!(
                    "can't index item of type {}",
                    other.type_name()
                )))
            }
        };
    }
    Ok(item)
}
