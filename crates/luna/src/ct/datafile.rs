//! `ElementDataFile` forms: a file name, `LOCAL`, `LIST [N]D` + names, or a `%d` pattern.
//!
//! File names are resolved against the `.mhd` directory. A pattern `name%03d.raw min max [step]`
//! expands to one 2-D slice per file; only `%d`/`%0Nd` are supported (the cheap, common form).
//!
//! **Data files stay inside the `.mhd`'s folder.** A name that is absolute or has a `..`
//! component is rejected ([`CtError::DataFileOutside`]): the dataset root a stage fingerprints
//! (e.g. `ct_root`) holds the `.mhd`, so every file the reader opens is then part of the stage's
//! key, and a header cannot make luna copy a host file (`/etc/passwd`) into an artifact. The
//! check is lexical: a symlink *inside* the folder is the user's own choice and is followed by
//! the fingerprint too. Rejected: an option to allow outside paths (such files would not be in
//! the stage key, so stale results would be served when they change).
//!
//! A pattern's file count is computed with checked arithmetic and compared with DimSize before
//! any name is generated, so `%d 0 2000000000` or bounds near `i64::MAX` fail at once; at most
//! [`MAX_SLICE_FILES`] names are ever generated.

use std::path::{Path, PathBuf};

use super::error::CtError;
use super::header::{unsupported, Raw};

/// The most files a `LIST` or pattern may name (a CT has a few thousand slices at most):
/// a header cannot make the reader build a billion paths.
pub const MAX_SLICE_FILES: usize = 1 << 20;

/// Where the voxel bytes live, from `ElementDataFile`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataFile {
    /// `LOCAL`: after the header in the `.mhd` itself.
    Local,
    /// One file, relative to the `.mhd` directory (or absolute).
    File(PathBuf),
    /// `LIST` or a `%d` pattern: one file per chunk of `slices_per_file` z-slices, in order.
    List {
        /// The files, resolved against the `.mhd` directory.
        files: Vec<PathBuf>,
        /// z-slices held by each file (1 for `LIST 2D` and patterns on 3-D images).
        slices_per_file: usize,
    },
}

/// Interpret the `ElementDataFile` value (and the `LIST` lines that followed it).
pub(super) fn parse_data_file(
    p: &Path,
    r: &Raw,
    ndims: usize,
    dims: [usize; 3],
    list_lines: Vec<String>,
) -> Result<DataFile, CtError> {
    let dir = p.parent().unwrap_or(Path::new("."));
    let toks: Vec<&str> = r.value.split_whitespace().collect();
    let Some(first) = toks.first() else {
        return Err(unsupported(
            p,
            r,
            "ElementDataFile is empty; name the data file or LOCAL",
        ));
    };
    if first.eq_ignore_ascii_case("LOCAL") {
        return Ok(DataFile::Local);
    }
    if first.eq_ignore_ascii_case("LIST") {
        // `LIST [N]D`: each file holds N-D chunks; default NDims-1.
        let file_dims = match toks.get(1) {
            Some(t) => t
                .trim_end_matches(['D', 'd'])
                .parse::<usize>()
                .map_err(|_| CtError::BadNumber {
                    path: p.to_path_buf(),
                    key: r.key.clone(),
                    line: r.line,
                    value: t.to_string(),
                })?,
            None => ndims - 1,
        };
        let slices_per_file = match (ndims, file_dims) {
            (3, 2) | (2, 1) => 1,
            (3, 3) | (2, 2) => dims[2],
            _ => {
                return Err(unsupported(
                    p,
                    r,
                    "LIST file dimension must be NDims-1 or NDims",
                ))
            }
        };
        let files = list_lines
            .iter()
            .map(|f| inside(p, r, dir, f))
            .collect::<Result<_, _>>()?;
        return Ok(DataFile::List {
            files,
            slices_per_file,
        });
    }
    if first.contains('%') && toks.len() >= 3 {
        return expand_pattern(p, r, &toks, dir, dims[2]);
    }
    Ok(DataFile::File(inside(p, r, dir, &r.value)?))
}

/// `dir/name`, if `name` stays inside `dir` (relative, no `..`; see the module doc).
fn inside(p: &Path, r: &Raw, dir: &Path, name: &str) -> Result<PathBuf, CtError> {
    use std::path::Component;
    let rel = Path::new(name);
    let ok = !name.is_empty()
        && rel
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    if !ok {
        return Err(CtError::DataFileOutside {
            path: p.to_path_buf(),
            line: r.line,
            name: name.to_string(),
        });
    }
    Ok(dir.join(rel))
}

/// `name%03d.raw min max [step]`: one 2-D slice per file.
fn expand_pattern(
    p: &Path,
    r: &Raw,
    toks: &[&str],
    dir: &Path,
    slices: usize,
) -> Result<DataFile, CtError> {
    let num = |t: &str| -> Result<i64, CtError> {
        t.parse().map_err(|_| CtError::BadNumber {
            path: p.to_path_buf(),
            key: r.key.clone(),
            line: r.line,
            value: t.to_string(),
        })
    };
    let (lo, hi) = (num(toks[1])?, num(toks[2])?);
    let step = match toks.get(3) {
        Some(t) => num(t)?,
        None => 1,
    };
    let pat = toks[0];
    let (pre, rest) = pat
        .split_once('%')
        .ok_or_else(|| unsupported(p, r, "pattern needs a %d"))?;
    let dpos = rest
        .find('d')
        .ok_or_else(|| unsupported(p, r, "only %d / %0Nd patterns are supported"))?;
    let spec = &rest[..dpos];
    let post = &rest[dpos + 1..];
    let width: usize = if spec.is_empty() {
        0
    } else {
        spec.trim_start_matches('0')
            .parse()
            .map_err(|_| unsupported(p, r, "only %d / %0Nd patterns are supported"))?
    };
    if step <= 0 || hi < lo {
        return Err(unsupported(p, r, "pattern needs min <= max and step > 0"));
    }
    // (hi - lo) / step + 1 in i128: no overflow for any i64 bounds
    let count = (hi as i128 - lo as i128) / step as i128 + 1;
    if count != slices as i128 {
        return Err(CtError::ListCount {
            path: p.to_path_buf(),
            expected: slices,
            found: usize::try_from(count).unwrap_or(usize::MAX),
        });
    }
    if slices > MAX_SLICE_FILES {
        return Err(unsupported(
            p,
            r,
            "a pattern names at most 1,048,576 slice files (DimSize z is larger)",
        ));
    }
    if width > 64 {
        return Err(unsupported(p, r, "a %0Nd pattern has at most 64 digits"));
    }
    let mut files = Vec::with_capacity(slices);
    for n in 0..slices as i128 {
        let i = lo as i128 + n * step as i128;
        files.push(inside(p, r, dir, &format!("{pre}{i:0width$}{post}"))?);
    }
    Ok(DataFile::List {
        files,
        slices_per_file: 1,
    })
}
