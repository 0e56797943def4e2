//! `cluster` against scipy.ndimage (binary_erosion, label, center_of_mass with HU weights):
//! hand-made volumes with touching, diagonal-only, border and single-voxel components, and the
//! stage through the binary on synthetic CTs with probability volumes written by h5py.

use std::path::PathBuf;

use luna::cluster::{find_clusters, Erosion};
use luna::ct::{Geometry, Xyz};
use luna::tables::{read_rows, ClusterRow};
use rand::{Rng, SeedableRng};

use crate::engine_support::Ws;

#[derive(Clone)]
struct Case {
    name: &'static str,
    shape: [usize; 3],
    prob: Vec<u8>,
    hu: Vec<i16>,
}

fn set_box(prob: &mut [u8], shape: [usize; 3], lo: [usize; 3], hi: [usize; 3], v: u8) {
    for i in lo[0]..=hi[0] {
        for r in lo[1]..=hi[1] {
            for c in lo[2]..=hi[2] {
                prob[(i * shape[1] + r) * shape[2] + c] = v;
            }
        }
    }
}

fn cases() -> Vec<Case> {
    let mut rng = rand_pcg::Pcg64::seed_from_u64(5);
    let mut out = Vec::new();
    let shape = [12, 14, 16];
    let n: usize = shape.iter().product();
    let hu = |rng: &mut rand_pcg::Pcg64| -> Vec<i16> {
        (0..n).map(|_| rng.random_range(-1500..1500)).collect()
    };
    // two 4³ cubes sharing a face: one component; a 3³ cube: erodes to one voxel
    let mut p = vec![0u8; n];
    set_box(&mut p, shape, [1, 1, 1], [4, 4, 4], 255);
    set_box(&mut p, shape, [1, 1, 5], [4, 4, 8], 200);
    set_box(&mut p, shape, [7, 8, 10], [9, 10, 12], 180);
    out.push(Case {
        name: "touching_and_single_voxel",
        shape,
        prob: p,
        hu: hu(&mut rng),
    });
    // cubes touching only along an edge (diagonal after erosion): separate components
    let mut p = vec![0u8; n];
    set_box(&mut p, shape, [2, 2, 2], [5, 5, 5], 255);
    set_box(&mut p, shape, [2, 6, 6], [5, 9, 9], 255);
    out.push(Case {
        name: "diagonal_only",
        shape,
        prob: p,
        hu: hu(&mut rng),
    });
    // a slab on the volume border: its border layer is eroded
    let mut p = vec![0u8; n];
    set_box(&mut p, shape, [0, 0, 0], [3, 13, 15], 255);
    out.push(Case {
        name: "border",
        shape,
        prob: p,
        hu: hu(&mut rng),
    });
    // probabilities right at the threshold: 128/255 > 0.5, 127/255 is not
    let mut p = vec![127u8; n];
    set_box(&mut p, shape, [3, 3, 3], [8, 8, 8], 128);
    out.push(Case {
        name: "threshold_edge",
        shape,
        prob: p,
        hu: hu(&mut rng),
    });
    // a blob on one slice (a small nodule on thick slices), and one on the last slice
    let mut p = vec![0u8; n];
    set_box(&mut p, shape, [5, 3, 3], [5, 7, 7], 255);
    set_box(&mut p, shape, [11, 8, 8], [11, 12, 12], 255);
    out.push(Case {
        name: "one_slice_blob",
        shape,
        prob: p,
        hu: hu(&mut rng),
    });
    // random blobs
    let p: Vec<u8> = (0..n)
        .map(|_| if rng.random_bool(0.7) { 255 } else { 0 })
        .collect();
    out.push(Case {
        name: "random",
        shape,
        prob: p,
        hu: hu(&mut rng),
    });
    out
}

fn geometry() -> Geometry {
    let (s, c) = (0.3f64.sin(), 0.3f64.cos());
    Geometry::new(
        Xyz {
            x: -150.5,
            y: -20.25,
            z: -300.0,
        },
        Xyz {
            x: 0.7,
            y: 0.75,
            z: 2.5,
        },
        [[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]],
        std::path::Path::new("test"),
    )
    .unwrap()
}

fn compare(name: &str, ours: &[(u64, [f64; 3], [f64; 3])], theirs: &serde_json::Value) {
    let t = theirs.as_array().unwrap();
    assert_eq!(ours.len(), t.len(), "{name}: component count");
    for (k, ((vox, irc, xyz), o)) in ours.iter().zip(t).enumerate() {
        assert_eq!(*vox, o["voxels"].as_u64().unwrap(), "{name} #{k}: voxels");
        for a in 0..3 {
            let (i, x) = (o["irc"][a].as_f64().unwrap(), o["xyz"][a].as_f64().unwrap());
            assert!(
                (irc[a] - i).abs() <= 1e-6,
                "{name} #{k}: irc[{a}] {} vs scipy {i}",
                irc[a]
            );
            assert!(
                (xyz[a] - x).abs() <= 1e-6,
                "{name} #{k}: xyz[{a}] {} vs scipy {x}",
                xyz[a]
            );
        }
    }
}

#[test]
fn clusters_equal_scipy_on_hand_made_volumes() {
    let dir = tempfile::tempdir().unwrap();
    let g = geometry();
    let mut spec = Vec::new();
    let mut ours = Vec::new();
    for (c, erosion) in cases()
        .into_iter()
        .flat_map(|c| [Erosion::Cross3d, Erosion::InPlane, Erosion::None].map(|e| (c.clone(), e)))
    {
        let tag = serde_json::to_value(erosion).unwrap();
        let tag = tag.as_str().unwrap();
        let c = Case {
            name: Box::leak(format!("{}_{tag}", c.name).into_boxed_str()),
            ..c
        };
        let (pf, hf) = (
            dir.path().join(format!("{}.u8", c.name)),
            dir.path().join(format!("{}.i16", c.name)),
        );
        std::fs::write(&pf, &c.prob).unwrap();
        std::fs::write(
            &hf,
            c.hu.iter()
                .flat_map(|v| v.to_le_bytes())
                .collect::<Vec<u8>>(),
        )
        .unwrap();
        spec.push(serde_json::json!({
            "name": c.name, "shape": c.shape, "prob": pf, "hu": hf, "threshold": 0.5, "erosion": tag,
            "origin": [g.origin.x, g.origin.y, g.origin.z],
            "spacing": [g.spacing.x, g.spacing.y, g.spacing.z],
            "direction": g.direction.iter().flatten().collect::<Vec<_>>(),
        }));
        let clipped: Vec<i16> = c.hu.iter().map(|v| (*v).clamp(-1000, 1000)).collect();
        let found = find_clusters(&c.prob, &clipped, c.shape, &g, 0.5, erosion);
        ours.push((
            c.name,
            found
                .iter()
                .map(|k| {
                    (
                        k.voxels,
                        k.center_irc,
                        [k.center_xyz.x, k.center_xyz.y, k.center_xyz.z],
                    )
                })
                .collect::<Vec<_>>(),
        ));
    }
    let sp = dir.path().join("cases.json");
    std::fs::write(&sp, serde_json::json!({ "cases": spec }).to_string()).unwrap();
    let out = std::process::Command::new(crate::py::python())
        .arg(format!("{}/tests/oracle/cluster_scipy.py", crate::REPO))
        .args(["cases".as_ref(), sp.as_os_str()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let scipy: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for (name, o) in &ours {
        compare(name, o, &scipy[*name]);
    }
    // the expected shapes of the hand-made cases
    let count = |n: &str| ours.iter().find(|(k, _)| *k == n).unwrap().1.len();
    assert_eq!(count("touching_and_single_voxel_3d"), 2);
    assert_eq!(ours[0].1[1].0, 1, "a 3³ cube erodes to a single voxel");
    assert_eq!(count("diagonal_only_3d"), 2);
    assert_eq!(count("border_3d"), 1);
    assert_eq!(count("threshold_edge_3d"), 1);
    // a one-slice blob survives the in-plane erosion only
    assert_eq!(count("one_slice_blob_3d"), 0);
    assert_eq!(
        count("one_slice_blob_2d"),
        2,
        "end slices are not eroded in-plane"
    );
    assert_eq!(count("one_slice_blob_none"), 2);
}

#[test]
fn cluster_stage_equals_scipy_on_synthetic_cts() {
    let ws = Ws::new();
    ws.pipeline(
        "c",
        &format!(
            "pipeline: c\nstages:\n  data:\n    uses: synth\n    with: {{ preset: tiny, seed: 2 }}\n\
             \x20 seg:\n    uses: command\n    needs: [data]\n    with: {{ run: '\"$LUNA_PYTHON\" {repo}/tests/oracle/write_prob_volumes.py \"$LUNA_IN_DATA\" \"$LUNA_OUT\"', provides: [probabilities] }}\n\
             \x20 clusters:\n    uses: cluster\n    needs: [seg, data]\n",
            repo = crate::REPO
        ),
    );
    let py = crate::py::python();
    ws.luna_env(&["run", "c"], &[("LUNA_PYTHON", py.to_str().unwrap())])
        .expect_code(0);
    let dir = |s: &str| PathBuf::from(ws.luna(&["path", "c", s]).stdout.trim());
    let rows = read_rows::<ClusterRow>(&dir("clusters").join("clusters.parquet")).unwrap();
    assert!(!rows.is_empty());
    let out = std::process::Command::new(&py)
        .arg(format!("{}/tests/oracle/cluster_scipy.py", crate::REPO))
        .arg("stage")
        .arg(dir("seg").join("probs"))
        .arg(dir("data"))
        .arg("0.5")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let scipy: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let series = scipy.as_object().unwrap();
    assert!(series.len() >= 2);
    for (uid, theirs) in series {
        let ours: Vec<_> = rows
            .iter()
            .filter(|r| &r.series_uid == uid)
            .map(|r| (r.voxels as u64, r.center_irc, r.center_xyz))
            .collect();
        compare(uid, &ours, theirs);
    }
    // seriesuids.csv: every series clustered (with or without clusters), sorted.
    let mut volumes: Vec<String> = std::fs::read_dir(dir("seg").join("probs"))
        .unwrap()
        .map(|e| {
            e.unwrap()
                .path()
                .file_stem()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    volumes.sort();
    let listed = std::fs::read_to_string(dir("clusters").join("seriesuids.csv")).unwrap();
    assert_eq!(
        listed,
        volumes.iter().map(|u| format!("{u}\n")).collect::<String>()
    );
}

#[test]
fn a_probability_volume_whose_geometry_disagrees_with_its_ct_is_an_error() {
    let ws = Ws::new();
    ws.pipeline(
        "c",
        &format!(
            "pipeline: c\nstages:\n  data:\n    uses: synth\n    with: {{ preset: tiny, seed: 2 }}\n\
             \x20 seg:\n    uses: command\n    needs: [data]\n    with: {{ run: '\"$LUNA_PYTHON\" {repo}/tests/oracle/write_prob_volumes.py \"$LUNA_IN_DATA\" \"$LUNA_OUT\" && \"$LUNA_PYTHON\" -c \"import glob, h5py; f = sorted(glob.glob(\\\"$LUNA_OUT/probs/*.h5\\\"))[0]; h = h5py.File(f, \\\"r+\\\"); h[\\\"prob\\\"].attrs[\\\"origin_xyz\\\"] = [1.0, 2.0, 3.0]\"', provides: [probabilities] }}\n\
             \x20 clusters:\n    uses: cluster\n    needs: [seg, data]\n",
            repo = crate::REPO
        ),
    );
    let py = crate::py::python();
    let out = ws.luna_env(&["run", "c"], &[("LUNA_PYTHON", py.to_str().unwrap())]);
    out.expect_code(1);
    assert!(
        out.stderr.contains("its geometry disagrees with the CT")
            && out.stderr.contains(".h5:")
            && out.stderr.contains(".mhd"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("re-run the segmentation"),
        "{}",
        out.stderr
    );
}
