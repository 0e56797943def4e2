//! Request body parsers of `luna serve`: crops for `/v1/classify` (raw i16 with a shape header,
//! or `.npy`), CT uploads for `/v1/detect` (multipart `.mhd` + `.raw`, or one MetaImage with
//! `ElementDataFile = LOCAL`).
//!
//! Design: every parser is a pure function of the headers it needs and the body bytes (already
//! bounded by the server's body limit), returns borrowed slices where it can, and reports a
//! [`ParseError`] whose text names the problem (it becomes the 400 answer). Nothing here
//! allocates in proportion to a number the client wrote (a shape is checked against the body
//! length before anything is sized by it), and every index is checked, so a hostile body can
//! neither panic nor exhaust memory; `tests` feed 10,000+ generated bodies to each parser.
//!
//! Rejected: a multipart crate (multer and friends stream from an async body with their own
//! limits; our bodies are complete, bounded byte slices, and the subset we need — named parts,
//! a filename, no nesting — is a page of code we can fuzz); numpy's full header grammar (we
//! accept what `numpy.save` writes for little-endian int16 C-order arrays, and say so); the
//! header itself is parsed as the Python literal dict it is (`pyliteral.rs`), never searched.

use super::pyliteral::{self, Lit};

/// A request body that cannot be used, with what is wrong (the 400 message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The content type is none of the accepted ones.
    #[error("unsupported content type `{got}`; send {expected}")]
    ContentType {
        /// What came.
        got: String,
        /// What is accepted.
        expected: &'static str,
    },
    /// The shape header is missing or malformed.
    #[error("raw crops need an `x-shape` header `N,{d},{h},{w}` (or `{d},{h},{w}`): {problem}")]
    ShapeHeader {
        /// What is wrong.
        problem: String,
        /// Crop depth.
        d: usize,
        /// Crop height.
        h: usize,
        /// Crop width.
        w: usize,
    },
    /// Crops of a shape the model does not take.
    #[error(
        "crops of shape {got:?} do not fit the model, which takes {want:?} (d, h, w) i16 crops"
    )]
    Shape {
        /// The crop shape sent.
        got: Vec<usize>,
        /// The model's.
        want: [usize; 3],
    },
    /// No crops.
    #[error("the request holds no crops")]
    Empty,
    /// Body length and shape disagree.
    #[error("the body has {got} bytes, but {n} crops of {want:?} i16 are {expected} bytes")]
    Length {
        /// Body bytes.
        got: usize,
        /// Bytes the shape implies.
        expected: usize,
        /// Crops.
        n: usize,
        /// Crop shape.
        want: [usize; 3],
    },
    /// A malformed `.npy` file.
    #[error("not a usable .npy array: {0}")]
    Npy(String),
    /// A malformed multipart body.
    #[error("malformed multipart body: {0}")]
    Multipart(String),
    /// A CT upload that lacks something.
    #[error("{0}")]
    Upload(String),
}

/// Crops decoded from a classify body: `n` crops of the model's shape, C order.
#[derive(Debug, Clone, PartialEq)]
pub struct Crops {
    /// Number of crops.
    pub n: usize,
    /// The i16 values, little-endian bytes as sent (`n × d × h × w × 2` bytes).
    pub bytes: Vec<u8>,
}

const CLASSIFY_TYPES: &str =
    "`application/octet-stream` with an `x-shape` header, or `application/x-npy`";

/// Parses a `/v1/classify` body for a model taking `shape` crops.
pub fn classify_body(
    content_type: Option<&str>,
    shape_header: Option<&str>,
    body: &[u8],
    shape: [usize; 3],
) -> Result<Crops, ParseError> {
    let ct = content_type
        .map(|c| {
            c.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    let (dims, data) = match ct.as_str() {
        "application/x-npy" | "application/npy" => npy(body)?,
        "application/octet-stream" | "" => {
            if ct.is_empty() && body.starts_with(NPY_MAGIC) {
                npy(body)?
            } else {
                (shape_of(shape_header, shape)?, body)
            }
        }
        other => {
            return Err(ParseError::ContentType {
                got: other.into(),
                expected: CLASSIFY_TYPES,
            })
        }
    };
    let (n, crop): (usize, &[usize]) = match dims.as_slice() {
        [_, _, _] => (1, &dims[..]),
        [n, rest @ ..] if rest.len() == 3 => (*n, rest),
        [n, 1, rest @ ..] if rest.len() == 3 => (*n, rest),
        _ => {
            return Err(ParseError::Shape {
                got: dims.clone(),
                want: shape,
            })
        }
    };
    if crop != shape {
        return Err(ParseError::Shape {
            got: crop.to_vec(),
            want: shape,
        });
    }
    if n == 0 {
        return Err(ParseError::Empty);
    }
    let vox: usize = shape.iter().product();
    let expected = n.checked_mul(vox).and_then(|v| v.checked_mul(2));
    if expected != Some(data.len()) {
        return Err(ParseError::Length {
            got: data.len(),
            expected: expected.unwrap_or(usize::MAX),
            n,
            want: shape,
        });
    }
    Ok(Crops {
        n,
        bytes: data.to_vec(),
    })
}

fn shape_of(h: Option<&str>, shape: [usize; 3]) -> Result<Vec<usize>, ParseError> {
    let bad = |problem: String| ParseError::ShapeHeader {
        problem,
        d: shape[0],
        h: shape[1],
        w: shape[2],
    };
    let h = h.ok_or_else(|| bad("it is missing".into()))?;
    let dims = h
        .split(',')
        .map(|s| s.trim().parse::<usize>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| bad(format!("`{h}` is not a list of sizes")))?;
    if !(3..=5).contains(&dims.len()) {
        return Err(bad(format!("`{h}` has {} sizes", dims.len())));
    }
    Ok(dims)
}

const NPY_MAGIC: &[u8] = b"\x93NUMPY";

/// The shape and data bytes of a little-endian int16, C-order `.npy` file.
fn npy(b: &[u8]) -> Result<(Vec<usize>, &[u8]), ParseError> {
    let e = |m: &str| ParseError::Npy(m.into());
    if !b.starts_with(NPY_MAGIC) {
        return Err(e("it does not start with the \\x93NUMPY magic"));
    }
    let (hlen, start): (usize, usize) = match b.get(6) {
        Some(1) => (
            b.get(8..10)
                .map(|s| u16::from_le_bytes([s[0], s[1]]) as usize)
                .ok_or_else(|| e("truncated header"))?,
            10,
        ),
        Some(2) | Some(3) => (
            b.get(8..12)
                .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]) as usize)
                .ok_or_else(|| e("truncated header"))?,
            12,
        ),
        _ => return Err(e("unknown format version (1, 2 or 3 expected)")),
    };
    let end = start
        .checked_add(hlen)
        .filter(|&x| x <= b.len())
        .ok_or_else(|| e("the header is longer than the file"))?;
    let header = std::str::from_utf8(&b[start..end]).map_err(|_| e("the header is not text"))?;
    let d = pyliteral::dict(header)
        .map_err(|m| ParseError::Npy(format!("the header is not a Python literal dict: {m}")))?;
    let keys: Vec<&str> = d.keys().map(String::as_str).collect();
    if keys != ["descr", "fortran_order", "shape"] {
        return Err(ParseError::Npy(format!(
            "the header has the keys {keys:?}; numpy writes exactly 'descr', 'fortran_order' and 'shape'"
        )));
    }
    match &d["descr"] {
        Lit::Str(t) if t == "<i2" || t == "|i2" => {}
        other => {
            return Err(ParseError::Npy(format!(
                "dtype {} is not little-endian int16 ('<i2'): send HU as np.int16",
                match other {
                    Lit::Str(t) => format!("'{t}'"),
                    v => format!("{v:?}"),
                }
            )))
        }
    }
    match &d["fortran_order"] {
        Lit::Bool(false) => {}
        Lit::Bool(true) => {
            return Err(e(
                "fortran_order arrays are not accepted (use np.ascontiguousarray)",
            ))
        }
        _ => return Err(e("'fortran_order' is not True or False")),
    }
    let Lit::Tuple(shape) = &d["shape"] else {
        return Err(e("'shape' is not a tuple"));
    };
    let dims = shape
        .iter()
        .map(|&v| usize::try_from(v))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| e("'shape' holds a size too large for this machine"))?;
    Ok((dims, &b[end..]))
}

/// One part of a multipart body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part<'a> {
    /// The `name` of its Content-Disposition.
    pub name: String,
    /// Its `filename`, if given.
    pub filename: Option<String>,
    /// The bytes.
    pub data: &'a [u8],
}

/// The boundary of a `multipart/form-data` content type.
fn boundary(content_type: &str) -> Option<&str> {
    content_type.split(';').skip(1).find_map(|p| {
        let (k, v) = p.trim().split_once('=')?;
        (k.trim().eq_ignore_ascii_case("boundary")).then(|| v.trim().trim_matches('"'))
    })
}

/// The first `needle` in `hay` at or after `from` (SIMD `memmem`: a 100 MB part is scanned in
/// milliseconds, where a byte-window search took seconds).
fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if needle.is_empty() {
        return None;
    }
    memchr::memmem::find(hay.get(from..)?, needle).map(|p| p + from)
}

/// Splits a `multipart/form-data` body (RFC 7578) into its parts (at most 16).
pub fn multipart<'a>(content_type: &str, body: &'a [u8]) -> Result<Vec<Part<'a>>, ParseError> {
    multipart_up_to(content_type, body, 16)
}

/// The media type of a content type, lower case, without parameters (`""` when absent).
pub fn media_type(content_type: Option<&str>) -> String {
    content_type
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// [`multipart`] with at most `max_parts` parts (a DICOM series is a part per slice).
pub fn multipart_up_to<'a>(
    content_type: &str,
    body: &'a [u8],
    max_parts: usize,
) -> Result<Vec<Part<'a>>, ParseError> {
    let e = |m: &str| ParseError::Multipart(m.into());
    let b = boundary(content_type).ok_or_else(|| e("the content type names no boundary"))?;
    if b.is_empty() || b.len() > 70 {
        return Err(e("the boundary must be 1 to 70 characters"));
    }
    let delim = format!("--{b}");
    let next_delim = format!("\r\n--{b}");
    let mut at = find(body, delim.as_bytes(), 0).ok_or_else(|| e("no boundary line"))?;
    let mut parts = Vec::new();
    loop {
        at += delim.len();
        if body.get(at..at + 2) == Some(b"--") {
            return Ok(parts);
        }
        if body.get(at..at + 2) != Some(b"\r\n") {
            return Err(e("a boundary line does not end in CRLF"));
        }
        at += 2;
        let head_end =
            find(body, b"\r\n\r\n", at).ok_or_else(|| e("a part's headers do not end"))?;
        let head = std::str::from_utf8(&body[at..head_end])
            .map_err(|_| e("a part's headers are not UTF-8"))?;
        let data_start = head_end + 4;
        let end = find(body, next_delim.as_bytes(), data_start)
            .ok_or_else(|| e("a part is not closed by a boundary"))?;
        let (mut name, mut filename) = (None, None);
        for line in head.split("\r\n") {
            let Some((k, v)) = line.split_once(':') else {
                return Err(e("a part header has no colon"));
            };
            if !k.trim().eq_ignore_ascii_case("content-disposition") {
                continue;
            }
            for p in v.split(';').skip(1) {
                if let Some((pk, pv)) = p.trim().split_once('=') {
                    let pv = pv.trim().trim_matches('"').to_string();
                    match pk.trim() {
                        "name" => name = Some(pv),
                        "filename" => filename = Some(pv),
                        _ => {}
                    }
                }
            }
        }
        parts.push(Part {
            name: name.ok_or_else(|| e("a part has no name in its Content-Disposition"))?,
            filename,
            data: &body[data_start..end],
        });
        if parts.len() > max_parts {
            return Err(ParseError::Multipart(format!(
                "more than {max_parts} parts"
            )));
        }
        at = end + 2;
    }
}

/// A CT upload for `/v1/detect`: the files to write into a fresh folder, header first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CtUpload<'a> {
    /// The series uid (the header's file name without `.mhd`).
    pub uid: String,
    /// The `.mhd` bytes.
    pub header: &'a [u8],
    /// The data file's name and bytes (none for `ElementDataFile = LOCAL`).
    pub data: Option<(String, &'a [u8])>,
}

/// A file name a client may choose: a plain name (no folders, not hidden) of safe characters.
pub fn safe_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && !s.starts_with('.')
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
}

/// The uid of a header file name (`1.2.3.mhd` → `1.2.3`), checked by [`safe_name`].
fn uid_of(file: &str) -> Result<String, ParseError> {
    let uid = file.strip_suffix(".mhd").unwrap_or(file);
    if safe_name(uid) {
        Ok(uid.into())
    } else {
        Err(ParseError::Upload(format!(
            "`{file}` is not usable as a series uid (letters, digits, `.`, `_`, `-`; at most 128)"
        )))
    }
}

/// Parses a `/v1/detect` body: `multipart/form-data` with parts `mhd` and `raw` (their file
/// names as written by the client), or a MetaImage with LOCAL data (`uid` from `?uid=`,
/// else `default_uid`).
pub fn ct_upload<'a>(
    content_type: Option<&str>,
    query_uid: Option<&str>,
    default_uid: &str,
    body: &'a [u8],
) -> Result<CtUpload<'a>, ParseError> {
    let ct = content_type.unwrap_or("");
    let kind = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if kind == "multipart/form-data" {
        let parts = multipart(ct, body)?;
        let get = |n: &str| parts.iter().find(|p| p.name == n);
        let mhd = get("mhd").ok_or_else(|| {
            ParseError::Upload("the multipart body has no `mhd` part (the CT's header)".into())
        })?;
        let raw = get("raw").ok_or_else(|| {
            ParseError::Upload(
                "the multipart body has no `raw` part (the file the header's ElementDataFile names)"
                    .into(),
            )
        })?;
        let file = |p: &Part, what: &str| {
            p.filename
                .clone()
                .ok_or_else(|| ParseError::Upload(format!("the `{what}` part needs a filename")))
        };
        let uid = uid_of(&file(mhd, "mhd")?)?;
        let raw_name = file(raw, "raw")?;
        if !safe_name(&raw_name) || raw_name.ends_with(".mhd") {
            return Err(ParseError::Upload(format!(
                "`{raw_name}` is not usable as a data file name (a plain name of letters, digits, `.`, `_`, `-`)"
            )));
        }
        return Ok(CtUpload {
            uid,
            header: mhd.data,
            data: Some((raw_name, raw.data)),
        });
    }
    if !matches!(
        kind.as_str(),
        "" | "application/octet-stream" | "application/x-metaimage"
    ) {
        return Err(ParseError::ContentType {
            got: kind,
            expected: "`multipart/form-data` with parts `mhd` and `raw`, or a MetaImage with `ElementDataFile = LOCAL`",
        });
    }
    let head = &body[..body.len().min(64 * 1024)];
    let text = String::from_utf8_lossy(head);
    let local = text
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once('=')?;
            (k.trim() == "ElementDataFile").then(|| v.trim().to_string())
        })
        .ok_or_else(|| {
            ParseError::Upload(
                "the body is not a MetaImage: no `ElementDataFile` line in its first 64 KiB".into(),
            )
        })?;
    if local != "LOCAL" {
        return Err(ParseError::Upload(format!(
            "a single-file CT must have `ElementDataFile = LOCAL`, not `{local}`; send the header and its data file as multipart parts `mhd` and `raw`"
        )));
    }
    Ok(CtUpload {
        uid: uid_of(query_uid.unwrap_or(default_uid))?,
        header: body,
        data: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    const SHAPE: [usize; 3] = [2, 3, 4];

    fn npy_file(descr: &str, shape: &str, data: &[u8]) -> Vec<u8> {
        let mut h = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
        while (10 + h.len() + 1) % 64 != 0 {
            h.push(' ');
        }
        h.push('\n');
        npy_raw(&h, data)
    }

    #[test]
    fn raw_and_npy_crops_decode_to_the_same_bytes() {
        let data: Vec<u8> = (0..96u8).collect();
        let raw = classify_body(
            Some("application/octet-stream"),
            Some("2,2,3,4"),
            &data,
            SHAPE,
        )
        .unwrap();
        assert_eq!(raw.n, 2);
        assert_eq!(raw.bytes, data);
        let np = classify_body(
            Some("application/x-npy"),
            None,
            &npy_file("<i2", "(2, 2, 3, 4)", &data),
            SHAPE,
        )
        .unwrap();
        assert_eq!(np, raw);
        let one = classify_body(
            None,
            None,
            &npy_file("<i2", "(1, 1, 2, 3, 4)", &data[..48]),
            SHAPE,
        )
        .unwrap();
        assert_eq!(one.n, 1);
    }

    #[test]
    fn bad_crops_name_the_problem() {
        let data = vec![0u8; 48];
        let err = |ct, sh, b: &[u8]| classify_body(ct, sh, b, SHAPE).unwrap_err().to_string();
        assert_eq!(
            err(Some("application/octet-stream"), None, &data),
            "raw crops need an `x-shape` header `N,2,3,4` (or `2,3,4`): it is missing"
        );
        assert_eq!(
            err(Some("application/octet-stream"), Some("2,2,3,5"), &data),
            "crops of shape [2, 3, 5] do not fit the model, which takes [2, 3, 4] (d, h, w) i16 crops"
        );
        assert_eq!(
            err(Some("application/octet-stream"), Some("3,2,3,4"), &data),
            "the body has 48 bytes, but 3 crops of [2, 3, 4] i16 are 144 bytes"
        );
        assert!(err(
            Some("application/x-npy"),
            None,
            &npy_file("<f4", "(2, 3, 4)", &data)
        )
        .contains("dtype '<f4' is not little-endian int16"));
        assert!(err(Some("text/plain"), None, &data)
            .starts_with("unsupported content type `text/plain`"));
        assert_eq!(
            err(Some("application/octet-stream"), Some("0,2,3,4"), &[]),
            "the request holds no crops"
        );
    }

    /// A `.npy` file (version 1) with `header` as written, unpadded.
    fn npy_raw(header: &str, data: &[u8]) -> Vec<u8> {
        let mut v = NPY_MAGIC.to_vec();
        v.extend([1, 0]);
        v.extend((header.len() as u16).to_le_bytes());
        v.extend(header.as_bytes());
        v.extend(data);
        v
    }

    #[test]
    fn an_npy_header_cannot_hide_its_dtype_inside_another_value() {
        let data = vec![0u8; 48];
        let hidden = "{'shape': (2, 3, 4), 'x': \"'descr': '<i2', 'fortran_order': False\", 'descr': '>f8', 'fortran_order': True}\n";
        let err = classify_body(
            Some("application/x-npy"),
            None,
            &npy_raw(hidden, &data),
            SHAPE,
        )
        .unwrap_err();
        assert!(err.to_string().contains("the header has the keys"), "{err}");
        let later = "{'shape': (2, 3, 4), 'descr': '>f8', 'fortran_order': False}\n";
        let err = classify_body(
            Some("application/x-npy"),
            None,
            &npy_raw(later, &data),
            SHAPE,
        )
        .unwrap_err();
        assert!(err.to_string().contains("dtype '>f8'"), "{err}");
    }

    #[test]
    fn multipart_parts_and_a_local_metaimage_parse() {
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"mhd\"; filename=\"1.2.3.mhd\"\r\n\r\nNDims = 3\r\n--XyZ\r\nContent-Disposition: form-data; name=\"raw\"; filename=\"1.2.3.raw\"\r\nContent-Type: application/octet-stream\r\n\r\n\x00\x01\r\n--XyZ--\r\n";
        let up = ct_upload(Some("multipart/form-data; boundary=XyZ"), None, "r", body).unwrap();
        assert_eq!(up.uid, "1.2.3");
        assert_eq!(up.header, b"NDims = 3");
        assert_eq!(up.data, Some(("1.2.3.raw".to_string(), &b"\x00\x01"[..])));
        let local = b"NDims = 3\nElementDataFile = LOCAL\n\x01\x02";
        let up = ct_upload(None, Some("ct7"), "r", local).unwrap();
        assert_eq!((up.uid.as_str(), up.data), ("ct7", None));
        let e = ct_upload(None, None, "r", b"NDims = 3\nElementDataFile = a.raw\n").unwrap_err();
        assert!(e.to_string().contains("not `a.raw`"), "{e}");
        let evil = String::from_utf8_lossy(body).replace("1.2.3.raw", "../x.raw");
        let e = ct_upload(
            Some("multipart/form-data; boundary=XyZ"),
            None,
            "r",
            evil.as_bytes(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("`../x.raw` is not usable"), "{e}");
    }

    /// Mutates `seed` bodies: flips, truncations, insertions of structure bytes.
    fn mutate(rng: &mut rand_pcg::Pcg64, seed: &[u8]) -> Vec<u8> {
        let mut v = seed.to_vec();
        for _ in 0..rng.random_range(1..8) {
            let pick: u8 = rng.random_range(0..5);
            let at = if v.is_empty() {
                0
            } else {
                rng.random_range(0..v.len())
            };
            match pick {
                0 if !v.is_empty() => v[at] = rng.random(),
                1 => v.truncate(at),
                2 => {
                    let tok: &[u8] = [
                        &b"\r\n"[..],
                        b"--XyZ",
                        b"\r\n\r\n",
                        b"'shape': (",
                        b")",
                        b",",
                        b"=",
                        b"\"",
                        b"\x93NUMPY",
                    ][rng.random_range(0..9)];
                    v.splice(at..at, tok.iter().copied());
                }
                3 => {
                    let n = rng.random_range(0..64);
                    v.splice(at..at, (0..n).map(|_| rng.random::<u8>()));
                }
                _ => {
                    if at < v.len() {
                        let end = rng.random_range(at..v.len());
                        v.drain(at..end);
                    }
                }
            }
        }
        v
    }

    #[test]
    fn ten_thousand_generated_bodies_per_parser_never_panic() {
        let started = std::time::Instant::now();
        let mut rng = rand_pcg::Pcg64::seed_from_u64(13);
        let data: Vec<u8> = (0..96u8).collect();
        let seeds: Vec<Vec<u8>> = vec![
            npy_file("<i2", "(2, 2, 3, 4)", &data),
            b"--XyZ\r\nContent-Disposition: form-data; name=\"mhd\"; filename=\"a.mhd\"\r\n\r\nNDims = 3\r\n--XyZ\r\nContent-Disposition: form-data; name=\"raw\"; filename=\"a.raw\"\r\n\r\n\x00\x01\r\n--XyZ--\r\n".to_vec(),
            b"NDims = 3\nElementDataFile = LOCAL\n\x01\x02".to_vec(),
            data.clone(),
        ];
        let mut accepted = [0usize; 4];
        for i in 0..12_000 {
            let body = mutate(&mut rng, &seeds[i % seeds.len()]);
            let shape_h = format!("{},2,3,4", rng.random_range(0..4));
            accepted[0] +=
                usize::from(classify_body(Some("application/x-npy"), None, &body, SHAPE).is_ok());
            accepted[1] += usize::from(
                classify_body(
                    Some("application/octet-stream"),
                    Some(&shape_h),
                    &body,
                    SHAPE,
                )
                .is_ok(),
            );
            accepted[2] += usize::from(
                ct_upload(Some("multipart/form-data; boundary=XyZ"), None, "r", &body).is_ok(),
            );
            accepted[3] += usize::from(ct_upload(None, Some("u"), "r", &body).is_ok());
        }
        // the generator reaches the accepting paths too, not only the first check
        assert!(accepted.iter().all(|&a| a > 0), "{accepted:?}");
        assert!(
            started.elapsed().as_secs() < 60,
            "parsers took {:?}",
            started.elapsed()
        );
    }
}
