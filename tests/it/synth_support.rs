//! Shared helpers for the synth tests: python discovery, file walking, tiny CSV parsing.

use std::path::{Path, PathBuf};

/// All files under `dir`, relative paths, sorted.
pub fn synth_files(dir: &Path) -> Vec<PathBuf> {
    fn walk(base: &Path, d: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(d).expect("readable test dir") {
            let p = e.expect("dir entry").path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                out.push(p.strip_prefix(base).expect("under base").to_path_buf());
            }
        }
    }
    let mut v = Vec::new();
    walk(dir, dir, &mut v);
    v.sort();
    v
}

/// Split one CSV line, honouring double quotes (no escaped quotes needed here).
pub fn synth_split_csv(line: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut quoted = false;
    for ch in line.chars() {
        match ch {
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(String::new()),
            c => out.last_mut().expect("non-empty").push(c),
        }
    }
    out
}

/// Header and rows of a CSV file.
pub fn synth_read_csv(path: &Path) -> (String, Vec<Vec<String>>) {
    let text = std::fs::read_to_string(path).expect("CSV readable");
    let mut lines = text.lines();
    let header = lines.next().expect("CSV has a header").to_string();
    (header, lines.map(synth_split_csv).collect())
}
