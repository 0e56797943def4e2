//! Synth oracle: SimpleITK reads every tiny volume with the intended array and geometry, and
//! every annotation / negative candidate lands where it should.

use luna::synth::{generate, render_series, write_mhd::le_bytes, Preset, SynthOptions};
use std::process::Command;

#[test]
fn synth_simpleitk_reads_the_intended_volumes() {
    // 6 series: 3 rotated (z rotation, xy flip, rotation + flip) and 3 compressed.
    for seed in [21, 22] {
        let opts = SynthOptions {
            seed,
            series: Some(6),
            ..SynthOptions::preset(Preset::Tiny)
        };
        check_with_simpleitk(&opts);
    }
}

fn check_with_simpleitk(opts: &SynthOptions) {
    let d = tempfile::tempdir().unwrap();
    let s = generate(opts, d.path(), &|_| {}).unwrap();
    let exp_dir = d.path().join("expected");
    std::fs::create_dir_all(&exp_dir).unwrap();
    let truth: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.path().join("synth_truth.json")).unwrap())
            .unwrap();
    let mut expected = Vec::new();
    for i in 0..s.series {
        let (data, g) = render_series(opts, i).unwrap();
        let t = &truth["series"][i];
        let uid = t["uid"].as_str().unwrap();
        let bin = exp_dir.join(format!("{uid}.bin"));
        std::fs::write(&bin, le_bytes(&data)).unwrap();
        expected.push(serde_json::json!({
            "uid": uid,
            "mhd": d.path().join(format!("subset{}/{uid}.mhd", t["subset"])),
            "expected": bin,
            "dims_xyz": g.dims_xyz, "spacing": g.spacing_xyz, "origin": g.origin_xyz,
            "direction": g.direction, "compressed": g.compressed,
        }));
    }
    let spec = d.path().join("expected.json");
    std::fs::write(
        &spec,
        serde_json::to_string(&serde_json::json!({ "root": d.path(), "series": expected }))
            .unwrap(),
    )
    .unwrap();
    let py = crate::py::python();
    let script = format!("{}/tests/oracle/synth_sitk_check.py", crate::REPO);
    let out = Command::new(&py)
        .arg(script)
        .arg(&spec)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run python {} ({e}); set LUNA_PYTHON to a python with SimpleITK and numpy",
                py.display()
            )
        });
    let so = String::from_utf8_lossy(&out.stdout);
    let se = String::from_utf8_lossy(&out.stderr);
    println!("{so}");
    assert!(out.status.success(), "oracle failed:\n{so}\n{se}");
    assert!(so.contains(&format!("OK series={}", s.series)), "{so}");
}
