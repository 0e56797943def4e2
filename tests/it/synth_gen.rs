//! Synth generator: determinism, CSV shapes, option parsing, preset features, timing.

use crate::synth_support::{synth_files, synth_read_csv};
use luna::synth::{generate, Preset, SynthOptions, MALIGNANCY_HEADER};
use std::path::Path;
use std::time::Instant;

fn tiny(seed: u64) -> SynthOptions {
    SynthOptions {
        seed,
        ..SynthOptions::preset(Preset::Tiny)
    }
}

fn gen(opts: &SynthOptions, dir: &Path) -> luna::synth::SynthSummary {
    generate(opts, dir, &|_| {}).expect("tiny generation succeeds")
}

#[test]
fn synth_same_seed_gives_identical_bytes_and_other_seed_differs() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let c = tempfile::tempdir().unwrap();
    gen(&tiny(11), a.path());
    // one worker thread: same bytes whatever the scheduling
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    pool.install(|| gen(&tiny(11), b.path()));
    gen(&tiny(12), c.path());
    let fa = synth_files(a.path());
    assert_eq!(fa, synth_files(b.path()));
    // 4 series × 2 files + 5 CSVs + truth json
    assert_eq!(fa.len(), 4 * 2 + 6, "{fa:?}");
    for f in &fa {
        let x = std::fs::read(a.path().join(f)).unwrap();
        let y = std::fs::read(b.path().join(f)).unwrap();
        assert!(
            x == y,
            "{} differs between two runs with one seed",
            f.display()
        );
    }
    let fc = synth_files(c.path());
    assert_ne!(fa, fc, "another seed must give other series UIDs");
    for name in ["annotations.csv", "candidates.csv", "seriesuids.csv"] {
        assert_ne!(
            std::fs::read(a.path().join(name)).unwrap(),
            std::fs::read(c.path().join(name)).unwrap()
        );
    }
}

#[test]
fn synth_csv_shapes_match_luna16_and_the_book() {
    let d = tempfile::tempdir().unwrap();
    let s = gen(&tiny(3), d.path());
    let p = d.path();
    let (h, ann) = synth_read_csv(&p.join("annotations.csv"));
    assert_eq!(h, "seriesuid,coordX,coordY,coordZ,diameter_mm");
    assert!(ann.iter().all(|r| r.len() == 5));
    assert_eq!(ann.len(), s.nodules);
    let (h, mal) = synth_read_csv(&p.join("annotations_with_malignancy.csv"));
    assert_eq!(h, MALIGNANCY_HEADER);
    assert_eq!(h.split(',').count(), 14);
    assert_eq!(mal.len(), s.nodules);
    for r in &mal {
        assert_eq!(r.len(), 14, "{r:?}");
        assert!(r[5] == "True" || r[5] == "False", "mal_bool {}", r[5]);
        let ratings: Vec<u8> = r[6]
            .trim_matches(|c| c == '[' || c == ']')
            .split(", ")
            .map(|v| v.parse().unwrap())
            .collect();
        assert_eq!(ratings.len().to_string(), r[13]);
        assert_eq!(
            ratings.iter().filter(|&&v| v >= 4).count() >= 2,
            r[5] == "True"
        );
        let f: Vec<f64> = r[1..5]
            .iter()
            .chain(&r[7..13])
            .map(|v| v.parse().unwrap())
            .collect();
        for k in 0..3 {
            let rad = f[3] / 2.0;
            assert!(
                (f[4 + k] - (f[k] - rad)).abs() < 1e-9 && (f[7 + k] - (f[k] + rad)).abs() < 1e-9
            );
        }
    }
    assert_eq!(mal.iter().filter(|r| r[5] == "True").count(), s.malignant);
    // same nodules, same order as annotations.csv
    for (m, a) in mal.iter().zip(&ann) {
        assert_eq!(m[..5], a[..]);
    }
    let (h, cand) = synth_read_csv(&p.join("candidates.csv"));
    assert_eq!(h, "seriesuid,coordX,coordY,coordZ,class");
    assert!(cand
        .iter()
        .all(|r| r.len() == 5 && (r[4] == "0" || r[4] == "1")));
    assert_eq!(cand.len(), s.candidates);
    assert_eq!(
        cand.iter().filter(|r| r[4] == "1").count(),
        s.positive_candidates
    );
    // every nodule has at least one class-1 mark within a quarter diameter, none exactly on it
    for a in &ann {
        let c: Vec<f64> = a[1..5].iter().map(|v| v.parse().unwrap()).collect();
        let near: Vec<f64> = cand
            .iter()
            .filter(|r| r[0] == a[0] && r[4] == "1")
            .map(|r| {
                (1..4)
                    .map(|k| (r[k].parse::<f64>().unwrap() - c[k - 1]).powi(2))
                    .sum::<f64>()
                    .sqrt()
            })
            .filter(|&dd| dd <= c[3] / 4.0)
            .collect();
        assert!(!near.is_empty() && near.iter().all(|&dd| dd > 0.0), "{a:?}");
    }
    let (h, exc) = synth_read_csv(&p.join("annotations_excluded.csv"));
    assert_eq!(h, "seriesuid,coordX,coordY,coordZ,diameter_mm");
    assert!(exc
        .iter()
        .all(|r| r.len() == 5 && r[4].parse::<f64>().unwrap() < 3.0));
    let uids = std::fs::read_to_string(p.join("seriesuids.csv")).unwrap();
    let uids: Vec<&str> = uids.lines().collect();
    assert_eq!(uids.len(), 4, "no header, one UID per line");
    for u in &uids {
        assert!(u.starts_with("1.3.6.1.4.1.14519.5.2.1.6279.6001."));
        let n = std::fs::read_dir(p).unwrap().filter(|e| {
            let sub = e.as_ref().unwrap().path();
            sub.join(format!("{u}.mhd")).is_file() && sub.join(format!("{u}.raw")).is_file()
        });
        assert_eq!(n.count(), 1, "{u} must be in exactly one subset folder");
    }
    let truth: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(p.join("synth_truth.json")).unwrap())
            .unwrap();
    assert_eq!(truth["series"].as_array().unwrap().len(), 4);
}

#[test]
fn synth_tiny_has_compressed_flipped_and_rotated_series() {
    let d = tempfile::tempdir().unwrap();
    gen(&tiny(5), d.path());
    let mut headers = Vec::new();
    for f in synth_files(d.path()) {
        if f.extension().is_some_and(|e| e == "mhd") {
            headers.push(std::fs::read_to_string(d.path().join(f)).unwrap());
        }
    }
    assert_eq!(headers.len(), 4);
    assert!(headers
        .iter()
        .any(|h| h.contains("CompressedData = True\nCompressedDataSize = ")));
    assert!(headers
        .iter()
        .any(|h| h.contains("CompressedData = False\n")));
    assert!(headers.iter().any(|h| h.contains("TransformMatrix = -1 ")));
    let rotated = headers.iter().any(|h| {
        let tm: Vec<f64> = h
            .lines()
            .find_map(|l| l.strip_prefix("TransformMatrix = "))
            .unwrap()
            .split(' ')
            .map(|v| v.parse().unwrap())
            .collect();
        tm[1].abs() > 0.08 && (tm[1] + tm[3]).abs() < 1e-12
    });
    assert!(rotated, "tiny must include a true z rotation");
    let first = headers[0]
        .lines()
        .map(|l| l.split(" = ").next().unwrap())
        .collect::<Vec<_>>();
    let mut expect = vec![
        "ObjectType",
        "NDims",
        "BinaryData",
        "BinaryDataByteOrderMSB",
        "CompressedData",
    ];
    if headers[0].contains("CompressedDataSize") {
        expect.push("CompressedDataSize");
    }
    expect.extend([
        "TransformMatrix",
        "Offset",
        "CenterOfRotation",
        "AnatomicalOrientation",
        "ElementSpacing",
        "DimSize",
        "ElementType",
        "ElementDataFile",
    ]);
    assert_eq!(first, expect);
}

#[test]
fn synth_options_from_yaml_take_preset_defaults_and_reject_bad_values() {
    let o: SynthOptions = serde_yaml::from_str("{preset: tiny, seed: 3}").unwrap();
    let r = o.resolve().unwrap();
    assert_eq!((r.series, r.subsets, r.seed), (4, 2, 3));
    let o: SynthOptions = serde_yaml::from_str("{preset: real, series: 12}").unwrap();
    assert_eq!(o.resolve().unwrap().series, 12);
    assert_eq!(o.resolve().unwrap().negatives_per_nodule, 150);
    let e = serde_yaml::from_str::<SynthOptions>("{preset: tiny, sereis: 3}").unwrap_err();
    assert!(e.to_string().contains("unknown field `sereis`"), "{e}");
    let e = serde_yaml::from_str::<SynthOptions>("{preset: huge}").unwrap_err();
    assert!(e.to_string().contains("unknown variant `huge`"), "{e}");
    let o = SynthOptions {
        rotated_fraction: Some(1.5),
        ..tiny(0)
    };
    assert_eq!(
        o.resolve().unwrap_err().to_string(),
        "synth option `rotated_fraction` = 1.5 is invalid: must be a fraction in [0, 1]; \
         fix it in the stage params or CLI flags"
    );
    let d = tempfile::tempdir().unwrap();
    assert!(generate(&o, d.path(), &|_| {}).is_err());
    let schema = serde_json::to_string(&schemars::schema_for!(SynthOptions)).unwrap();
    assert!(schema.contains("negatives_per_nodule") && schema.contains("\"tiny\""));
}

#[test]
fn synth_tiny_timing_and_progress() {
    let d = tempfile::tempdir().unwrap();
    let calls = std::sync::Mutex::new(Vec::new());
    let t = Instant::now();
    let s = generate(&tiny(1), d.path(), &|p| calls.lock().unwrap().push(p.done)).unwrap();
    let secs = t.elapsed().as_secs_f64();
    println!(
        "synth tiny: {secs:.3} s for {} series, {} nodules ({} malignant), {} candidates, {} bytes",
        s.series, s.nodules, s.malignant, s.candidates, s.bytes
    );
    let mut c = calls.into_inner().unwrap();
    c.sort();
    assert_eq!(c, vec![1, 2, 3, 4]);
    // A generous bound (it takes well under a second in a debug build, also on a busy 2-core
    // machine): it catches an accidental order-of-magnitude slowdown of the test fixture every
    // other test builds on, without being a benchmark.
    assert!(
        secs < 30.0,
        "synth tiny took {secs:.1} s (bound 30 s): the generator became much slower"
    );
}
