//! Test data for the training stages: a small crops artifact (HDF5 crops + `index.parquet` in
//! the `build_crops` layout) written into a workspace folder, and a pipeline that copies it in
//! with a `command` stage so `train_classifier` finds it as an upstream artifact.
//!
//! Crops are 16×16×16 (the smallest LunaModel input) so a CPU epoch takes well under a second.
//! Nodules are a bright ball at the centre on noise; malignant nodules are larger and brighter
//! than benign ones, so both tasks are learnable in a few hundred samples.

#![allow(dead_code)]

use std::path::Path;

use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64;

use luna::store::CropWriter;
use luna::tables::{read_rows, write_rows, CropIndexRow, PredictionRow, Split};

/// Crop size used by these tests.
pub const W: usize = 16;

/// What to write.
pub struct Fixture {
    /// Series (every 4th is validation).
    pub series: usize,
    /// Candidates per series.
    pub per_series: usize,
    /// Whether `is_malignant` is filled (else null, as without the malignancy CSV).
    pub malignancy: bool,
}

fn crop(rng: &mut Pcg64, radius: f64, hu: f64) -> Vec<i16> {
    let c = (W as f64 - 1.0) / 2.0;
    let mut v = vec![0i16; W * W * W];
    for z in 0..W {
        for y in 0..W {
            for x in 0..W {
                let d = ((z as f64 - c).powi(2) + (y as f64 - c).powi(2) + (x as f64 - c).powi(2))
                    .sqrt();
                let base = -800.0 + rng.random_range(-60.0..60.0);
                let val = if radius > 0.0 && d <= radius {
                    hu
                } else {
                    base
                };
                v[(z * W + y) * W + x] = val as i16;
            }
        }
    }
    v
}

/// Writes the artifact into `dir` (`crops/<uid>.h5` + `index.parquet`).
pub fn write_crops(dir: &Path, f: &Fixture) {
    std::fs::create_dir_all(dir.join("crops")).unwrap();
    let mut rng = Pcg64::seed_from_u64(7);
    let mut index = Vec::new();
    let mut id = 0i64;
    for s in 0..f.series {
        let uid = format!("1.2.3.{s}");
        let rel = format!("crops/{uid}.h5");
        let mut w = CropWriter::create(dir.join(&rel), [W, W, W], 1).unwrap();
        for k in 0..f.per_series {
            // every 3rd candidate is a nodule; nodules alternate malignant / benign
            let is_nod = k % 3 == 0;
            let is_mal = is_nod && (k / 3) % 2 == 0;
            let c = match (is_nod, is_mal) {
                (false, _) => crop(&mut rng, 0.0, 0.0),
                (true, true) => crop(&mut rng, 5.0, 400.0),
                (true, false) => crop(&mut rng, 2.5, 100.0),
            };
            let row = w.append(&c, [8, 8, 8]).unwrap();
            index.push(CropIndexRow {
                candidate_id: id,
                series_uid: uid.clone(),
                file: rel.clone(),
                row: row as i64,
                center_irc: [8; 3],
                is_nodule: is_nod,
                has_annotation: is_nod,
                is_malignant: if f.malignancy { Some(is_mal) } else { None },
                diameter_mm: match (is_nod, is_mal) {
                    (false, _) => 0.0,
                    (true, true) => 10.0,
                    (true, false) => 5.0,
                },
                split: if s % 4 == 3 { Split::Val } else { Split::Train },
            });
            id += 1;
        }
        w.finish().unwrap();
    }
    write_rows(&index, &dir.join("index.parquet")).unwrap();
}

/// A pipeline whose `crops` stage copies the fixture at `fixture/` and whose further stages
/// are `extra` (YAML lines under `stages:`).
pub fn pipeline(extra: &str) -> String {
    format!(
        "pipeline: t\nstages:\n  crops:\n    uses: command\n    with: {{ run: 'cp -r fixture/. \"$LUNA_OUT\"/', inputs: [fixture], provides: [crops] }}\n{extra}"
    )
}

/// The log of `stage` in the most recent run record directory under `root/runs`.
pub fn stage_logs(root: &Path, stage: &str) -> String {
    let mut all = String::new();
    let mut dirs: Vec<_> = std::fs::read_dir(root.join("runs"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .collect();
    dirs.sort();
    for d in dirs {
        if let Ok(s) = std::fs::read_to_string(d.join("logs").join(format!("{stage}.log"))) {
            all.push_str(&s);
        }
    }
    all
}

/// `candidate_id` → probability of an `evaluate_classifier` artifact's predictions.parquet.
pub fn predictions(dir: &Path) -> std::collections::HashMap<i64, f64> {
    read_rows::<PredictionRow>(&dir.join("predictions.parquet"))
        .unwrap()
        .into_iter()
        .map(|r| (r.candidate_id, r.probability))
        .collect()
}
