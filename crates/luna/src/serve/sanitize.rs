//! What leaves the server in words: log lines with every control character escaped (client
//! text — a multipart filename, an npy `descr`, a query — can never start a log line of its
//! own), and messages and documents without the server's absolute paths.
//!
//! Design: escaping is applied once, to the whole log line, where it is written (so no caller
//! can forget it); control characters become Rust escapes (`\n`, `\u{1b}`), everything else,
//! multibyte text included, stays as it is. Paths are removed in two passes: the folders the
//! server knows (the request's upload folder → nothing, the workspace → `<workspace>`), then
//! any other absolute path token is cut to its last component, so a path from deep inside the
//! engine cannot leak either.
//!
//! Rejected: escaping at each `eprintln!` (one missed call is a forged line); dropping messages
//! that contain paths (the client then loses the part that says what is wrong with its CT).

use std::path::Path;

/// `line` with control characters escaped (a log line that stays one line).
pub fn escape_log(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    for c in line.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// `msg` without server paths: each `(folder, label)` replaced (folder + `/` by the label, or
/// by nothing when the label is empty), then any remaining absolute path cut to its file name.
pub fn redact(msg: &str, known: &[(&Path, &str)]) -> String {
    let mut s = msg.to_string();
    for (dir, label) in known {
        let d = dir.display().to_string();
        if d.len() > 1 {
            let with = if label.is_empty() {
                String::new()
            } else {
                format!("{label}/")
            };
            s = s.replace(&format!("{d}/"), &with).replace(&d, label);
        }
    }
    s.split_inclusive(char::is_whitespace)
        .map(cut_path)
        .collect()
}

/// One whitespace-ended token with an absolute path in it cut to the path's last component.
fn cut_path(token: &str) -> String {
    let lead: String = token
        .chars()
        .take_while(|c| matches!(c, '`' | '\'' | '"' | '(' | '[' | '='))
        .collect();
    let rest = token.strip_prefix(lead.as_str()).unwrap_or(token);
    if !rest.starts_with('/') || rest.matches('/').count() < 2 {
        return token.to_string();
    }
    // the tail after the path: closing quotes, punctuation, the whitespace
    let full: String = rest
        .chars()
        .take_while(|c| {
            !matches!(c, '`' | '\'' | '"' | ')' | ']' | ',' | ';') && !c.is_whitespace()
        })
        .collect();
    let tail = rest.strip_prefix(full.as_str()).unwrap_or("");
    let (path, colon) = match full.strip_suffix(':') {
        Some(p) => (p, ":"),
        None => (full.as_str(), ""),
    };
    let name = path.rsplit('/').find(|c| !c.is_empty()).unwrap_or("");
    format!("{lead}{name}{colon}{tail}")
}

/// `v` with [`redact`] applied to every string in it.
pub fn redact_json(v: &mut serde_json::Value, known: &[(&Path, &str)]) {
    match v {
        serde_json::Value::String(s) => *s = redact(s, known),
        serde_json::Value::Array(a) => a.iter_mut().for_each(|x| redact_json(x, known)),
        serde_json::Value::Object(o) => o.values_mut().for_each(|x| redact_json(x, known)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_stay_one_line() {
        assert_eq!(
            escape_log("a\nserve: forged\r\x1b[2J é€"),
            "a\\nserve: forged\\r\\u{1b}[2J é€"
        );
    }

    #[test]
    fn server_paths_are_cut() {
        let up = Path::new("/srv/ws/.luna/serve/uploads/3-77");
        let ws = Path::new("/srv/ws");
        let known = [(up, ""), (ws, "<workspace>")];
        assert_eq!(
            redact(
                "/srv/ws/.luna/serve/uploads/3-77/a.mhd: truncated data",
                &known
            ),
            "a.mhd: truncated data"
        );
        assert_eq!(
            redact("cannot open /srv/ws/cache/objects/ab/abc: denied", &known),
            "cannot open <workspace>/cache/objects/ab/abc: denied"
        );
        assert_eq!(
            redact("read `/home/x/y.raw`: gone; see (/etc/luna/z.toml)", &[]),
            "read `y.raw`: gone; see (z.toml)"
        );
        assert_eq!(
            redact("multipart/form-data and /single stay", &[]),
            "multipart/form-data and /single stay"
        );
    }
}
