//! `text`: cutting user strings for display by characters, never by bytes (engine and domain
//! share it: keys in messages, series uids in tables and reports).
//!
//! Series uids, partition keys and captions come from users' files and may hold any Unicode;
//! a byte-index slice (`&s[s.len() - 8..]`) panics when the cut falls inside a multibyte
//! character. Rejected: `String::from_utf8_lossy` on a byte cut (shows replacement characters
//! and still cuts a character in half).

/// The last `n` characters of `s` (all of `s` when it is shorter).
pub fn tail_chars(s: &str, n: usize) -> &str {
    let skip = s.chars().count().saturating_sub(n);
    s.char_indices().nth(skip).map_or("", |(i, _)| &s[i..])
}

/// The first `n` characters of `s` (all of `s` when it is shorter).
pub fn head_chars(s: &str, n: usize) -> &str {
    s.char_indices().nth(n).map_or(s, |(i, _)| &s[..i])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_between_characters() {
        assert_eq!(tail_chars("a€bc", 2), "bc");
        assert_eq!(tail_chars("a€bc", 3), "€bc");
        assert_eq!(tail_chars("é", 8), "é");
        assert_eq!(tail_chars("", 8), "");
        assert_eq!(tail_chars("abc", 0), "");
        assert_eq!(head_chars("a€bc", 2), "a€");
        assert_eq!(head_chars("a€", 12), "a€");
        assert_eq!(head_chars("abc", 0), "");
    }
}
