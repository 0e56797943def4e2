//! A small, line-aware CSV record splitter (RFC 4180 quoting plus the leniencies LUNA files need).
//!
//! Why hand-rolled rather than a dataframe library's CSV reader: those do not report the source
//! line of a bad value, and the brief requires `file:line: reason` for every rejected row. This
//! splitter yields each record with the 1-based line it starts on; typed parsing into row
//! structs happens in `csv.rs`. Rejected alternative: a library CSV reader with a second pass to
//! locate errors (two parsers that could disagree).
//!
//! Accepted: a UTF-8 BOM (stripped by the caller), CRLF or LF line ends, quoted fields with `""`
//! escapes (also spanning lines), spaces/tabs around fields (trimmed, outside quotes), blank lines
//! anywhere (skipped, like an empty record). A quote inside an unquoted field is kept literally
//! (as Python's csv does). Text after a closing quote, or an unterminated quote, is a malformed
//! record: reported at its start line, and the splitter resumes at the next line.

use std::borrow::Cow;

/// One record: its start line (1-based) and its fields, or the malformation found.
pub(crate) struct Record<'a> {
    /// Line the record starts on.
    pub line: usize,
    /// The fields, trimmed; `Err` if the quoting is broken.
    pub fields: Result<Vec<Cow<'a, str>>, &'static str>,
}

/// Iterator over the records of a CSV text (without BOM); blank lines are skipped.
pub(crate) struct Records<'a> {
    text: &'a str,
    pos: usize,
    line: usize,
}

impl<'a> Records<'a> {
    /// Starts splitting `text` at line 1.
    pub fn new(text: &'a str) -> Self {
        Self {
            text,
            pos: 0,
            line: 1,
        }
    }

    fn skip_to_next_line(&mut self) {
        let b = self.text.as_bytes();
        while self.pos < b.len() {
            let c = b[self.pos];
            self.pos += 1;
            if c == b'\n' {
                self.line += 1;
                return;
            }
        }
    }

    /// Parses one field starting at `self.pos`; returns the field and whether the record ended.
    fn field(&mut self) -> Result<(Cow<'a, str>, bool), &'static str> {
        let b = self.text.as_bytes();
        while self.pos < b.len() && (b[self.pos] == b' ' || b[self.pos] == b'\t') {
            self.pos += 1;
        }
        if self.pos < b.len() && b[self.pos] == b'"' {
            self.pos += 1;
            let start = self.pos;
            let mut owned: Option<String> = None;
            let mut seg = start;
            loop {
                if self.pos >= b.len() {
                    return Err("unterminated quoted field");
                }
                match b[self.pos] {
                    b'"' if self.pos + 1 < b.len() && b[self.pos + 1] == b'"' => {
                        let o = owned.get_or_insert_with(String::new);
                        o.push_str(&self.text[seg..=self.pos]);
                        self.pos += 2;
                        seg = self.pos;
                    }
                    b'"' => break,
                    b'\n' => {
                        self.line += 1;
                        self.pos += 1;
                    }
                    _ => self.pos += 1,
                }
            }
            let value = match owned {
                Some(mut o) => {
                    o.push_str(&self.text[seg..self.pos]);
                    Cow::Owned(o)
                }
                None => Cow::Borrowed(&self.text[start..self.pos]),
            };
            self.pos += 1; // closing quote
            while self.pos < b.len() && matches!(b[self.pos], b' ' | b'\t' | b'\r') {
                self.pos += 1;
            }
            match b.get(self.pos) {
                None => Ok((value, true)),
                Some(b',') => {
                    self.pos += 1;
                    Ok((value, false))
                }
                Some(b'\n') => {
                    self.pos += 1;
                    self.line += 1;
                    Ok((value, true))
                }
                Some(_) => Err("text after a closing quote"),
            }
        } else {
            let start = self.pos;
            while self.pos < b.len() && b[self.pos] != b',' && b[self.pos] != b'\n' {
                self.pos += 1;
            }
            let value = self.text[start..self.pos].trim_end_matches([' ', '\t', '\r']);
            let ended = match b.get(self.pos) {
                Some(b',') => false,
                Some(_) => {
                    self.line += 1;
                    true
                }
                None => true,
            };
            if self.pos < b.len() {
                self.pos += 1;
            }
            Ok((Cow::Borrowed(value), ended))
        }
    }
}

impl<'a> Iterator for Records<'a> {
    type Item = Record<'a>;

    fn next(&mut self) -> Option<Record<'a>> {
        loop {
            if self.pos >= self.text.len() {
                return None;
            }
            let line = self.line;
            let start = self.pos;
            let mut fields = Vec::with_capacity(8);
            loop {
                match self.field() {
                    Ok((f, ended)) => {
                        fields.push(f);
                        if ended {
                            break;
                        }
                    }
                    Err(what) => {
                        // Resume at the line after the one where the error was detected.
                        if what == "unterminated quoted field" {
                            self.pos = self.text.len();
                        } else {
                            self.skip_to_next_line();
                        }
                        return Some(Record {
                            line,
                            fields: Err(what),
                        });
                    }
                }
            }
            let blank = fields.len() == 1
                && fields[0].is_empty()
                && !self.text[start..self.pos].contains('"');
            if !blank {
                return Some(Record {
                    line,
                    fields: Ok(fields),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(text: &str) -> Vec<(usize, Result<Vec<String>, &'static str>)> {
        Records::new(text)
            .map(|r| {
                let f = r
                    .fields
                    .map(|v| v.into_iter().map(|c| c.into_owned()).collect());
                (r.line, f)
            })
            .collect()
    }

    #[test]
    fn quotes_crlf_spaces_blank_lines() {
        let got = split("a, b ,c\r\n\r\n\"x,1\" , \"q\"\"q\",\"multi\nline\"\n  \nz,,\n");
        assert_eq!(
            got,
            vec![
                (1, Ok(vec!["a".into(), "b".into(), "c".into()])),
                (
                    3,
                    Ok(vec!["x,1".into(), "q\"q".into(), "multi\nline".into()])
                ),
                (6, Ok(vec!["z".into(), "".into(), "".into()])),
            ]
        );
    }

    #[test]
    fn malformed_records_report_start_line_and_resume() {
        let got = split("a,b\n\"x\"y,1\nc,d\n\"open,2\n");
        assert_eq!(got[0], (1, Ok(vec!["a".into(), "b".into()])));
        assert_eq!(got[1], (2, Err("text after a closing quote")));
        assert_eq!(got[2], (3, Ok(vec!["c".into(), "d".into()])));
        assert_eq!(got[3], (4, Err("unterminated quoted field")));
        assert_eq!(got.len(), 4);
    }

    #[test]
    fn no_trailing_newline() {
        assert_eq!(split("a,b"), vec![(1, Ok(vec!["a".into(), "b".into()]))]);
    }
}
