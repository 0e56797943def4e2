//! Deterministic synthetic LUNA16-format dataset generator (luna's embedded default data).
//!
//! `generate` writes `subset0..k/<uid>.mhd + <uid>.raw`, `annotations.csv`,
//! `annotations_with_malignancy.csv`, `candidates.csv` (V1 semantics), `annotations_excluded.csv`,
//! `seriesuids.csv` and `synth_truth.json` into one directory (`layout: flat`, the default).
//! `layout: luna16` writes the tree of the LUNA16 download instead (see [`Layout::Luna16`]):
//! `subset0…subset9/`, `annotations.csv`, `candidates_V2.csv` whose class-1 candidates sit
//! off-centre (0.3–0.8 × radius from the annotation centre), miss about one nodule in six and
//! also mark some irrelevant findings (class-1 candidates that match no annotation), the
//! evaluation bundle `evaluationScript/annotations/{annotations,annotations_excluded,seriesuids}.csv`,
//! the book's `annotations_with_malignancy.csv` and `seg-lungs-LUNA16/<uid>.mhd` lung masks
//! (3 = one lung, 4 = the other, as LUNA16's masks label lungs), so the LUNA16 template runs
//! on it unchanged.
//!
//! Decisions:
//! - Every series is planned and rendered from its own `Pcg64` seeded from `(seed, series index)`,
//!   so series are independent, generated in parallel (rayon), and the same seed gives
//!   byte-identical files. Outputs are written in series order; no hash-map order leaks out.
//! - Anatomy is modelled in the volume's *local* physical frame (`index ⊙ spacing`, mm), so
//!   rendering is a cheap per-slice loop; the direction matrix only relabels world coordinates
//!   (`world = origin + D·(index ⊙ spacing)`). Readers therefore must apply the full matrix to
//!   find a nodule (some series are flipped, some rotated 5–15° about z).
//! - Options whose default depends on the preset are `Option`s resolved by [`SynthOptions::resolve`]
//!   (rejected: plain fields with `#[serde(default)]`, which would silently take the *small*
//!   defaults for `{preset: tiny}`).
//! - Presets: `tiny` (tests), `small` (demo training), `real` (512² benchmark), `realistic`
//!   (scanner-like CTs that make detection hard; planned and rendered by [`realistic`], its own
//!   draw order, so the other presets' files are unchanged). Tiny and small
//!   have a small physical field of view, so their nodules are smaller (tiny 4–10 mm, small
//!   5–16 mm, benign and malignant sizes not overlapping) than real LUNA16 (3–30 mm, used by `real`).

mod candidates;
mod csv_out;
mod geometry;
mod plan;
pub mod realistic;
mod render;
mod shapes;
mod truth;
pub mod write_mhd;

pub use csv_out::MALIGNANCY_HEADER;
pub use geometry::SeriesGeometry;
pub use truth::{
    CandidateTruth, ExcludedTruth, NoduleAttachment, NoduleDensity, NoduleShape, NoduleTruth,
    SeriesTruth,
};

use rayon::prelude::*;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Size class of the generated dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    /// Few small volumes (80–96² × 48–64 slices) for tests.
    Tiny,
    /// Demo dataset (128–160² × 64–96 slices), enough nodules to train in minutes.
    #[default]
    Small,
    /// Realistic sizes (512² × 100–300 slices) for benchmarks.
    Real,
    /// Scanner-like CTs with what makes detection hard (512², ≤ 200 slices of 0.625–2.5 mm,
    /// textured lungs, correlated noise, airways, dense vessels, varied nodules): see
    /// [`realistic`].
    Realistic,
}

/// Which file tree `generate` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    /// Every CSV next to the subset folders (luna's demo data; V1 `candidates.csv`).
    #[default]
    Flat,
    /// The LUNA16 download: `candidates_V2.csv` (official FP-reduction candidates), the
    /// `evaluationScript/annotations/` bundle and `seg-lungs-LUNA16/` (default 10 subsets).
    Luna16,
}

impl Layout {
    /// Whether this is the default flat layout (left out of synth_truth.json).
    pub fn is_flat(&self) -> bool {
        *self == Layout::Flat
    }
}

/// Generator options; `None` fields take the preset's default (see [`SynthOptions::resolve`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields, default)]
pub struct SynthOptions {
    /// Size class; decides volume sizes, spacing ranges, nodule sizes and the defaults below.
    pub preset: Preset,
    /// Master seed; the same seed gives byte-identical files.
    pub seed: u64,
    /// File tree: `flat` (default) or `luna16` (the LUNA16 download's layout).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layout: Option<Layout>,
    /// Number of CT series (luna16 layout: at least the preset's and 20).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub series: Option<usize>,
    /// Number of `subsetN` folders (series are split into contiguous chunks; luna16 layout: 10).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subsets: Option<usize>,
    /// Inclusive range of planted nodules per series.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nodules_per_series: Option<[usize; 2]>,
    /// Negative candidates per planted nodule (at least two nodules' worth per series).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub negatives_per_nodule: Option<usize>,
    /// Fraction of series written with `CompressedData = True` (zlib).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compressed_fraction: Option<f64>,
    /// Fraction of series with a non-identity `TransformMatrix` (flips and/or z rotations).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rotated_fraction: Option<f64>,
    /// Probability that a nodule is malignant.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub malignant_fraction: Option<f64>,
    /// Probability that a nodule's `mal_bool` label is flipped relative to its rendered shape.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label_noise: Option<f64>,
}

/// Fully resolved options (every preset default filled in).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResolvedOptions {
    /// Size class.
    pub preset: Preset,
    /// Master seed.
    pub seed: u64,
    /// File tree.
    #[serde(skip_serializing_if = "Layout::is_flat")]
    pub layout: Layout,
    /// Number of CT series.
    pub series: usize,
    /// Number of subset folders.
    pub subsets: usize,
    /// Inclusive range of nodules per series.
    pub nodules_per_series: [usize; 2],
    /// Negative candidates per nodule.
    pub negatives_per_nodule: usize,
    /// Fraction of zlib-compressed series.
    pub compressed_fraction: f64,
    /// Fraction of series with a non-identity direction.
    pub rotated_fraction: f64,
    /// Probability of malignancy.
    pub malignant_fraction: f64,
    /// Probability of a flipped malignancy label.
    pub label_noise: f64,
}

impl SynthOptions {
    /// Options with every field set to the defaults of preset `p` (seed 0).
    pub fn preset(p: Preset) -> Self {
        let (series, subsets, nps, neg, comp, rot) = match p {
            Preset::Tiny => (4, 2, [1, 2], 8, 0.5, 0.5),
            Preset::Small => (40, 4, [2, 4], 20, 0.25, 0.25),
            Preset::Real => (10, 2, [2, 4], 150, 0.2, 0.2),
            Preset::Realistic => (10, 2, [1, 4], 80, 0.2, 0.2),
        };
        // the realistic malignancy model's base rate (LIDC-like: about a third malignant)
        let malignant = if p == Preset::Realistic { 0.35 } else { 0.5 };
        SynthOptions {
            preset: p,
            seed: 0,
            layout: None,
            series: Some(series),
            subsets: Some(subsets),
            nodules_per_series: Some(nps),
            negatives_per_nodule: Some(neg),
            compressed_fraction: Some(comp),
            rotated_fraction: Some(rot),
            malignant_fraction: Some(malignant),
            label_noise: Some(0.0),
        }
    }

    /// Fill `None` fields from the preset and validate ranges.
    pub fn resolve(&self) -> Result<ResolvedOptions, SynthError> {
        let d = SynthOptions::preset(self.preset);
        let pick = |a: Option<f64>, b: Option<f64>| a.or(b).expect("preset sets every field");
        let layout = self.layout.unwrap_or_default();
        let (d_series, d_subsets) = match layout {
            Layout::Flat => (d.series, d.subsets),
            Layout::Luna16 => (d.series.map(|n| n.max(20)), Some(10)),
        };
        let r = ResolvedOptions {
            preset: self.preset,
            seed: self.seed,
            layout,
            series: self.series.or(d_series).expect("preset sets every field"),
            subsets: self.subsets.or(d_subsets).expect("preset sets every field"),
            nodules_per_series: self
                .nodules_per_series
                .or(d.nodules_per_series)
                .expect("preset sets every field"),
            negatives_per_nodule: self
                .negatives_per_nodule
                .or(d.negatives_per_nodule)
                .expect("preset sets every field"),
            compressed_fraction: pick(self.compressed_fraction, d.compressed_fraction),
            rotated_fraction: pick(self.rotated_fraction, d.rotated_fraction),
            malignant_fraction: pick(self.malignant_fraction, d.malignant_fraction),
            label_noise: pick(self.label_noise, d.label_noise),
        };
        let bad = |field: &'static str, value: String, reason: &'static str| {
            Err(SynthError::InvalidOption {
                field,
                value,
                reason,
            })
        };
        if r.series == 0 {
            return bad("series", "0".into(), "need at least one series");
        }
        if r.subsets == 0 || r.subsets > r.series {
            return bad(
                "subsets",
                r.subsets.to_string(),
                "must be between 1 and the number of series",
            );
        }
        let [lo, hi] = r.nodules_per_series;
        if lo > hi || hi > 8 {
            return bad(
                "nodules_per_series",
                format!("[{lo}, {hi}]"),
                "must be [min, max] with min <= max <= 8",
            );
        }
        for (field, v) in [
            ("compressed_fraction", r.compressed_fraction),
            ("rotated_fraction", r.rotated_fraction),
            ("malignant_fraction", r.malignant_fraction),
            ("label_noise", r.label_noise),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return bad(field, v.to_string(), "must be a fraction in [0, 1]");
            }
        }
        Ok(r)
    }
}

/// Progress report, sent once per finished series (from worker threads).
#[derive(Debug, Clone, PartialEq)]
pub struct SynthProgress {
    /// Series finished so far (including this one).
    pub done: usize,
    /// Total number of series.
    pub total: usize,
    /// Series instance UID just written.
    pub uid: String,
}

/// What `generate` wrote.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SynthSummary {
    /// Output directory.
    pub out_dir: PathBuf,
    /// Number of CT series.
    pub series: usize,
    /// Planted nodules (rows of annotations.csv).
    pub nodules: usize,
    /// Nodules labelled malignant (`mal_bool = True`).
    pub malignant: usize,
    /// Rows of candidates.csv.
    pub candidates: usize,
    /// Rows of candidates.csv with class 1.
    pub positive_candidates: usize,
    /// Rows of annotations_excluded.csv.
    pub excluded: usize,
    /// Bytes of all written files.
    pub bytes: u64,
}

/// Errors of the synthetic-data generator.
#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    /// An option is out of range.
    #[error("synth option `{field}` = {value} is invalid: {reason}; fix it in the stage params or CLI flags")]
    InvalidOption {
        /// Option name.
        field: &'static str,
        /// Offending value.
        value: String,
        /// Why it is rejected.
        reason: &'static str,
    },
    /// Writing an output file failed.
    #[error("cannot write {path}: {source}; check that the output directory is writable and the disk has space")]
    Io {
        /// File or directory that failed.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// Serialising synth_truth.json failed.
    #[error(
        "cannot serialise {path}: {source}; this is a bug in luna's synth module, please report it"
    )]
    Json {
        /// File being written.
        path: PathBuf,
        /// Underlying error.
        source: serde_json::Error,
    },
}

impl SynthError {
    /// Wrap an io error with its path.
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        SynthError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// The lung-mask folder of the luna16 layout (skipped by luna's CT discovery).
pub const LUNG_MASKS: &str = "seg-lungs-LUNA16";
/// The evaluation bundle's CSV folder of the luna16 layout.
pub const EVAL_DIR: &str = "evaluationScript/annotations";

/// Render series `index` of the dataset described by `opts` without writing anything
/// (HU array in (z, y, x) order, and its geometry). Used by oracle tests.
#[doc(hidden)]
pub fn render_series(
    opts: &SynthOptions,
    index: usize,
) -> Result<(Vec<i16>, SeriesGeometry), SynthError> {
    let r = opts.resolve()?;
    let s = build_series(&r, index);
    Ok((s.data, s.geometry))
}

/// One planned and rendered series.
struct Built {
    truth: SeriesTruth,
    geometry: SeriesGeometry,
    anatomy: plan::Anatomy,
    data: Vec<i16>,
}

/// Plan and render series `index` with the preset's generator.
fn build_series(r: &ResolvedOptions, index: usize) -> Built {
    let (plan, data) = if r.preset == Preset::Realistic {
        let plan = realistic::plan_series(r, index);
        let data = realistic::render(&plan);
        (plan.base, data)
    } else {
        let plan = plan::plan_series(r, index);
        let data = render::render(&plan);
        (plan, data)
    };
    Built {
        truth: plan.truth,
        geometry: plan.geometry,
        anatomy: plan.anatomy,
        data,
    }
}

/// Generate the whole dataset into `out_dir` (created if missing; existing files are overwritten).
pub fn generate(
    opts: &SynthOptions,
    out_dir: &Path,
    progress: &(dyn Fn(SynthProgress) + Sync),
) -> Result<SynthSummary, SynthError> {
    let r = opts.resolve()?;
    std::fs::create_dir_all(out_dir).map_err(|e| SynthError::io(out_dir, e))?;
    let mut dirs: Vec<String> = (0..r.subsets).map(|s| format!("subset{s}")).collect();
    if r.layout == Layout::Luna16 {
        dirs.extend([LUNG_MASKS.to_string(), EVAL_DIR.to_string()]);
    }
    for s in dirs {
        let d = out_dir.join(s);
        std::fs::create_dir_all(&d).map_err(|e| SynthError::io(&d, e))?;
    }
    let done = std::sync::atomic::AtomicUsize::new(0);
    let truths: Vec<(SeriesTruth, u64)> = (0..r.series)
        .into_par_iter()
        .map(|i| {
            let plan = build_series(&r, i);
            let dir = out_dir.join(format!("subset{}", plan.truth.subset));
            let mut bytes =
                write_mhd::write_series(&dir, &plan.truth.uid, &plan.geometry, &plan.data)?;
            if r.layout == Layout::Luna16 {
                let masks = out_dir.join(LUNG_MASKS);
                let geometry = SeriesGeometry {
                    compressed: true,
                    ..plan.geometry.clone()
                };
                let mask = render::lung_mask(&plan.geometry, &plan.anatomy);
                bytes += write_mhd::write_series(&masks, &plan.truth.uid, &geometry, &mask)?;
            }
            let n = done.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
            progress(SynthProgress {
                done: n,
                total: r.series,
                uid: plan.truth.uid.clone(),
            });
            Ok((plan.truth, bytes))
        })
        .collect::<Result<_, SynthError>>()?;
    let mut bytes: u64 = truths.iter().map(|t| t.1).sum();
    let truths: Vec<SeriesTruth> = truths.into_iter().map(|t| t.0).collect();
    bytes += csv_out::write_all(out_dir, &r, &truths)?;
    let nodules = truths.iter().map(|t| t.nodules.len()).sum();
    let malignant = truths
        .iter()
        .flat_map(|t| &t.nodules)
        .filter(|n| n.mal_bool)
        .count();
    let candidates = truths.iter().map(|t| t.candidates.len()).sum();
    let positive_candidates = truths
        .iter()
        .flat_map(|t| &t.candidates)
        .filter(|c| c.class == 1)
        .count();
    let excluded = truths.iter().map(|t| t.excluded.len()).sum();
    Ok(SynthSummary {
        out_dir: out_dir.to_path_buf(),
        series: truths.len(),
        nodules,
        malignant,
        candidates,
        positive_candidates,
        excluded,
        bytes,
    })
}
