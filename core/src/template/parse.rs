//! Parser for the Go `text/template` subset (after Go's `text/template/parse/parse.go`).

use super::lex::{lex, Kw, Tok, Token};
use super::literal::{
    go_parse_float, go_parse_int, go_parse_uint, unquote, unquote_char, UnquotedChar,
};

/// Maximum nesting of control structures and parentheses.
pub(super) const MAX_PARSE_DEPTH: usize = 100;

#[derive(Debug, Clone)]
pub(super) enum Node {
    Text(String),
    Action(Pipe),
    If(Box<Control>),
    Range(Box<Control>),
    With(Box<Control>),
    Break,
    Continue,
    /// `{{template "name" pipeline}}` (and the use half of `block`).
    Template(Box<(String, Option<Pipe>)>),
}

/// The templates a text defines (`define`, `block`), by name.
pub(super) type Defines = Vec<(String, Vec<Node>)>;

#[derive(Debug, Clone)]
pub(super) struct Control {
    pub pipe: Pipe,
    pub list: Vec<Node>,
    pub else_list: Option<Vec<Node>>,
}

#[derive(Debug, Clone)]
pub(super) struct Pipe {
    pub decl: Vec<String>,
    pub is_assign: bool,
    pub cmds: Vec<Cmd>,
}

#[derive(Debug, Clone)]
pub(super) struct Cmd {
    /// Source span, for error messages.
    pub pos: usize,
    pub end: usize,
    pub args: Vec<Arg>,
}

#[derive(Debug, Clone)]
pub(super) struct Arg {
    pub pos: usize,
    pub end: usize,
    pub kind: ArgKind,
}

#[derive(Debug, Clone)]
pub(super) enum ArgKind {
    Dot,
    Nil,
    Bool(bool),
    /// A number constant as Go's `idealConstant` types it: `int`,
    Int(i64),
    /// `float64`,
    Float(f64),
    /// `complex128`,
    Complex(f64, f64),
    /// or an integer too large for `int` (an error when evaluated).
    Overflow,
    Str(String),
    /// `.a.b.c`
    Field(Vec<String>),
    /// `$x.a.b` (name with the dollar, then fields)
    Var(String, Vec<String>),
    /// `(pipe).a.b`
    Chain(Box<Arg>, Vec<String>),
    Func(Func),
    Pipe(Box<Pipe>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Func {
    And,
    Or,
    Not,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Index,
    Len,
    HasKey,
    DoNotSet,
    Json,
    Print,
    Printf,
    Println,
    Urlquery,
    Html,
    Js,
    Slice,
    Call,
}

impl Func {
    fn lookup(name: &str) -> Option<Func> {
        Some(match name {
            "and" => Func::And,
            "or" => Func::Or,
            "not" => Func::Not,
            "eq" => Func::Eq,
            "ne" => Func::Ne,
            "lt" => Func::Lt,
            "le" => Func::Le,
            "gt" => Func::Gt,
            "ge" => Func::Ge,
            "index" => Func::Index,
            "len" => Func::Len,
            "hasKey" => Func::HasKey,
            "doNotSet" => Func::DoNotSet,
            "json" => Func::Json,
            "print" => Func::Print,
            "printf" => Func::Printf,
            "println" => Func::Println,
            "urlquery" => Func::Urlquery,
            "html" => Func::Html,
            "js" => Func::Js,
            "slice" => Func::Slice,
            "call" => Func::Call,
            _ => return None,
        })
    }

    pub(super) fn name(self) -> &'static str {
        match self {
            Func::And => "and",
            Func::Or => "or",
            Func::Not => "not",
            Func::Eq => "eq",
            Func::Ne => "ne",
            Func::Lt => "lt",
            Func::Le => "le",
            Func::Gt => "gt",
            Func::Ge => "ge",
            Func::Index => "index",
            Func::Len => "len",
            Func::HasKey => "hasKey",
            Func::DoNotSet => "doNotSet",
            Func::Json => "json",
            Func::Print => "print",
            Func::Printf => "printf",
            Func::Println => "println",
            Func::Urlquery => "urlquery",
            Func::Html => "html",
            Func::Js => "js",
            Func::Slice => "slice",
            Func::Call => "call",
        }
    }
}

/// A parse error at a byte offset.
pub(super) struct ParseError {
    pub pos: usize,
    pub msg: String,
}

type PResult<T> = Result<T, ParseError>;

/// What ended an item list.
enum ListEnd {
    Eof,
    End,
    Else,
}

struct Parser<'s> {
    src: &'s str,
    toks: Vec<Token>,
    i: usize,
    vars: Vec<String>,
    depth: usize,
    range_depth: usize,
    /// Whether the list being parsed is the text's top level (where
    /// `define` may appear).
    top: bool,
    defines: Defines,
}

/// Parses a template text: its nodes and the templates it defines.
pub(super) fn parse(src: &str) -> PResult<(Vec<Node>, Defines)> {
    let toks = lex(src);
    let mut p = Parser {
        src,
        toks,
        i: 0,
        vars: vec!["$".to_string()],
        depth: 0,
        range_depth: 0,
        top: true,
        defines: Vec::new(),
    };
    let (list, end) = p.item_list()?;
    match end {
        ListEnd::Eof => Ok((list, p.defines)),
        ListEnd::End => p.err_at_prev("unexpected {{end}}"),
        ListEnd::Else => p.err_at_prev("unexpected {{else}}"),
    }
}

/// Go's `IsEmptyTree`: only spaces and comments.
fn is_empty_tree(nodes: &[Node]) -> bool {
    nodes
        .iter()
        .all(|n| matches!(n, Node::Text(t) if t.chars().all(|c| c.is_ascii_whitespace())))
}

impl<'s> Parser<'s> {
    fn eof_token(&self) -> Token {
        Token {
            tok: Tok::Eof,
            pos: self.src.len(),
            end: self.src.len(),
        }
    }

    fn next(&mut self) -> Token {
        let t = self
            .toks
            .get(self.i)
            .cloned()
            .unwrap_or_else(|| self.eof_token());
        self.i = self.i.saturating_add(1);
        t
    }

    fn backup(&mut self) {
        self.i = self.i.saturating_sub(1);
    }

    fn peek(&self) -> Token {
        self.toks
            .get(self.i)
            .cloned()
            .unwrap_or_else(|| self.eof_token())
    }

    fn next_non_space(&mut self) -> Token {
        loop {
            let t = self.next();
            if t.tok != Tok::Space {
                return t;
            }
        }
    }

    fn peek_non_space(&mut self) -> Token {
        let t = self.next_non_space();
        self.backup();
        t
    }

    fn prev_pos(&self) -> usize {
        self.i
            .checked_sub(1)
            .and_then(|j| self.toks.get(j))
            .map_or(self.src.len(), |t| t.pos)
    }

    fn prev_end(&self) -> usize {
        self.i
            .checked_sub(1)
            .and_then(|j| self.toks.get(j))
            .map_or(self.src.len(), |t| t.end)
    }

    fn err_at<T>(&self, pos: usize, msg: impl Into<String>) -> PResult<T> {
        Err(ParseError {
            pos,
            msg: msg.into(),
        })
    }

    fn err_at_prev<T>(&self, msg: impl Into<String>) -> PResult<T> {
        self.err_at(self.prev_pos(), msg)
    }

    fn describe(&self, t: &Token) -> String {
        match &t.tok {
            Tok::Eof => "EOF".to_string(),
            Tok::Keyword(k) => format!("<{}>", k.name()),
            Tok::Space => "space".to_string(),
            _ => {
                let text = self.src.get(t.pos..t.end).unwrap_or("");
                if text.chars().count() > 10 {
                    let short: String = text.chars().take(10).collect();
                    format!("{}...", super::strconv::quote(&short))
                } else {
                    super::strconv::quote(text)
                }
            }
        }
    }

    fn unexpected<T>(&self, t: &Token, context: &str) -> PResult<T> {
        if let Tok::Error(msg) = &t.tok {
            return self.err_at(t.pos, msg.clone());
        }
        self.err_at(
            t.pos,
            format!("unexpected {} in {}", self.describe(t), context),
        )
    }

    fn enter(&mut self, pos: usize) -> PResult<()> {
        self.depth = self.depth.saturating_add(1);
        if self.depth > MAX_PARSE_DEPTH {
            return self.err_at(
                pos,
                format!("template nesting exceeds {MAX_PARSE_DEPTH} levels"),
            );
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }

    fn item_list(&mut self) -> PResult<(Vec<Node>, ListEnd)> {
        let mut list = Vec::new();
        loop {
            let t = self.next();
            match t.tok {
                Tok::Eof => return Ok((list, ListEnd::Eof)),
                Tok::Text(s) => list.push(Node::Text(s)),
                Tok::LeftDelim => match self.action()? {
                    Action::Node(n) => list.push(n),
                    Action::End => return Ok((list, ListEnd::End)),
                    Action::Else => return Ok((list, ListEnd::Else)),
                },
                _ => return self.unexpected(&t, "input"),
            }
        }
    }

    fn expect_right_delim(&mut self, context: &str) -> PResult<()> {
        let t = self.next_non_space();
        if t.tok != Tok::RightDelim {
            return self.unexpected(&t, context);
        }
        Ok(())
    }

    fn action(&mut self) -> PResult<Action> {
        let t = self.next_non_space();
        if let Tok::Keyword(k) = t.tok {
            return match k {
                Kw::End => {
                    self.expect_right_delim("end")?;
                    Ok(Action::End)
                }
                Kw::Else => {
                    // "else if" / "else with": leave the keyword for the control.
                    let p = self.peek_non_space();
                    if !matches!(p.tok, Tok::Keyword(Kw::If) | Tok::Keyword(Kw::With)) {
                        self.expect_right_delim("else")?;
                    }
                    Ok(Action::Else)
                }
                Kw::If | Kw::Range | Kw::With => Ok(Action::Node(self.control(k, t.pos)?)),
                Kw::Break | Kw::Continue => {
                    if self.range_depth == 0 {
                        return self
                            .err_at(t.pos, format!("{{{{{}}}}} outside {{{{range}}}}", k.name()));
                    }
                    self.expect_right_delim(k.name())?;
                    Ok(Action::Node(if k == Kw::Break {
                        Node::Break
                    } else {
                        Node::Continue
                    }))
                }
                Kw::Define => {
                    if !self.top {
                        return self.unexpected(&t, "command");
                    }
                    let name = self.template_name("define clause")?;
                    self.expect_right_delim("define clause")?;
                    let body = self.definition_body(t.pos)?;
                    self.add_define(name, body, t.pos)?;
                    Ok(Action::Node(Node::Text(String::new())))
                }
                Kw::Template => {
                    let name = self.template_name("template clause")?;
                    let p = self.peek_non_space();
                    let pipe = if p.tok == Tok::RightDelim {
                        self.next_non_space();
                        None
                    } else {
                        Some(self.pipeline("template clause", true)?)
                    };
                    Ok(Action::Node(Node::Template(Box::new((name, pipe)))))
                }
                Kw::Block => {
                    let name = self.template_name("block clause")?;
                    let pipe = self.pipeline("block clause", true)?;
                    let body = self.definition_body(t.pos)?;
                    self.add_define(name.clone(), body, t.pos)?;
                    Ok(Action::Node(Node::Template(Box::new((name, Some(pipe))))))
                }
            };
        }
        self.backup();
        let pipe = self.pipeline("command", true)?;
        Ok(Action::Node(Node::Action(pipe)))
    }

    /// The quoted name after `define`, `template` or `block`.
    fn template_name(&mut self, context: &str) -> PResult<String> {
        let t = self.next_non_space();
        let text = self.src.get(t.pos..t.end).unwrap_or("");
        match t.tok {
            Tok::Str => match unquote(text) {
                Some(s) => Ok(s),
                None => self.err_at(t.pos, "invalid syntax"),
            },
            Tok::RawStr => Ok(text
                .strip_prefix('`')
                .and_then(|s| s.strip_suffix('`'))
                .unwrap_or("")
                .replace('\r', "")),
            _ => self.unexpected(&t, context),
        }
    }

    /// The body of a `define` or `block` through its `{{end}}`, parsed as a
    /// template of its own (only `$` is declared).
    fn definition_body(&mut self, pos: usize) -> PResult<Vec<Node>> {
        self.enter(pos)?;
        let vars = std::mem::replace(&mut self.vars, vec!["$".to_string()]);
        let top = std::mem::replace(&mut self.top, false);
        let range_depth = std::mem::replace(&mut self.range_depth, 0);
        let (list, end) = self.item_list()?;
        self.vars = vars;
        self.top = top;
        self.range_depth = range_depth;
        self.leave();
        match end {
            ListEnd::End => Ok(list),
            ListEnd::Eof => self.err_at(self.src.len(), "unexpected EOF"),
            ListEnd::Else => self.err_at_prev("unexpected {{else}}"),
        }
    }

    /// Go's `Tree.add`: a name defined twice with a body each time is an
    /// error; an empty body never replaces a full one.
    fn add_define(&mut self, name: String, body: Vec<Node>, pos: usize) -> PResult<()> {
        match self.defines.iter_mut().find(|(n, _)| *n == name) {
            None => self.defines.push((name, body)),
            Some((_, old)) => {
                if is_empty_tree(old) {
                    *old = body;
                } else if !is_empty_tree(&body) {
                    return self.err_at(
                        pos,
                        format!("template: multiple definition of template {name:?}"),
                    );
                }
            }
        }
        Ok(())
    }

    fn control(&mut self, kw: Kw, pos: usize) -> PResult<Node> {
        self.enter(pos)?;
        let vars_mark = self.vars.len();
        let context = kw.name();
        let pipe = self.pipeline(context, true)?;
        if kw == Kw::Range {
            self.range_depth = self.range_depth.saturating_add(1);
        }
        let top = std::mem::replace(&mut self.top, false);
        let (list, end) = self.item_list()?;
        if kw == Kw::Range {
            self.range_depth = self.range_depth.saturating_sub(1);
        }
        let else_list = match end {
            ListEnd::Eof => return self.err_at(self.src.len(), "unexpected EOF"),
            ListEnd::End => None,
            ListEnd::Else => {
                let p = self.peek_non_space();
                match p.tok {
                    Tok::Keyword(k @ (Kw::If | Kw::With)) if k == kw => {
                        self.next_non_space();
                        Some(vec![self.control(k, p.pos)?])
                    }
                    Tok::Keyword(k @ (Kw::If | Kw::With)) => {
                        return self.err_at(p.pos, format!("unexpected <{}> in else", k.name()))
                    }
                    _ => {
                        let (else_list, end) = self.item_list()?;
                        match end {
                            ListEnd::End => {}
                            ListEnd::Eof => return self.err_at(self.src.len(), "unexpected EOF"),
                            ListEnd::Else => {
                                return self.err_at_prev("expected end; found {{else}}")
                            }
                        }
                        Some(else_list)
                    }
                }
            }
        };
        self.top = top;
        self.vars.truncate(vars_mark);
        self.leave();
        let c = Box::new(Control {
            pipe,
            list,
            else_list,
        });
        Ok(match kw {
            Kw::Range => Node::Range(c),
            Kw::With => Node::With(c),
            _ => Node::If(c),
        })
    }

    /// Parses a pipeline through its end token: the right delimiter (`in_action`)
    /// or a right paren.
    fn pipeline(&mut self, context: &str, in_action: bool) -> PResult<Pipe> {
        let mut pipe = Pipe {
            decl: Vec::new(),
            is_assign: false,
            cmds: Vec::new(),
        };
        // Declarations.
        loop {
            let v = self.peek_non_space();
            let Tok::Var(name) = v.tok else { break };
            let save = self.i;
            self.next_non_space();
            let after = self.peek_non_space();
            match after.tok {
                Tok::Declare | Tok::Assign => {
                    self.next_non_space();
                    pipe.is_assign = after.tok == Tok::Assign;
                    if pipe.is_assign && !self.vars.contains(&name) {
                        return self.err_at(v.pos, format!("undefined variable {:?}", name));
                    }
                    pipe.decl.push(name.clone());
                    self.vars.push(name);
                    break;
                }
                Tok::Char(',') => {
                    self.next_non_space();
                    pipe.decl.push(name.clone());
                    self.vars.push(name);
                    if context == "range" && pipe.decl.len() < 2 {
                        if matches!(self.peek_non_space().tok, Tok::Var(_)) {
                            continue;
                        }
                        return self.err_at(v.pos, "range can only initialize variables");
                    }
                    return self.err_at(v.pos, format!("too many declarations in {context}"));
                }
                _ => {
                    self.i = save;
                    break;
                }
            }
        }
        let start = self.peek_non_space().pos;
        let mut expect_cmd = false;
        loop {
            let t = self.next_non_space();
            let is_end = if in_action {
                t.tok == Tok::RightDelim
            } else {
                t.tok == Tok::RParen
            };
            if is_end {
                // A trailing `|` is accepted, as Go does.
                let _ = expect_cmd;
                if pipe.cmds.is_empty() {
                    return self.err_at(start, format!("missing value for {context}"));
                }
                for (i, c) in pipe.cmds.iter().enumerate().skip(1) {
                    if let Some(first) = c.args.first() {
                        if matches!(
                            first.kind,
                            ArgKind::Bool(_)
                                | ArgKind::Dot
                                | ArgKind::Nil
                                | ArgKind::Int(_)
                                | ArgKind::Float(_)
                                | ArgKind::Complex(..)
                                | ArgKind::Overflow
                                | ArgKind::Str(_)
                        ) {
                            return self.err_at(
                                c.pos,
                                format!(
                                    "non executable command in pipeline stage {}",
                                    i.saturating_add(1)
                                ),
                            );
                        }
                    }
                }
                return Ok(pipe);
            }
            match t.tok {
                Tok::Bool(_)
                | Tok::CharConst
                | Tok::Dot
                | Tok::Field(_)
                | Tok::Ident(_)
                | Tok::Number
                | Tok::Nil
                | Tok::RawStr
                | Tok::Str
                | Tok::Var(_)
                | Tok::LParen => {
                    self.backup();
                    let (cmd, piped) = self.command()?;
                    pipe.cmds.push(cmd);
                    expect_cmd = piped;
                }
                _ => return self.unexpected(&t, context),
            }
        }
    }

    /// Parses one command; returns it and whether it ended with a `|`.
    fn command(&mut self) -> PResult<(Cmd, bool)> {
        let pos = self.peek_non_space().pos;
        let mut args = Vec::new();
        let mut end = pos;
        loop {
            self.peek_non_space();
            if let Some(a) = self.operand()? {
                end = a.end;
                args.push(a);
            }
            let t = self.next();
            match t.tok {
                Tok::Space => continue,
                Tok::RightDelim | Tok::RParen => {
                    self.backup();
                    if args.is_empty() {
                        return self.err_at(pos, "empty command");
                    }
                    return Ok((Cmd { pos, end, args }, false));
                }
                Tok::Pipe => {
                    if args.is_empty() {
                        return self.err_at(pos, "empty command");
                    }
                    return Ok((Cmd { pos, end, args }, true));
                }
                _ => return self.unexpected(&t, "operand"),
            }
        }
    }

    fn operand(&mut self) -> PResult<Option<Arg>> {
        let Some(term) = self.term()? else {
            return Ok(None);
        };
        let mut fields = Vec::new();
        while let Tok::Field(f) = self.peek().tok {
            self.next();
            fields.push(f);
        }
        if fields.is_empty() {
            return Ok(Some(term));
        }
        let end = self.prev_end();
        let pos = term.pos;
        let kind = match term.kind {
            ArgKind::Field(mut f) => {
                f.extend(fields);
                ArgKind::Field(f)
            }
            ArgKind::Var(name, mut f) => {
                f.extend(fields);
                ArgKind::Var(name, f)
            }
            ArgKind::Bool(_)
            | ArgKind::Str(_)
            | ArgKind::Int(_)
            | ArgKind::Float(_)
            | ArgKind::Complex(..)
            | ArgKind::Overflow
            | ArgKind::Nil
            | ArgKind::Dot => {
                let text = self.src.get(term.pos..term.end).unwrap_or("");
                return self.err_at(
                    term.pos,
                    format!("unexpected . after term {}", super::strconv::quote(text)),
                );
            }
            other => ArgKind::Chain(
                Box::new(Arg {
                    pos: term.pos,
                    end: term.end,
                    kind: other,
                }),
                fields,
            ),
        };
        Ok(Some(Arg { pos, end, kind }))
    }

    fn term(&mut self) -> PResult<Option<Arg>> {
        let t = self.next_non_space();
        let text = self.src.get(t.pos..t.end).unwrap_or("");
        let kind = match t.tok {
            Tok::Ident(ref name) => match Func::lookup(name) {
                Some(f) => ArgKind::Func(f),
                None => return self.err_at(t.pos, format!("function {:?} not defined", name)),
            },
            Tok::Dot => ArgKind::Dot,
            Tok::Nil => ArgKind::Nil,
            Tok::Var(ref name) => {
                if !self.vars.iter().any(|v| v == name) {
                    return self.err_at(t.pos, format!("undefined variable {:?}", name));
                }
                ArgKind::Var(name.clone(), Vec::new())
            }
            Tok::Field(ref f) => ArgKind::Field(vec![f.clone()]),
            Tok::Bool(b) => ArgKind::Bool(b),
            Tok::Number | Tok::CharConst => self.number(text, t.pos)?,
            Tok::LParen => {
                self.enter(t.pos)?;
                let pipe = self.pipeline("parenthesized pipeline", false)?;
                self.leave();
                return Ok(Some(Arg {
                    pos: t.pos,
                    end: self.prev_end(),
                    kind: ArgKind::Pipe(Box::new(pipe)),
                }));
            }
            Tok::Str => match unquote(text) {
                Some(s) => ArgKind::Str(s),
                None => return self.err_at(t.pos, "invalid syntax"),
            },
            Tok::RawStr => {
                let inner = text
                    .strip_prefix('`')
                    .and_then(|s| s.strip_suffix('`'))
                    .unwrap_or("");
                ArgKind::Str(inner.replace('\r', ""))
            }
            _ => {
                self.backup();
                return Ok(None);
            }
        };
        Ok(Some(Arg {
            pos: t.pos,
            end: t.end,
            kind,
        }))
    }

    /// Go's `newNumber` (parse/node.go), then the type `idealConstant`
    /// (exec.go) gives the constant where nothing else decides it.
    fn number(&self, text: &str, pos: usize) -> PResult<ArgKind> {
        let illegal = || {
            self.err_at(
                pos,
                format!("illegal number syntax: {}", super::strconv::quote(text)),
            )
        };
        if let Some(inner) = text.strip_prefix('\'') {
            let mut chars = inner.chars().peekable();
            return match unquote_char(&mut chars, '\'') {
                Some(UnquotedChar::Char(c))
                    if chars.next() == Some('\'') && chars.next().is_none() =>
                {
                    Ok(ArgKind::Int(i64::from(u32::from(c))))
                }
                Some(UnquotedChar::Byte(b))
                    if chars.next() == Some('\'') && chars.next().is_none() =>
                {
                    Ok(ArgKind::Int(i64::from(b)))
                }
                _ => self.err_at(pos, format!("malformed character constant: {text}")),
            };
        }
        let complex = |re: f64, im: f64| -> ArgKind {
            // simplifyComplex: a zero imaginary part is still complex128
            // to idealConstant (IsComplex is checked first).
            ArgKind::Complex(re, im)
        };
        if text.ends_with('i') {
            let body = text.get(..text.len().saturating_sub(1)).unwrap_or("");
            // `1+2i`: split at the sign that is not an exponent's.
            let b = body.as_bytes();
            let mut split = None;
            for k in 1..b.len() {
                let c = b.get(k).copied().unwrap_or(0);
                let prev = b.get(k.saturating_sub(1)).copied().unwrap_or(0);
                let hex = body.starts_with("0x") || body.starts_with("0X");
                let exp_sign = matches!(prev, b'e' | b'E') && !hex || matches!(prev, b'p' | b'P');
                if (c == b'+' || c == b'-') && !exp_sign {
                    split = Some(k);
                }
            }
            return match split {
                Some(k) => {
                    let re = go_parse_float(body.get(..k).unwrap_or(""));
                    let im = go_parse_float(body.get(k..).unwrap_or(""));
                    match (re, im) {
                        (Some(re), Some(im)) => Ok(complex(re, im)),
                        _ => illegal(),
                    }
                }
                None => match go_parse_float(body) {
                    Some(im) => Ok(complex(0.0, im)),
                    None => illegal(),
                },
            };
        }
        let as_int = go_parse_int(text);
        let as_uint = go_parse_uint(text);
        let float_syntax = text.contains(['.', 'e', 'E', 'p', 'P']);
        let hex_int =
            (text.starts_with("0x") || text.starts_with("0X")) && !text.contains(['p', 'P']);
        if as_int.is_none() && as_uint.is_none() {
            let Some(f) = go_parse_float(text) else {
                return illegal();
            };
            if !float_syntax {
                return self.err_at(pos, format!("integer overflow: {:?}", text));
            }
            return Ok(ArgKind::Float(f));
        }
        // An integer-valued constant: float64 when written as a float.
        if float_syntax && !hex_int {
            return match go_parse_float(text) {
                Some(f) => Ok(ArgKind::Float(f)),
                None => illegal(),
            };
        }
        match as_int {
            Some(i) => Ok(ArgKind::Int(i)),
            None => Ok(ArgKind::Overflow),
        }
    }
}

enum Action {
    Node(Node),
    End,
    Else,
}
