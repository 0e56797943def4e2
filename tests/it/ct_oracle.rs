//! Oracle test: every SimpleITK scalar type, raw and compressed, rotated direction; luna must read
//! identical voxels and geometry, and agree with SimpleITK's continuous index.

use luna::ct::{CtImage, IrcF, Xyz};

use crate::ct_support::run_oracle;

fn floats(line: &str) -> Vec<f64> {
    line.split_whitespace()
        .skip(1)
        .map(|t| t.parse().expect("manifest float"))
        .collect()
}

#[test]
fn ct_reads_every_sitk_type_and_matches_geometry() {
    let dir = tempfile::tempdir().expect("tempdir");
    run_oracle("ct_sitk_volumes.py", dir.path());
    let manifest = std::fs::read_to_string(dir.path().join("manifest.txt")).expect("manifest");
    let mut img: Option<CtImage> = None;
    let (mut images, mut points) = (0, 0);
    let mut compressed_seen = [false, false];
    for line in manifest.lines() {
        let kind = line.split_whitespace().next().unwrap_or("");
        match kind {
            "image" => {
                let t: Vec<&str> = line.split_whitespace().collect();
                let ct = CtImage::open(&dir.path().join(format!("{}.mhd", t[1])))
                    .unwrap_or_else(|e| panic!("{}: {e}", t[1]));
                assert_eq!(ct.element_type().met_name(), t[3], "{}", t[1]);
                assert_eq!(ct.header().expect("mhd").compressed, t[2] == "1");
                compressed_seen[usize::from(t[2] == "1")] = true;
                let want = std::fs::read(dir.path().join(format!("{}.bin", t[1]))).expect("bin");
                assert!(ct.voxels().to_le_bytes() == want, "{}: voxels differ", t[1]);
                img = Some(ct);
                images += 1;
            }
            "shape" => {
                let s: Vec<usize> = line
                    .split_whitespace()
                    .skip(1)
                    .map(|v| v.parse().expect("shape"))
                    .collect();
                assert_eq!(img.as_ref().expect("image first").shape_irc().to_vec(), s);
            }
            "spacing" | "origin" => {
                let g = img.as_ref().expect("image first").geometry();
                let v = if kind == "spacing" {
                    g.spacing
                } else {
                    g.origin
                };
                assert_eq!(vec![v.x, v.y, v.z], floats(line), "{kind}");
            }
            "direction" => {
                let g = img.as_ref().expect("image first").geometry();
                let d: Vec<f64> = g.direction.iter().flatten().copied().collect();
                assert_eq!(d, floats(line), "direction (row-major GetDirection)");
            }
            "point" => {
                let f = floats(line);
                let g = img.as_ref().expect("image first").geometry();
                let xyz = Xyz {
                    x: f[0],
                    y: f[1],
                    z: f[2],
                };
                let c = g.xyz_to_irc_continuous(xyz);
                // SimpleITK index order is (x,y,z) = (col,row,index).
                let want = IrcF {
                    col: f[3],
                    row: f[4],
                    index: f[5],
                };
                for (got, w) in [(c.col, want.col), (c.row, want.row), (c.index, want.index)] {
                    assert!(
                        (got - w).abs() < 1e-6,
                        "xyz {xyz:?}: luna {c:?} vs sitk {want:?}"
                    );
                }
                let back = g.irc_to_xyz(c);
                for (got, w) in [(back.x, xyz.x), (back.y, xyz.y), (back.z, xyz.z)] {
                    assert!((got - w).abs() < 1e-9, "round trip {xyz:?} -> {back:?}");
                }
                points += 1;
            }
            other => panic!("unknown manifest record {other:?}"),
        }
    }
    assert_eq!(images, 20, "10 pixel types x (raw, compressed)");
    assert_eq!(points, 20 * 25);
    assert_eq!(compressed_seen, [true, true]);
}

#[test]
fn ct_hu_clip_matches_numpy_semantics_for_every_type() {
    let dir = tempfile::tempdir().expect("tempdir");
    run_oracle("ct_sitk_volumes.py", dir.path());
    for entry in std::fs::read_dir(dir.path()).expect("readdir") {
        let p = entry.expect("entry").path();
        if p.extension().and_then(|e| e.to_str()) != Some("mhd") {
            continue;
        }
        let ct = CtImage::open(&p).expect("open");
        let hu = ct.hu_i16_clipped().expect("hu");
        let f = ct.to_f64_vec();
        assert_eq!(hu.len(), f.len());
        for (h, v) in hu.iter().zip(&f) {
            // numpy: np.clip(a, -1000, 1000).astype(np.int16) truncates toward zero.
            let want = v.clamp(-1000.0, 1000.0).trunc() as i16;
            assert_eq!(*h, want, "{}: value {v}", p.display());
        }
    }
}
