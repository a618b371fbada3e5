//! Lexer for the Go `text/template` subset (after Go's `text/template/parse/lex.go`).
//!
//! The whole source is tokenised up front. Text between actions is emitted with the
//! `{{-` / `-}}` trimming already applied; comments are dropped.

/// One lexical item.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Tok {
    Text(String),
    LeftDelim,
    RightDelim,
    Space,
    /// `.name` (without the dot).
    Field(String),
    /// A bare identifier (function name).
    Ident(String),
    /// `$` or `$name` (with the dollar).
    Var(String),
    /// Quoted or raw string, source text including quotes.
    Str,
    RawStr,
    /// Number or character constant, source text.
    Number,
    CharConst,
    Bool(bool),
    Nil,
    Dot,
    Pipe,
    LParen,
    RParen,
    Declare,
    Assign,
    /// Any other printable ASCII character (`,` included).
    Char(char),
    Keyword(Kw),
    /// A lexing error; the parser reports it when it reaches it, as Go does.
    Error(String),
    Eof,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kw {
    If,
    Else,
    End,
    Range,
    With,
    Break,
    Continue,
    Define,
    Template,
    Block,
}

impl Kw {
    pub(super) fn name(self) -> &'static str {
        match self {
            Kw::If => "if",
            Kw::Else => "else",
            Kw::End => "end",
            Kw::Range => "range",
            Kw::With => "with",
            Kw::Break => "break",
            Kw::Continue => "continue",
            Kw::Define => "define",
            Kw::Template => "template",
            Kw::Block => "block",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(super) struct Token {
    pub tok: Tok,
    /// Byte offsets of the token in the source.
    pub pos: usize,
    pub end: usize,
}

/// A lexing error at a byte offset.
#[derive(Debug)]
struct LexError {
    pos: usize,
    msg: String,
}

fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

fn is_alnum(c: char) -> bool {
    c == '_' || c.is_alphanumeric()
}

struct Lexer<'s> {
    src: &'s str,
    pos: usize,
    toks: Vec<Token>,
    paren_depth: usize,
}

/// Tokenises `src`; a lexing error becomes a final `Tok::Error` token.
pub(super) fn lex(src: &str) -> Vec<Token> {
    let mut l = Lexer {
        src,
        pos: 0,
        toks: Vec::new(),
        paren_depth: 0,
    };
    if let Err(e) = l.run() {
        l.toks.push(Token {
            tok: Tok::Error(e.msg),
            pos: e.pos,
            end: e.pos,
        });
    }
    l.toks
}

impl<'s> Lexer<'s> {
    fn rest(&self) -> &'s str {
        self.src.get(self.pos..).unwrap_or("")
    }

    fn rest_at(&self, at: usize) -> &'s str {
        self.src.get(at..).unwrap_or("")
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos = self.pos.saturating_add(c.len_utf8());
        Some(c)
    }

    fn emit(&mut self, tok: Tok, start: usize) {
        self.toks.push(Token {
            tok,
            pos: start,
            end: self.pos,
        });
    }

    fn err<T>(&self, pos: usize, msg: impl Into<String>) -> Result<T, LexError> {
        Err(LexError {
            pos,
            msg: msg.into(),
        })
    }

    /// Is the input at `at` a right delimiter, possibly with a trim marker?
    /// Returns (length to consume, trim).
    fn right_delim_at(&self, at: usize) -> Option<(usize, bool)> {
        let r = self.rest_at(at);
        if r.starts_with("}}") {
            return Some((2, false));
        }
        let mut cs = r.chars();
        if let (Some(a), Some('-')) = (cs.next(), cs.next()) {
            if is_space(a) && cs.as_str().starts_with("}}") {
                return Some((a.len_utf8().saturating_add(3), true));
            }
        }
        None
    }

    fn run(&mut self) -> Result<(), LexError> {
        let mut trim_next = false;
        loop {
            let rest = self.rest();
            let found = rest.find("{{");
            let text_end = found.unwrap_or(rest.len());
            let mut text = rest.get(..text_end).unwrap_or("");
            let mut after_delim = text_end.saturating_add(2);
            let mut trim_left = false;
            if found.is_some() {
                let after = rest.get(after_delim..).unwrap_or("");
                let mut cs = after.chars();
                if let (Some('-'), Some(c)) = (cs.next(), cs.next()) {
                    if is_space(c) {
                        trim_left = true;
                        after_delim = after_delim.saturating_add(2);
                    }
                }
            }
            if trim_next {
                text = text.trim_start_matches(is_space);
            }
            if trim_left {
                text = text.trim_end_matches(is_space);
            }
            if !text.is_empty() {
                let start = self.pos;
                self.toks.push(Token {
                    tok: Tok::Text(text.to_string()),
                    pos: start,
                    end: start.saturating_add(text_end),
                });
            }
            let Some(idx) = found else {
                self.pos = self.src.len();
                self.emit(Tok::Eof, self.src.len());
                return Ok(());
            };
            let delim_pos = self.pos.saturating_add(idx);
            self.pos = self.pos.saturating_add(after_delim);
            // Comment?
            if self.rest().starts_with("/*") {
                let body_start = self.pos.saturating_add(2);
                let Some(close) = self.rest_at(body_start).find("*/") else {
                    return self.err(delim_pos, "unclosed comment");
                };
                let after = body_start.saturating_add(close).saturating_add(2);
                match self.right_delim_at(after) {
                    Some((n, trim)) => {
                        self.pos = after.saturating_add(n);
                        trim_next = trim;
                        continue;
                    }
                    None => return self.err(delim_pos, "comment ends before closing delimiter"),
                }
            }
            self.toks.push(Token {
                tok: Tok::LeftDelim,
                pos: delim_pos,
                end: self.pos,
            });
            trim_next = self.inside_action()?;
        }
    }

    /// Lexes the inside of an action through its right delimiter; returns whether
    /// the delimiter carried a trim marker.
    fn inside_action(&mut self) -> Result<bool, LexError> {
        self.paren_depth = 0;
        loop {
            if let Some((n, trim)) = self.right_delim_at(self.pos) {
                if self.paren_depth > 0 {
                    return self.err(self.pos, "unclosed left paren");
                }
                let start = self.pos;
                self.pos = self.pos.saturating_add(n);
                self.emit(Tok::RightDelim, start);
                return Ok(trim);
            }
            let start = self.pos;
            let Some(c) = self.bump() else {
                return self.err(start, "unclosed action");
            };
            match c {
                c if is_space(c) => {
                    while let Some(c) = self.peek() {
                        if !is_space(c) || self.right_delim_at(self.pos).is_some_and(|(_, t)| t) {
                            break;
                        }
                        self.bump();
                    }
                    self.emit(Tok::Space, start);
                }
                '=' => self.emit(Tok::Assign, start),
                ':' => {
                    if self.peek() != Some('=') {
                        return self.err(start, "expected :=");
                    }
                    self.bump();
                    self.emit(Tok::Declare, start);
                }
                '|' => self.emit(Tok::Pipe, start),
                '"' => self.quote(start)?,
                '`' => self.raw_quote(start)?,
                '\'' => self.char_const(start)?,
                '$' => {
                    self.alnum_run();
                    self.check_terminator()?;
                    let name = self.src.get(start..self.pos).unwrap_or("$").to_string();
                    self.emit(Tok::Var(name), start);
                }
                '.' => {
                    if self.peek().is_some_and(|c| c.is_ascii_digit()) {
                        self.pos = start;
                        self.number(start)?;
                    } else {
                        let name_start = self.pos;
                        self.alnum_run();
                        self.check_terminator()?;
                        if self.pos == name_start {
                            self.emit(Tok::Dot, start);
                        } else {
                            let name = self.src.get(name_start..self.pos).unwrap_or("").to_string();
                            self.emit(Tok::Field(name), start);
                        }
                    }
                }
                '+' | '-' | '0'..='9' => {
                    self.pos = start;
                    self.number(start)?;
                }
                c if is_alnum(c) => {
                    self.alnum_run();
                    self.check_terminator()?;
                    let word = self.src.get(start..self.pos).unwrap_or("");
                    let tok = match word {
                        "if" => Tok::Keyword(Kw::If),
                        "else" => Tok::Keyword(Kw::Else),
                        "end" => Tok::Keyword(Kw::End),
                        "range" => Tok::Keyword(Kw::Range),
                        "with" => Tok::Keyword(Kw::With),
                        "break" => Tok::Keyword(Kw::Break),
                        "continue" => Tok::Keyword(Kw::Continue),
                        "define" => Tok::Keyword(Kw::Define),
                        "template" => Tok::Keyword(Kw::Template),
                        "block" => Tok::Keyword(Kw::Block),
                        "true" => Tok::Bool(true),
                        "false" => Tok::Bool(false),
                        "nil" => Tok::Nil,
                        _ => Tok::Ident(word.to_string()),
                    };
                    self.emit(tok, start);
                }
                '(' => {
                    self.paren_depth = self.paren_depth.saturating_add(1);
                    self.emit(Tok::LParen, start);
                }
                ')' => {
                    if self.paren_depth == 0 {
                        return self.err(start, "unexpected right paren");
                    }
                    self.paren_depth = self.paren_depth.saturating_sub(1);
                    self.emit(Tok::RParen, start);
                }
                c if c.is_ascii() && !c.is_ascii_control() => self.emit(Tok::Char(c), start),
                c => {
                    return self.err(
                        start,
                        format!("unrecognized character in action: U+{:04X}", u32::from(c)),
                    )
                }
            }
        }
    }

    fn alnum_run(&mut self) {
        while let Some(c) = self.peek() {
            if !is_alnum(c) {
                break;
            }
            self.bump();
        }
    }

    fn check_terminator(&self) -> Result<(), LexError> {
        match self.peek() {
            None => Ok(()),
            Some(c) if is_space(c) || matches!(c, '.' | ',' | '|' | ':' | ')' | '(') => Ok(()),
            Some(_) if self.rest().starts_with("}}") => Ok(()),
            Some(c) => self.err(
                self.pos,
                format!("bad character U+{:04X} '{}'", u32::from(c), c),
            ),
        }
    }

    fn accept(&mut self, valid: &str) -> bool {
        match self.peek() {
            Some(c) if valid.contains(c) => {
                self.bump();
                true
            }
            _ => false,
        }
    }

    fn accept_run(&mut self, valid: &str) {
        while self.accept(valid) {}
    }

    /// Go's `scanNumber`: false when an alphanumeric follows.
    fn scan_number(&mut self) -> bool {
        self.accept("+-");
        let mut digits = "0123456789_";
        let mut decimal = true;
        let mut hex = false;
        if self.accept("0") {
            if self.accept("xX") {
                digits = "0123456789abcdefABCDEF_";
                decimal = false;
                hex = true;
            } else if self.accept("oO") {
                digits = "01234567_";
                decimal = false;
            } else if self.accept("bB") {
                digits = "01_";
                decimal = false;
            }
        }
        self.accept_run(digits);
        if self.accept(".") {
            self.accept_run(digits);
        }
        if decimal && self.accept("eE") {
            self.accept("+-");
            self.accept_run("0123456789_");
        }
        if hex && self.accept("pP") {
            self.accept("+-");
            self.accept_run("0123456789_");
        }
        self.accept("i");
        if self.peek().is_some_and(is_alnum) {
            self.bump();
            return false;
        }
        true
    }

    /// Go's `lexNumber`: a number, or a complex constant `1+2i`.
    fn number(&mut self, start: usize) -> Result<(), LexError> {
        let bad = |l: &Self| {
            let text = l.src.get(start..l.pos).unwrap_or("");
            l.err(
                start,
                format!("bad number syntax: {}", super::strconv::quote(text)),
            )
        };
        if !self.scan_number() {
            return bad(self);
        }
        if matches!(self.peek(), Some('+' | '-'))
            && (!self.scan_number() || !self.src.get(..self.pos).unwrap_or("").ends_with('i'))
        {
            return bad(self);
        }
        self.emit(Tok::Number, start);
        Ok(())
    }

    fn quote(&mut self, start: usize) -> Result<(), LexError> {
        loop {
            match self.bump() {
                Some('\\') => match self.bump() {
                    Some('\n') | None => return self.err(start, "unterminated quoted string"),
                    Some(_) => {}
                },
                Some('\n') | None => return self.err(start, "unterminated quoted string"),
                Some('"') => break,
                Some(_) => {}
            }
        }
        self.emit(Tok::Str, start);
        Ok(())
    }

    fn raw_quote(&mut self, start: usize) -> Result<(), LexError> {
        loop {
            match self.bump() {
                None => return self.err(start, "unterminated raw quoted string"),
                Some('`') => break,
                Some(_) => {}
            }
        }
        self.emit(Tok::RawStr, start);
        Ok(())
    }

    fn char_const(&mut self, start: usize) -> Result<(), LexError> {
        loop {
            match self.bump() {
                Some('\\') => match self.bump() {
                    Some('\n') | None => return self.err(start, "unterminated character constant"),
                    Some(_) => {}
                },
                Some('\n') | None => return self.err(start, "unterminated character constant"),
                Some('\'') => break,
                Some(_) => {}
            }
        }
        self.emit(Tok::CharConst, start);
        Ok(())
    }
}
