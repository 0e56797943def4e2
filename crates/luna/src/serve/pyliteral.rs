//! The `.npy` header as what it is: a Python literal dict (`numpy.lib.format` writes it with
//! `repr` and reads it with `ast.literal_eval`), parsed whole, so a key is a key and never a
//! piece of text inside another value.
//!
//! Design: a recursive-descent parser over `char`s for the subset such headers use — a dict
//! of string keys to strings (single or double quoted, with backslash escapes), `True`/`False`,
//! non-negative integers and tuples of integers — followed by nothing but whitespace (numpy
//! pads with spaces and a newline). A duplicate key is an error, as is anything else (lists,
//! floats, nested dicts: numpy never writes them in a header). Bounded: the header is at most
//! the body, and nesting stops at tuples of integers.
//!
//! Rejected: searching for `'descr'` in the text (what let a header hide a `'descr': '<i2'`
//! inside another value while its real dtype was something else); a general Python-literal
//! crate (a dependency for twenty lines of grammar).

use std::collections::BTreeMap;
use std::iter::Peekable;
use std::str::Chars;

/// A value of the header dict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lit {
    /// A string.
    Str(String),
    /// `True` / `False`.
    Bool(bool),
    /// A non-negative integer.
    Int(u64),
    /// A tuple of integers (`()`, `(3,)`, `(1, 2)`).
    Tuple(Vec<u64>),
}

type P<'a> = Peekable<Chars<'a>>;

fn ws(p: &mut P) {
    while p.peek().is_some_and(|c| c.is_whitespace()) {
        p.next();
    }
}

fn expect(p: &mut P, want: char) -> Result<(), String> {
    ws(p);
    match p.next() {
        Some(c) if c == want => Ok(()),
        Some(c) => Err(format!("expected `{want}`, found `{}`", c.escape_default())),
        None => Err(format!("expected `{want}`, found the end")),
    }
}

fn string(p: &mut P) -> Result<String, String> {
    let q = match p.next() {
        Some(c @ ('\'' | '"')) => c,
        _ => return Err("expected a quoted string".into()),
    };
    let mut s = String::new();
    loop {
        match p.next() {
            None => return Err("a string is not closed".into()),
            Some(c) if c == q => return Ok(s),
            Some('\\') => match p.next() {
                Some('n') => s.push('\n'),
                Some('t') => s.push('\t'),
                Some(c @ ('\\' | '\'' | '"')) => s.push(c),
                _ => return Err("unsupported escape in a string".into()),
            },
            Some(c) => s.push(c),
        }
    }
}

fn int(p: &mut P) -> Result<u64, String> {
    let mut digits = String::new();
    while let Some(c) = p.peek().copied().filter(char::is_ascii_digit) {
        digits.push(c);
        p.next();
    }
    // numpy writes Python ints; `3L` came from Python 2
    if p.peek() == Some(&'L') {
        p.next();
    }
    digits
        .parse()
        .map_err(|_| format!("`{digits}` is not a non-negative integer"))
}

fn tuple(p: &mut P) -> Result<Vec<u64>, String> {
    expect(p, '(')?;
    let mut v = Vec::new();
    loop {
        ws(p);
        if p.peek() == Some(&')') {
            p.next();
            return Ok(v);
        }
        v.push(int(p)?);
        ws(p);
        match p.next() {
            Some(',') => {}
            Some(')') => return Ok(v),
            _ => return Err("a tuple holds something other than integers".into()),
        }
    }
}

fn value(p: &mut P) -> Result<Lit, String> {
    ws(p);
    match p.peek().copied() {
        Some('\'' | '"') => string(p).map(Lit::Str),
        Some('(') => tuple(p).map(Lit::Tuple),
        Some(c) if c.is_ascii_digit() => int(p).map(Lit::Int),
        Some(c) if c.is_ascii_alphabetic() => {
            let mut w = String::new();
            while let Some(c) = p.peek().copied().filter(char::is_ascii_alphanumeric) {
                w.push(c);
                p.next();
            }
            match w.as_str() {
                "True" => Ok(Lit::Bool(true)),
                "False" => Ok(Lit::Bool(false)),
                _ => Err(format!("`{w}` is not a literal")),
            }
        }
        _ => Err("expected a string, True/False, an integer or a tuple".into()),
    }
}

/// Parses a header: one dict with string keys, then only whitespace.
pub fn dict(text: &str) -> Result<BTreeMap<String, Lit>, String> {
    let mut p = text.chars().peekable();
    expect(&mut p, '{')?;
    let mut out = BTreeMap::new();
    loop {
        ws(&mut p);
        if p.peek() == Some(&'}') {
            p.next();
            break;
        }
        let key = string(&mut p)?;
        expect(&mut p, ':')?;
        let v = value(&mut p)?;
        if out.insert(key.clone(), v).is_some() {
            return Err(format!("the key '{key}' appears twice"));
        }
        ws(&mut p);
        match p.next() {
            Some(',') => {}
            Some('}') => break,
            _ => return Err("expected `,` or `}` after a value".into()),
        }
    }
    ws(&mut p);
    match p.next() {
        None => Ok(out),
        Some(_) => Err("text after the header dict".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numpys_headers_parse() {
        let d =
            dict("{'descr': '<i2', 'fortran_order': False, 'shape': (2, 32, 48, 48), }      \n")
                .unwrap();
        assert_eq!(d["descr"], Lit::Str("<i2".into()));
        assert_eq!(d["fortran_order"], Lit::Bool(false));
        assert_eq!(d["shape"], Lit::Tuple(vec![2, 32, 48, 48]));
        assert_eq!(
            dict("{\"shape\": (3,)}").unwrap()["shape"],
            Lit::Tuple(vec![3])
        );
        assert_eq!(dict("{'shape': ()}").unwrap()["shape"], Lit::Tuple(vec![]));
    }

    #[test]
    fn keys_inside_values_stay_inside() {
        let d = dict("{'note': \"'descr': '<i2', 'fortran_order': False\", 'descr': '>f8', 'fortran_order': True, 'shape': (1,)}").unwrap();
        assert_eq!(d["descr"], Lit::Str(">f8".into()));
        assert_eq!(d["fortran_order"], Lit::Bool(true));
        for bad in [
            "{'descr': '<i2', 'descr': '<f4'}",
            "{'descr': '<i2'} trailing",
            "{'descr': [1]}",
            "{'shape': (1, 'x')}",
            "{'descr': '<i2'",
            "{descr: 1}",
        ] {
            assert!(dict(bad).is_err(), "{bad}");
        }
    }
}
