//! "Did you mean" suggestions by edit distance.

/// Levenshtein distance between two strings (by chars).
pub fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The candidate closest to `word`, if it is close enough to be a plausible typo.
pub fn nearest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (distance(word, c), c))
        // a suggestion must share something with the word: replacing every character
        // (`x` → `a`) is no typo
        .filter(|(d, c)| *d <= (c.len().max(word.len()) / 3).max(2) && *d < c.len().max(word.len()))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    #[test]
    fn finds_typos() {
        assert_eq!(super::distance("kitten", "sitting"), 3);
        assert_eq!(
            super::nearest("trian_classifier", ["train_classifier", "build_crops"]),
            Some("train_classifier")
        );
        assert_eq!(super::nearest("x", ["a", "b"]), None);
        assert_eq!(super::nearest("cc", ["a", "c"]), Some("c"));
        assert_eq!(
            super::nearest("zzz", ["train_classifier", "build_crops"]),
            None
        );
    }
}
