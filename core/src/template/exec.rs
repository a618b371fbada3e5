//! Template execution (after Go's `text/template/exec.go` and `funcs.go`).

use super::escape;
use super::funcs::{go_eq, go_index, go_lt, go_slice, FuncError};
use super::gofmt;
use super::json;
use super::parse::{Arg, ArgKind, Cmd, Control, Defines, Func, Node, Pipe};
use super::value::{
    canonical_header_key, header_map, map_len, shows_headers, sorted_entries, Entry, HeaderLookup,
    HeaderMap, TemplateError, Val, HEADERS_KEY, JSON_FIELDS_KEY, MAX_OUTPUT,
};
use std::borrow::Cow;

/// `{{template}}` calls nested deeper than this are an error.
pub(super) const MAX_TEMPLATE_DEPTH: usize = 100;
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
    headers: &'a dyn HeaderLookup,
    defines: &'a Defines,
    /// `.httpRequestHeader` as Go's `http.Header`, built when first needed.
    header_map: Option<HeaderMap<'a>>,
    pub(super) out: String,
    vars: Vec<(&'a str, Val<'a>)>,
    steps: u32,
    template_depth: usize,
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
    pub(super) fn new(
        src: &'a str,
        root: Val<'a>,
        headers: &'a dyn HeaderLookup,
        defines: &'a Defines,
    ) -> Self {
        State {
            src,
            headers,
            defines,
            header_map: None,
            out: String::new(),
            vars: vec![("$", root)],
            steps: 0,
            template_depth: 0,
        }
    }

    /// `.httpRequestHeader` as `http.Header`.
    fn headers_map(&mut self) -> HeaderMap<'a> {
        if let Some(h) = &self.header_map {
            return h.clone();
        }
        let h = header_map(self.headers.header_pairs());
        self.header_map = Some(h.clone());
        h
    }

    /// The header map when one of `vals` shows it (the root map, or the
    /// headers themselves), for printing and encoding.
    fn headers_for(&mut self, vals: &[Val<'a>]) -> Option<HeaderMap<'a>> {
        if vals
            .iter()
            .any(|v| matches!(v, Val::Map(_, true) | Val::Headers))
        {
            Some(self.headers_map())
        } else {
            None
        }
    }

    /// A value as functions see it: `.httpRequestHeader` read into a map.
    fn settle(&mut self, v: Val<'a>) -> Val<'a> {
        match v {
            Val::Headers => Val::HeaderMap(self.headers_map()),
            other => other,
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
                Node::Template(t) => self.walk_template(dot, &t.0, t.1.as_ref())?,
            }
        }
        Ok(())
    }

    /// `{{template "name" pipeline}}`: the defined template with the
    /// pipeline's value as its dot and `$`.
    fn walk_template(&mut self, dot: &Val<'a>, name: &str, pipe: Option<&'a Pipe>) -> R<()> {
        let Some((_, body)) = self.defines.iter().find(|(n, _)| n == name) else {
            let msg = format!("template: no such template {name:?}");
            return Err(Flow::Err(TemplateError { message: msg }));
        };
        let new_dot = match pipe {
            Some(p) => {
                let mark = self.vars.len();
                let v = self.eval_pipeline(dot, p)?;
                self.vars.truncate(mark);
                v
            }
            None => Val::NoValue,
        };
        if self.template_depth >= MAX_TEMPLATE_DEPTH {
            return Err(Flow::Err(TemplateError {
                message: format!(
                    "template: {name:?}: templates nested deeper than {MAX_TEMPLATE_DEPTH}"
                ),
            }));
        }
        self.template_depth = self.template_depth.saturating_add(1);
        let saved = std::mem::replace(&mut self.vars, vec![("$", new_dot.clone())]);
        let r = self.walk(&new_dot, body);
        self.vars = saved;
        self.template_depth = self.template_depth.saturating_sub(1);
        r
    }

    fn print_value(&mut self, v: &Val<'a>, pipe: &Pipe) -> R<()> {
        match v {
            Val::NoValue | Val::Nil => self.write("<no value>"),
            Val::Str(s) => self.write(s),
            // Go's %v of a float64 is strconv's shortest 'g' (no flags).
            Val::Float(f) => self.write(&super::strconv::format_float(*f, 'g', -1)),
            Val::Bool(b) => self.write(if *b { "true" } else { "false" }),
            other => {
                let mut s = String::new();
                let hdr = self.headers_for(std::slice::from_ref(other));
                if let Err(e) = gofmt::sprint_value(&mut s, other, hdr.as_ref()) {
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
            Val::Map(m, root) => {
                for (k, e) in sorted_entries(m, root) {
                    ran = true;
                    let key = Val::Str(Cow::Borrowed(k));
                    let elem = match e {
                        Entry::Json(j) => Val::from_json(j),
                        Entry::Headers => Val::HeaderMap(self.headers_map()),
                    };
                    if !self.range_iteration(c, mark, key, elem)? {
                        break;
                    }
                }
            }
            Val::HeaderMap(h) => {
                for (k, values) in h.iter() {
                    ran = true;
                    let key = Val::Str(Cow::Owned(k.clone()));
                    let elem = Val::Strings(Some(values.clone()));
                    if !self.range_iteration(c, mark, key, elem)? {
                        break;
                    }
                }
            }
            Val::Strings(s) => {
                for (i, e) in s.iter().flatten().enumerate() {
                    ran = true;
                    let idx = Val::Int(i64::try_from(i).unwrap_or(i64::MAX));
                    if !self.range_iteration(c, mark, idx, Val::Str(Cow::Borrowed(e)))? {
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
                let _ = gofmt::sprint_value(&mut s, &other, None);
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
        let v = self.eval_field(dot, last, recv, cmd, args, final_)?;
        Ok(self.settle(v))
    }

    /// The one string argument of a header method.
    fn string_arg(
        &mut self,
        dot: &Val<'a>,
        method: &str,
        cmd: &'a Cmd,
        args: &'a [Arg],
        final_: Option<Val<'a>>,
    ) -> R<Cow<'a, str>> {
        let n = args.len().saturating_add(usize::from(final_.is_some()));
        if n != 1 {
            return self.fail(
                cmd,
                format!("wrong number of args for {method}: want 1 got {n}"),
            );
        }
        let key = match (args.first(), final_) {
            (Some(a), _) => self.eval_arg(dot, a, cmd)?,
            (None, Some(f)) => f,
            (None, None) => Val::NoValue,
        };
        match key {
            Val::Str(k) => Ok(k),
            Val::NoValue | Val::Nil => self.fail(cmd, "invalid value; expected string"),
            other => self.fail(
                cmd,
                format!(
                    "wrong type for value; expected string; got {}",
                    other.type_name()
                ),
            ),
        }
    }

    /// A field or method of Go's `http.Header`.
    fn header_field(
        &mut self,
        dot: &Val<'a>,
        name: &str,
        cmd: &'a Cmd,
        args: &'a [Arg],
        final_: Option<Val<'a>>,
    ) -> R<Val<'a>> {
        let has_args = !args.is_empty() || final_.is_some();
        match name {
            "Get" => {
                let key = self.string_arg(dot, name, cmd, args, final_)?;
                // The canonical key's first value: for a token name, the
                // first value of the name in any case.
                let headers = self.headers;
                Ok(Val::Str(Cow::Borrowed(
                    headers.get_header(&key).unwrap_or(""),
                )))
            }
            "Values" => {
                let key = self.string_arg(dot, name, cmd, args, final_)?;
                let canonical = canonical_header_key(&key).into_owned();
                let h = self.headers_map();
                Ok(Val::Strings(
                    h.iter()
                        .find(|(k, _)| *k == canonical)
                        .map(|(_, v)| v.clone()),
                ))
            }
            "Clone" => {
                if has_args {
                    return self.fail(cmd, "wrong number of args for Clone: want 0 got 1");
                }
                Ok(Val::HeaderMap(self.headers_map()))
            }
            "Add" | "Del" | "Set" | "Write" | "WriteSubset" => {
                self.fail(cmd, format!("can't call method {name} of http.Header"))
            }
            _ => {
                if has_args {
                    return self.fail(cmd, format!("{name} is not a method but has arguments"));
                }
                let h = self.headers_map();
                Ok(h.iter()
                    .find(|(k, _)| k == name)
                    .map_or(Val::NoValue, |(_, v)| Val::Strings(Some(v.clone()))))
            }
        }
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
            Val::Headers | Val::HeaderMap(_) => self.header_field(dot, name, cmd, args, final_),
            Val::Map(m, root) => {
                if root && name == HEADERS_KEY && !m.contains_key(name) {
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
        let v = match &arg.kind {
            ArgKind::Dot => dot.clone(),
            ArgKind::Nil => Val::Nil,
            ArgKind::Bool(b) => Val::Bool(*b),
            ArgKind::Int(i) => Val::Int(*i),
            ArgKind::Float(f) => Val::Float(*f),
            ArgKind::Complex(re, im) => Val::Complex(*re, *im),
            ArgKind::Overflow => {
                let text = self.src.get(arg.pos..arg.end).unwrap_or("");
                return self.fail(cmd, format!("{text} overflows int"));
            }
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
        };
        Ok(self.settle(v))
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
            Func::And
            | Func::Or
            | Func::Eq
            | Func::Index
            | Func::Printf
            | Func::Slice
            | Func::Call => (1, true),
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

    fn builtin(&mut self, f: Func, vals: &[Val<'a>]) -> Result<Val<'a>, Call> {
        let nov = Val::NoValue;
        let arg = |i: usize| vals.get(i).unwrap_or(&nov);
        let owned = |s: String| Val::Str(Cow::Owned(s));
        let rest = vals.get(1..).unwrap_or(&[]);
        Ok(match f {
            Func::And | Func::Or => arg(0).clone(),
            Func::Not => Val::Bool(!arg(0).truth()),
            Func::Eq => {
                let a = arg(0);
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
            Func::Index => go_index(arg(0).clone(), rest)?,
            Func::Slice => go_slice(arg(0).clone(), rest)?,
            Func::Call => {
                return Err(Call::Err(match arg(0) {
                    v if v.is_nil() => "call of nil".to_string(),
                    v => format!("non-function of type {}", v.type_name()),
                }))
            }
            Func::Len => Val::Int(match arg(0) {
                Val::Str(s) => len_i64(s.len()),
                Val::Arr(a) => len_i64(a.len()),
                Val::Map(m, root) => len_i64(map_len(m, *root)),
                Val::HeaderMap(h) => len_i64(h.len()),
                Val::Strings(s) => len_i64(s.as_ref().map_or(0, Vec::len)),
                Val::NoValue | Val::Nil => return Err(Call::Err("len of nil pointer".into())),
                other => return Err(Call::Err(format!("len of type {}", other.type_name()))),
            }),
            Func::HasKey => {
                let key = string_param(arg(1))?;
                match arg(0) {
                    Val::Map(m, root) => Val::Bool(
                        m.contains_key(key.as_ref()) && key.as_ref() != JSON_FIELDS_KEY
                            || (shows_headers(m, *root) && key.as_ref() == HEADERS_KEY),
                    ),
                    Val::NoValue | Val::Nil => Val::Bool(false),
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
                let prefix = string_param(arg(0))?;
                let v = arg(1);
                let hdr = self.headers_for(std::slice::from_ref(v));
                owned(json::marshal_indent(v, &prefix, hdr.as_ref()).map_err(Call::Err)?)
            }
            Func::Print => {
                let hdr = self.headers_for(vals);
                owned(gofmt::sprint(vals, hdr.as_ref()).map_err(Call::Err)?)
            }
            Func::Println => {
                let hdr = self.headers_for(vals);
                owned(gofmt::sprintln(vals, hdr.as_ref()).map_err(Call::Err)?)
            }
            Func::Printf => {
                let format = string_param(arg(0))?;
                let hdr = self.headers_for(rest);
                owned(gofmt::sprintf(&format, rest, hdr.as_ref()).map_err(Call::Err)?)
            }
            Func::Urlquery => owned(escape::url_query_escape(&self.eval_args(vals)?)),
            Func::Html => owned(escape::html_escape(&self.eval_args(vals)?)),
            Func::Js => owned(escape::js_escape(&self.eval_args(vals)?)),
        })
    }

    /// text/template's `evalArgs`: a lone string as-is, else `fmt.Sprint` with
    /// missing values printed as `<no value>`.
    fn eval_args(&mut self, vals: &[Val<'a>]) -> Result<String, Call> {
        if let [Val::Str(s)] = vals {
            return Ok(s.to_string());
        }
        let fixed: Vec<Val<'a>> = vals
            .iter()
            .map(|v| {
                if v.is_nil() {
                    Val::Str(Cow::Borrowed("<no value>"))
                } else {
                    v.clone()
                }
            })
            .collect();
        let hdr = self.headers_for(&fixed);
        Ok(gofmt::sprint(&fixed, hdr.as_ref())?)
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

impl From<FuncError> for Call {
    fn from(e: FuncError) -> Self {
        Call::Err(e.0)
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
