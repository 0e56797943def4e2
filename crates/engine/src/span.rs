//! Source positions for YAML documents.
//!
//! serde_yaml reports a location for the errors it finds itself (syntax, unknown top-level keys,
//! wrong shapes) but its `Value` carries no spans, so the errors luna finds *after* parsing (an
//! unknown stage kind, a `needs` target that does not exist, a parameter of the wrong type) would
//! have no line:column. This module walks the YAML event stream once (yaml-rust2's parser, which
//! reports a marker per event) and records where every mapping key and value starts, indexed by
//! its dotted path (`stages.train.with.lr`, sequence items as `stages.train.needs.0`).
//! The rejected alternative was searching the text for `key:`, which breaks on flow mappings,
//! repeated names and comments.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, Parser};

/// A 1-based line and column in a source file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Pos {
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub col: usize,
}

/// Positions of keys and values of one YAML document, by dotted path.
#[derive(Debug, Default, Clone)]
pub struct SpanIndex {
    keys: HashMap<String, Pos>,
    values: HashMap<String, Pos>,
}

enum Frame {
    Map {
        path: String,
        pending_key: Option<String>,
    },
    Seq {
        path: String,
        next: usize,
    },
}

fn join(parent: &str, child: &str) -> String {
    if parent.is_empty() {
        child.to_string()
    } else {
        format!("{parent}.{child}")
    }
}

impl SpanIndex {
    /// Builds the index; returns an empty index when the text is not valid YAML (the serde
    /// parser reports that error with its own location).
    pub fn build(text: &str) -> SpanIndex {
        let mut idx = SpanIndex::default();
        let mut parser = Parser::new_from_str(text);
        let mut stack: Vec<Frame> = Vec::new();
        loop {
            let (event, mark) = match parser.next_token() {
                Ok(t) => t,
                Err(_) => return idx,
            };
            let pos = Pos {
                line: mark.line(),
                col: mark.col() + 1,
            };
            // Where does this node sit? Either a key of a map, a value of a map or a seq item.
            let mut value_path: Option<String> = None;
            match stack.last_mut() {
                Some(Frame::Map { path, pending_key }) => match pending_key.take() {
                    None => {
                        if let Event::Scalar(ref k, ..) = event {
                            let p = join(path, k);
                            idx.keys.insert(p.clone(), pos);
                            *pending_key = Some(p);
                            continue;
                        }
                        if matches!(event, Event::MappingEnd) {
                            stack.pop();
                            continue;
                        }
                        // complex keys are not used in pipeline files; skip their content
                        value_path = Some(join(path, "?"));
                    }
                    Some(p) => value_path = Some(p),
                },
                Some(Frame::Seq { path, next }) => {
                    if matches!(event, Event::SequenceEnd) {
                        stack.pop();
                        continue;
                    }
                    value_path = Some(join(path, &next.to_string()));
                    *next += 1;
                }
                None => {}
            }
            match event {
                Event::StreamEnd => return idx,
                Event::MappingStart(..) => {
                    let p = value_path.unwrap_or_default();
                    idx.values.insert(p.clone(), pos);
                    stack.push(Frame::Map {
                        path: p,
                        pending_key: None,
                    });
                }
                Event::SequenceStart(..) => {
                    let p = value_path.unwrap_or_default();
                    idx.values.insert(p.clone(), pos);
                    stack.push(Frame::Seq { path: p, next: 0 });
                }
                Event::Scalar(..) | Event::Alias(..) => {
                    if let Some(p) = value_path {
                        idx.values.insert(p, pos);
                    }
                }
                _ => {}
            }
        }
    }

    /// Position of the key at `path` (e.g. `stages.train`).
    pub fn key(&self, path: &str) -> Option<Pos> {
        self.keys.get(path).copied()
    }

    /// Position of the value at `path`.
    pub fn value(&self, path: &str) -> Option<Pos> {
        self.values.get(path).copied()
    }

    /// Best position for a path: its value, else its key, else the nearest ancestor's key.
    pub fn best(&self, path: &str) -> Option<Pos> {
        let mut p = path.to_string();
        loop {
            if let Some(pos) = self
                .value(&p)
                .filter(|_| p == path)
                .or_else(|| self.key(&p))
            {
                return Some(pos);
            }
            match p.rfind('.') {
                Some(i) => p.truncate(i),
                None => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_keys_and_values_by_path() {
        let text = "pipeline: x\nstages:\n  a:\n    uses: command\n    needs: [b, c]\n    with: { lr: 0.1 }\n";
        let idx = SpanIndex::build(text);
        assert_eq!(idx.key("stages.a"), Some(Pos { line: 3, col: 3 }));
        assert_eq!(idx.value("stages.a.uses"), Some(Pos { line: 4, col: 11 }));
        assert_eq!(
            idx.value("stages.a.needs.1"),
            Some(Pos { line: 5, col: 16 })
        );
        assert_eq!(
            idx.value("stages.a.with.lr"),
            Some(Pos { line: 6, col: 17 })
        );
        assert_eq!(idx.best("stages.a.with.missing"), idx.key("stages.a.with"));
    }
}
