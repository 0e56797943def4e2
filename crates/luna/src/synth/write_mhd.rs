//! MetaImage (`.mhd` header + `.raw` data) writer for synthetic series, LUNA16 style.
//!
//! The header has the keys and order of a real LUNA16 file (ObjectType … ElementDataFile).
//! Numbers use Rust's shortest round-trip formatting, so a reader parsing doubles gets the exact
//! geometry back. `TransformMatrix` lists the direction cosines of index axis 0 (x), then axis 1,
//! then axis 2 — i.e. the columns of `D` — which is how ITK/SimpleITK read and write it
//! (`SetDirection(i, matrix[3i..3i+3])`); for LUNA16's identity and flip matrices the order does
//! not matter, for our rotated series it does. Compressed series (`CompressedData = True`) hold
//! one zlib stream (RFC 1950, as ITK writes into `.zraw`) in the file named by `ElementDataFile`,
//! which we keep as `<uid>.raw` so the layout stays `subset*/<uid>.mhd + <uid>.raw`;
//! `CompressedDataSize` gives its byte length. Data is little-endian int16 (MET_SHORT), x fastest.

use super::geometry::SeriesGeometry;
use super::SynthError;
use flate2::write::ZlibEncoder;
use flate2::Compression;
use std::io::Write;
use std::path::Path;

/// Header text for `uid` with `geometry`; `compressed_size` is `Some(bytes)` for zlib data.
pub fn header_text(uid: &str, g: &SeriesGeometry, compressed_size: Option<usize>) -> String {
    let v3 = |v: [f64; 3]| format!("{} {} {}", v[0], v[1], v[2]);
    let d = &g.direction;
    let tm: Vec<String> = (0..3)
        .flat_map(|c| (0..3).map(move |r| format!("{}", d[r][c])))
        .collect();
    let mut h = String::new();
    h.push_str(
        "ObjectType = Image\nNDims = 3\nBinaryData = True\nBinaryDataByteOrderMSB = False\n",
    );
    match compressed_size {
        Some(n) => h.push_str(&format!(
            "CompressedData = True\nCompressedDataSize = {n}\n"
        )),
        None => h.push_str("CompressedData = False\n"),
    }
    h.push_str(&format!("TransformMatrix = {}\n", tm.join(" ")));
    h.push_str(&format!("Offset = {}\n", v3(g.origin_xyz)));
    h.push_str("CenterOfRotation = 0 0 0\nAnatomicalOrientation = RAI\n");
    h.push_str(&format!("ElementSpacing = {}\n", v3(g.spacing_xyz)));
    let [x, y, z] = g.dims_xyz;
    h.push_str(&format!("DimSize = {x} {y} {z}\nElementType = MET_SHORT\n"));
    h.push_str(&format!("ElementDataFile = {uid}.raw\n"));
    h
}

/// Little-endian bytes of an i16 array.
pub fn le_bytes(data: &[i16]) -> Vec<u8> {
    let mut b = Vec::with_capacity(data.len() * 2);
    for v in data {
        b.extend_from_slice(&v.to_le_bytes());
    }
    b
}

/// Write `<dir>/<uid>.mhd` and `<dir>/<uid>.raw`; returns the bytes written.
pub fn write_series(
    dir: &Path,
    uid: &str,
    g: &SeriesGeometry,
    data: &[i16],
) -> Result<u64, SynthError> {
    debug_assert_eq!(data.len(), g.voxels(), "array length matches DimSize");
    let raw_path = dir.join(format!("{uid}.raw"));
    let mhd_path = dir.join(format!("{uid}.mhd"));
    let mut payload = le_bytes(data);
    let compressed = if g.compressed {
        let mut enc = ZlibEncoder::new(Vec::new(), Compression::default());
        enc.write_all(&payload)
            .and_then(|_| enc.finish())
            .map(|z| {
                payload = z;
                Some(payload.len())
            })
            .map_err(|e| SynthError::io(&raw_path, e))?
    } else {
        None
    };
    std::fs::write(&raw_path, &payload).map_err(|e| SynthError::io(&raw_path, e))?;
    let header = header_text(uid, g, compressed);
    std::fs::write(&mhd_path, header.as_bytes()).map_err(|e| SynthError::io(&mhd_path, e))?;
    Ok((payload.len() + header.len()) as u64)
}
