//! `/v1/detect` uploads of a DICOM series: a zip (`application/zip`) of the series' files —
//! flat, or a `patient/study/series` tree — or `multipart/form-data` whose parts are `.dcm`
//! files; written into the request's scratch folder, which `luna detect`'s own input handling
//! then reads as a DICOM folder (`crate::detect::series`), exactly as on the command line.
//!
//! Design: [`parse`] decides the kind of upload from the content type (and, for multipart, from
//! the parts' file names) and checks everything it can before the request waits for the
//! device: every zip entry's name (no absolute path, no `..`, no NUL, no hidden or control
//! character), the entry count, and the declared sizes; [`Upload::write`] then extracts, reading
//! at most [`MAX_UNZIPPED`] bytes in total whatever the entries declare (a zip bomb stops at the
//! limit with a 400). Entries keep their relative paths (so a tree stays a tree and a reader
//! error names the client's file); folders, `DICOMDIR`, `__MACOSX/` and hidden files are left
//! out. Everything else (a `.mhd` upload) goes to `parse::ct_upload` as before.
//! Rejected: unpacking in memory (a CT series is hundreds of MB) and the zip crate's
//! `extract` (it recreates the archive's folders and symlinks and trusts the declared sizes).

use std::io::{Cursor, Read, Write};
use std::path::{Component, Path, PathBuf};

use super::parse::{self, CtUpload, ParseError};

/// Uncompressed bytes a zip upload may hold in total (a 1,000-slice 512² series is ~0.5 GB).
pub const MAX_UNZIPPED: u64 = 2 << 30;

/// Files one upload may hold at most.
pub const MAX_FILES: usize = 10_000;

/// The folder (under the request's scratch folder) a DICOM upload is written to.
pub const DICOM_DIR: &str = "dicom";

/// A `/v1/detect` body: a MetaImage (the `.mhd` upload) or a DICOM series.
pub enum Upload<'a> {
    /// A `.mhd` and its data file, or a LOCAL MetaImage.
    MetaImage(CtUpload<'a>),
    /// A zip archive of the series' files.
    Zip(&'a [u8]),
    /// `.dcm` files, by their (checked) file names.
    Files(Vec<(String, &'a [u8])>),
}

/// Why an upload cannot be written: the client's fault (400) or the server's (500).
#[derive(Debug)]
pub enum WriteError {
    /// The body (an entry's data, a size over the limit).
    Bad(ParseError),
    /// The scratch folder.
    Io(std::io::Error),
}

fn bad(m: String) -> ParseError {
    ParseError::Upload(m)
}

/// Parses a `/v1/detect` body: a zip or multipart `.dcm` files (see the module doc), else the
/// MetaImage forms of `parse::ct_upload`.
pub fn parse<'a>(
    content_type: Option<&str>,
    query_uid: Option<&str>,
    body: &'a [u8],
) -> Result<Upload<'a>, ParseError> {
    let kind = parse::media_type(content_type);
    if matches!(
        kind.as_str(),
        "application/zip" | "application/x-zip-compressed"
    ) {
        check_zip(body)?;
        return Ok(Upload::Zip(body));
    }
    if kind == "multipart/form-data" {
        let parts = parse::multipart_up_to(content_type.unwrap_or(""), body, MAX_FILES)?;
        if parts
            .iter()
            .any(|p| p.filename.as_deref().is_some_and(is_dcm))
        {
            return dcm_parts(parts).map(Upload::Files);
        }
    }
    parse::ct_upload(content_type, query_uid, "ct", body).map(Upload::MetaImage)
}

fn is_dcm(name: &str) -> bool {
    Path::new(name)
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("dcm"))
}

/// The `.dcm` parts of a multipart body by file name (checked, unique); other parts are an
/// error naming them.
fn dcm_parts(parts: Vec<parse::Part<'_>>) -> Result<Vec<(String, &[u8])>, ParseError> {
    let mut out: Vec<(String, &[u8])> = Vec::with_capacity(parts.len());
    for p in parts {
        let name = p.filename.unwrap_or_default();
        if !is_dcm(&name) || !parse::safe_name(&name) {
            return Err(bad(format!(
                "part `{}` (file `{name}`): a DICOM upload takes `.dcm` files only, with plain names (letters, digits, `.`, `_`, `-`)",
                p.name
            )));
        }
        if out.iter().any(|(n, _)| *n == name) {
            return Err(bad(format!("the file `{name}` is sent twice")));
        }
        out.push((name, p.data));
    }
    Ok(out)
}

/// A zip entry name as a relative path: `None` for what is left out (folders, `DICOMDIR`,
/// `__MACOSX/`, hidden files), an error for a name that could leave the folder.
fn entry_path(name: &str, is_dir: bool) -> Result<Option<PathBuf>, ParseError> {
    let refuse = || {
        Err(bad(format!(
            "zip entry {name:?}: absolute paths, `..`, and control characters are not accepted"
        )))
    };
    if name.starts_with('/') || name.contains('\\') || name.chars().any(char::is_control) {
        return refuse();
    }
    let path = PathBuf::from(name);
    let mut parts = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(s) => parts.push(s.to_string_lossy().into_owned()),
            Component::CurDir => {}
            _ => return refuse(),
        }
    }
    let hidden = parts.iter().any(|p| p.starts_with('.') || p == "__MACOSX");
    let dicomdir = parts
        .last()
        .is_some_and(|p| p.eq_ignore_ascii_case("DICOMDIR"));
    if is_dir || parts.is_empty() || hidden || dicomdir {
        return Ok(None);
    }
    Ok(Some(parts.iter().collect()))
}

fn zip_err(e: zip::result::ZipError) -> ParseError {
    bad(format!("not a usable zip archive: {e}"))
}

/// Checks a zip's directory: entry names, count and declared total size.
fn check_zip(body: &[u8]) -> Result<(), ParseError> {
    let mut z = zip::ZipArchive::new(Cursor::new(body)).map_err(zip_err)?;
    if z.len() > MAX_FILES {
        return Err(bad(format!(
            "the zip holds {} entries; at most {MAX_FILES} are accepted",
            z.len()
        )));
    }
    let mut declared = 0u64;
    let mut files = 0usize;
    for i in 0..z.len() {
        let f = z.by_index_raw(i).map_err(zip_err)?;
        let name = f.name().map_err(zip_err)?.into_owned();
        if entry_path(&name, f.is_dir())?.is_some() {
            files += 1;
            declared = declared.saturating_add(f.size());
        }
    }
    if files == 0 {
        return Err(bad("the zip holds no files".into()));
    }
    if declared > MAX_UNZIPPED {
        return Err(over_limit());
    }
    Ok(())
}

fn over_limit() -> ParseError {
    bad(format!(
        "the zip unpacks to more than {MAX_UNZIPPED} bytes; send one series at a time"
    ))
}

impl Upload<'_> {
    /// Writes the upload into `dir` and returns what `luna detect` takes: the `.mhd`, or the
    /// DICOM folder.
    pub fn write(&self, dir: &Path) -> Result<PathBuf, WriteError> {
        let io = WriteError::Io;
        match self {
            Upload::MetaImage(up) => {
                let mhd = dir.join(format!("{}.mhd", up.uid));
                std::fs::write(&mhd, up.header).map_err(io)?;
                if let Some((name, data)) = &up.data {
                    std::fs::write(dir.join(name), data).map_err(io)?;
                }
                Ok(mhd)
            }
            Upload::Files(files) => {
                let to = dir.join(DICOM_DIR);
                std::fs::create_dir_all(&to).map_err(io)?;
                for (name, data) in files {
                    std::fs::write(to.join(name), data).map_err(io)?;
                }
                Ok(to)
            }
            Upload::Zip(body) => {
                let to = dir.join(DICOM_DIR);
                unzip(body, &to, MAX_UNZIPPED)?;
                Ok(to)
            }
        }
    }

    /// What the log line says the request held.
    pub fn label(&self) -> String {
        match self {
            Upload::MetaImage(up) => format!("series {}", up.uid),
            Upload::Zip(_) => "DICOM zip".into(),
            Upload::Files(f) => format!("{} DICOM files", f.len()),
        }
    }
}

/// Extracts the zip's files into `to` (names checked again), at most `limit` bytes in all,
/// whatever the entries declare.
fn unzip(body: &[u8], to: &Path, limit: u64) -> Result<(), WriteError> {
    let badz = |e| WriteError::Bad(zip_err(e));
    let mut z = zip::ZipArchive::new(Cursor::new(body)).map_err(badz)?;
    let mut left = limit;
    for i in 0..z.len() {
        let mut f = z.by_index(i).map_err(badz)?;
        let name = f.name().map_err(badz)?.into_owned();
        let Some(rel) = entry_path(&name, f.is_dir()).map_err(WriteError::Bad)? else {
            continue;
        };
        let out = to.join(&rel);
        if let Some(parent) = out.parent() {
            std::fs::create_dir_all(parent).map_err(WriteError::Io)?;
        }
        let mut file = std::fs::File::create_new(&out).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                WriteError::Bad(bad(format!("zip entry {name:?} is in the archive twice")))
            } else {
                WriteError::Io(e)
            }
        })?;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = f.read(&mut buf).map_err(|e| {
                WriteError::Bad(bad(format!("zip entry {name:?} cannot be unpacked: {e}")))
            })?;
            if n == 0 {
                break;
            }
            left = left
                .checked_sub(n as u64)
                .ok_or_else(|| WriteError::Bad(over_limit()))?;
            file.write_all(&buf[..n]).map_err(WriteError::Io)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        for (name, data) in entries {
            w.start_file(*name, opts).unwrap();
            w.write_all(data).unwrap();
        }
        w.finish().unwrap().into_inner()
    }

    /// A fresh folder under the system temp dir, unique to this process and `name`.
    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir()
            .join(format!("luna-dicom-upload-{}", std::process::id()))
            .join(name);
        let _ = std::fs::remove_dir_all(&d); // absent on the first use
        d
    }

    fn err(body: &[u8]) -> String {
        match parse(Some("application/zip"), None, body) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("accepted"),
        }
    }

    #[test]
    fn traversal_and_absolute_names_are_refused() {
        for name in [
            "../x.dcm",
            "a/../../x.dcm",
            "/etc/x.dcm",
            "a\\..\\x.dcm",
            "a/\u{1}.dcm",
        ] {
            let e = err(&zip_of(&[(name, b"x")]));
            assert!(e.starts_with(&format!("zip entry {name:?}")), "{name}: {e}");
        }
        assert_eq!(
            err(b"PK no zip"),
            "not a usable zip archive: invalid Zip archive: Could not find EOCD"
        );
    }

    #[test]
    fn a_tree_unpacks_without_dicomdir_and_hidden_files() {
        let body = zip_of(&[
            ("p/s/a.dcm", b"one"),
            ("p/s/b", b"two"),
            ("DICOMDIR", b"dir"),
            ("__MACOSX/p/._a.dcm", b"mac"),
            ("p/.DS_Store", b"ds"),
        ]);
        let up = parse(Some("application/zip"), None, &body).unwrap();
        let tmp = scratch("tree");
        std::fs::create_dir_all(&tmp).unwrap();
        let dir = up.write(&tmp).unwrap();
        let mut got: Vec<String> = walkdir::WalkDir::new(&dir)
            .into_iter()
            .flatten()
            .filter(|e| e.file_type().is_file())
            .map(|e| e.path().strip_prefix(&dir).unwrap().display().to_string())
            .collect();
        got.sort();
        assert_eq!(got, ["p/s/a.dcm", "p/s/b"]);
    }

    #[test]
    fn the_unpacked_size_is_bounded_by_the_bytes_read() {
        let body = zip_of(&[("a.dcm", &[7u8; 3000]), ("b.dcm", &[7u8; 3000])]);
        let tmp = scratch("bounded");
        match unzip(&body, &tmp, 5000) {
            Err(WriteError::Bad(e)) => assert!(e.to_string().contains("unpacks to more than")),
            other => panic!("{other:?}"),
        }
        let tmp = scratch("fits");
        assert!(unzip(&body, &tmp, 6000).is_ok());
        let _ = std::fs::remove_dir_all(tmp.parent().unwrap_or(&tmp));
    }

    #[test]
    fn multipart_dcm_parts_are_a_series_and_other_parts_are_named() {
        let body = b"--B\r\nContent-Disposition: form-data; name=\"f\"; filename=\"a.dcm\"\r\n\r\nxx\r\n--B\r\nContent-Disposition: form-data; name=\"g\"; filename=\"b.dcm\"\r\n\r\nyy\r\n--B--\r\n";
        match parse(Some("multipart/form-data; boundary=B"), None, body).unwrap() {
            Upload::Files(f) => assert_eq!(f.len(), 2),
            _ => panic!("not files"),
        }
        let mixed = b"--B\r\nContent-Disposition: form-data; name=\"f\"; filename=\"a.dcm\"\r\n\r\nxx\r\n--B\r\nContent-Disposition: form-data; name=\"g\"; filename=\"notes.txt\"\r\n\r\nyy\r\n--B--\r\n";
        let e = parse(Some("multipart/form-data; boundary=B"), None, mixed)
            .err()
            .unwrap()
            .to_string();
        assert!(e.starts_with("part `g` (file `notes.txt`)"), "{e}");
    }
}
