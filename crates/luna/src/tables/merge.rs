//! `merge_candidates`: the book's getCandidateInfoList as a pure function, plus the series split.
//!
//! Rules (book-reference §1.2–1.4), chosen by [`MergeRule`]:
//! - [`MergeRule::Final`] (default, p2ch13/14): positives = every annotation row (annotation
//!   centre and diameter, `has_annotation = true`, its `is_malignant`); negatives = candidate rows
//!   with class 0 (candidate centre, diameter 0.0, `has_annotation = false`, `is_malignant =
//!   false` as in the book); class-1 candidate rows are dropped.
//! - [`MergeRule::DiameterMatch`] (p2ch10–12): every candidate row, `is_nodule = class == 1`,
//!   centre = candidate centre; diameter from the FIRST annotation of the same series in file
//!   (source_line) order with |Δx|, |Δy|, |Δz| each ≤ diameter/4 (an axis-aligned box), else
//!   0.0; `has_annotation` = matched; `is_malignant` = the matched annotation's label, else false.
//!   Negatives near a nodule get a diameter too (book behaviour).
//! - Without malignancy labels (every annotation has `is_malignant = None`), `is_malignant` is
//!   null on every row, negatives included, so [`require_malignancy`] can refuse the table.
//! - `require_on_disk` filters BOTH annotations and candidates (the book filters candidates only;
//!   for a partial download, positives of absent CTs would only break crop extraction).
//! - Order: the book's `sort(reverse=True)` on its tuple, i.e. descending on
//!   (is_nodule, has_annotation, is_malignant, diameter, series_uid, centre) for Final and
//!   (is_nodule, diameter, series_uid, centre) for DiameterMatch (null malignancy sorts last);
//!   the sort is stable, so exact duplicates keep file order, like Python's.
//! - candidate_id: first 8 bytes of blake3("luna.candidate.v1\0", source tag (annotation /
//!   candidate), series_uid, "\0", centre as f64 LE bits (-0.0 as 0.0), duplicate ordinal u32),
//!   shifted right by one so it is ≥ 0. Stable across runs, the same for a candidate row under
//!   both rules, and unaffected by other rows (rejected: position in the sorted list, which
//!   shifts when a CT is added and would break per-series caching downstream). A collision is an
//!   error, never silent.
//! - [`MergeRule::Official`] (LUNA16's false-positive-reduction track, for candidates_V2.csv):
//!   every candidate row with its class as given (`is_nodule = class == 1`: the positives are
//!   the class-1 candidates, off-centre, and a nodule without one has no positive), centre =
//!   candidate centre. Each candidate is joined to the **nearest** annotation of its series
//!   within the LUNA16 hit radius (distance < diameter/2, strict, as the evaluation script):
//!   then `has_annotation`, its diameter and its `is_malignant`; otherwise diameter 0.0 and
//!   `is_malignant` null (unknown — a class-1 candidate matching no annotation is a positive
//!   of unknown malignancy, never silently benign). Rejected: the per-axis box of
//!   `diameter_match` (not what LUNA16 scores) and the book's 0.7 × diameter matcher.
//! - Split: by [`SplitSpec`] (see `split.rs`), over the series of the merged table; `subset`
//!   is each series' `subsetN` folder when known. Never by candidate.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use std::path::Path;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::error::TableError;
use super::parquet::read_rows;
use super::rows::{AnnotationRow, CandidateRow, MergedRow, Split};
use super::split::{assign_splits, SplitSpec};

/// Which getCandidateInfoList version to reproduce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MergeRule {
    /// p2ch13/14: annotations are the positives, class-0 candidates the negatives.
    #[default]
    Final,
    /// p2ch10–12: every candidate, diameter from a per-axis box match to an annotation.
    DiameterMatch,
    /// LUNA16 FP reduction: candidates' classes as given, annotations joined within d/2.
    Official,
}

/// Options of [`merge_rows`] / [`merge_candidates`].
#[derive(Debug, Clone, Default)]
pub struct MergeOptions<'a> {
    /// Which rule.
    pub rule: MergeRule,
    /// How series are split (default: the book's every 10th is validation).
    pub split: SplitSpec,
    /// Keep only these series (both annotations and candidates), if given.
    pub require_on_disk: Option<&'a BTreeSet<String>>,
    /// The `subsetN` folder of each series whose CT was found (null `subset` otherwise).
    pub subsets: Option<&'a BTreeMap<String, u32>>,
}

const SRC_ANNOTATION: u8 = b'a';
const SRC_CANDIDATE: u8 = b'c';

/// Computes the stable candidate_id of a row (see the module doc).
pub fn candidate_id(
    source_is_annotation: bool,
    series_uid: &str,
    center_xyz: [f64; 3],
    ordinal: u32,
) -> i64 {
    let mut h = blake3::Hasher::new();
    h.update(b"luna.candidate.v1\0");
    h.update(&[if source_is_annotation {
        SRC_ANNOTATION
    } else {
        SRC_CANDIDATE
    }]);
    h.update(series_uid.as_bytes());
    h.update(&[0]);
    for v in center_xyz {
        let v = if v == 0.0 { 0.0f64 } else { v };
        h.update(&v.to_bits().to_le_bytes());
    }
    h.update(&ordinal.to_le_bytes());
    let bytes: [u8; 8] = h.finalize().as_bytes()[..8]
        .try_into()
        .expect("blake3 output has 32 bytes");
    (u64::from_le_bytes(bytes) >> 1) as i64
}

fn cmp_f(a: f64, b: f64) -> Ordering {
    a.partial_cmp(&b).unwrap_or(Ordering::Equal)
}

fn cmp_xyz(a: &[f64; 3], b: &[f64; 3]) -> Ordering {
    cmp_f(a[0], b[0])
        .then(cmp_f(a[1], b[1]))
        .then(cmp_f(a[2], b[2]))
}

/// The first annotation (in source_line order) whose per-axis box of half-width diameter/4 holds `c`.
fn box_match<'a>(annotations: &[&'a AnnotationRow], c: &[f64; 3]) -> Option<&'a AnnotationRow> {
    annotations.iter().copied().find(|a| {
        let r = a.diameter_mm / 4.0;
        (0..3).all(|i| (a.center_xyz[i] - c[i]).abs() <= r)
    })
}

/// Merges typed annotation and candidate rows into the sorted, split candidate table.
pub fn merge_rows(
    annotations: &[AnnotationRow],
    candidates: &[CandidateRow],
    opts: &MergeOptions<'_>,
) -> Result<Vec<MergedRow>, TableError> {
    let has_mal = annotations.iter().any(|a| a.is_malignant.is_some());
    let negative_mal = has_mal.then_some(false);
    let keep = |uid: &str| opts.require_on_disk.is_none_or(|s| s.contains(uid));
    let mut anns: Vec<&AnnotationRow> =
        annotations.iter().filter(|a| keep(&a.series_uid)).collect();
    anns.sort_by_key(|a| a.source_line);
    let cands = candidates.iter().filter(|c| keep(&c.series_uid));

    // (source_is_annotation, row) in file order; the id needs the file order for its ordinal.
    let mut rows: Vec<(bool, MergedRow)> = Vec::new();
    let blank = |uid: &str, c: [f64; 3]| MergedRow {
        candidate_id: 0,
        series_uid: uid.to_string(),
        center_xyz: c,
        is_nodule: false,
        has_annotation: false,
        is_malignant: negative_mal,
        diameter_mm: 0.0,
        split: Split::Train,
        subset: None,
    };
    match opts.rule {
        MergeRule::Final => {
            for a in &anns {
                let r = MergedRow {
                    is_nodule: true,
                    has_annotation: true,
                    is_malignant: a.is_malignant,
                    diameter_mm: a.diameter_mm,
                    ..blank(&a.series_uid, a.center_xyz)
                };
                rows.push((true, r));
            }
            let mut negs: Vec<&CandidateRow> = cands.filter(|c| c.class == 0).collect();
            negs.sort_by_key(|c| c.source_line);
            rows.extend(
                negs.into_iter()
                    .map(|c| (false, blank(&c.series_uid, c.center_xyz))),
            );
        }
        MergeRule::DiameterMatch | MergeRule::Official => {
            let mut by_series: HashMap<&str, Vec<&AnnotationRow>> = HashMap::new();
            for a in &anns {
                by_series.entry(a.series_uid.as_str()).or_default().push(a);
            }
            let mut all: Vec<&CandidateRow> = cands.collect();
            all.sort_by_key(|c| c.source_line);
            let official = opts.rule == MergeRule::Official;
            // official: unknown malignancy is null, never "benign"
            let unmatched_mal = if official { None } else { negative_mal };
            for c in all {
                let near = by_series.get(c.series_uid.as_str());
                let m = match official {
                    true => near.and_then(|v| radius_match(v, &c.center_xyz)),
                    false => near.and_then(|v| box_match(v, &c.center_xyz)),
                };
                let r = MergedRow {
                    is_nodule: c.class == 1,
                    has_annotation: m.is_some(),
                    is_malignant: m.map_or(unmatched_mal, |a| a.is_malignant),
                    diameter_mm: m.map_or(0.0, |a| a.diameter_mm),
                    ..blank(&c.series_uid, c.center_xyz)
                };
                rows.push((false, r));
            }
        }
    }
    assign_ids(&mut rows)?;
    let mut rows: Vec<MergedRow> = rows.into_iter().map(|(_, r)| r).collect();
    sort_like_book(&mut rows, opts.rule);
    let no_subsets = BTreeMap::new();
    let subsets = opts.subsets.unwrap_or(&no_subsets);
    let split = assign_splits(
        rows.iter().map(|r| r.series_uid.as_str()),
        &opts.split,
        subsets,
    )?;
    for r in &mut rows {
        r.split = split[&r.series_uid];
        r.subset = subsets.get(&r.series_uid).map(|&s| i64::from(s));
    }
    Ok(rows)
}

/// The nearest annotation whose LUNA16 hit sphere (distance < diameter/2) holds `c`; ties go
/// to the first in file order.
fn radius_match<'a>(annotations: &[&'a AnnotationRow], c: &[f64; 3]) -> Option<&'a AnnotationRow> {
    let d2 = |a: &AnnotationRow| {
        (0..3)
            .map(|i| (a.center_xyz[i] - c[i]).powi(2))
            .sum::<f64>()
    };
    annotations
        .iter()
        .copied()
        .filter(|a| d2(a) < (a.diameter_mm / 2.0).powi(2))
        .min_by(|a, b| cmp_f(d2(a), d2(b)))
}

fn assign_ids(rows: &mut [(bool, MergedRow)]) -> Result<(), TableError> {
    let mut ordinals: HashMap<(bool, &str, [u64; 3]), u32> = HashMap::new();
    let mut ids = Vec::with_capacity(rows.len());
    for (src, r) in rows.iter() {
        let bits = r.center_xyz.map(|v| if v == 0.0 { 0 } else { v.to_bits() });
        let n = ordinals
            .entry((*src, r.series_uid.as_str(), bits))
            .or_insert(0);
        ids.push(candidate_id(*src, &r.series_uid, r.center_xyz, *n));
        *n += 1;
    }
    let mut seen: HashMap<i64, usize> = HashMap::with_capacity(ids.len());
    for (i, id) in ids.iter().enumerate() {
        if let Some(j) = seen.insert(*id, i) {
            return Err(TableError::IdCollision {
                id: *id,
                first: rows[j].1.series_uid.clone(),
                second: rows[i].1.series_uid.clone(),
            });
        }
    }
    for ((_, r), id) in rows.iter_mut().zip(ids) {
        r.candidate_id = id;
    }
    Ok(())
}

/// Sorts descending on the book's tuple for `rule` (stable, like Python's `sort(reverse=True)`).
pub fn sort_like_book(rows: &mut [MergedRow], rule: MergeRule) {
    rows.sort_by(|a, b| {
        let head = match rule {
            MergeRule::Final => b
                .is_nodule
                .cmp(&a.is_nodule)
                .then(b.has_annotation.cmp(&a.has_annotation))
                .then(b.is_malignant.cmp(&a.is_malignant)),
            MergeRule::DiameterMatch | MergeRule::Official => b.is_nodule.cmp(&a.is_nodule),
        };
        head.then(cmp_f(b.diameter_mm, a.diameter_mm))
            .then(b.series_uid.cmp(&a.series_uid))
            .then(cmp_xyz(&b.center_xyz, &a.center_xyz))
    });
}

/// [`merge_rows`] over Parquet files: annotations.parquet + candidates_raw.parquet in
/// (schemas checked, errors name the file), candidates.parquet rows out.
pub fn merge_candidates(
    annotations: &Path,
    candidates_raw: &Path,
    opts: &MergeOptions<'_>,
) -> Result<Vec<MergedRow>, TableError> {
    let a: Vec<AnnotationRow> = read_rows(annotations)?;
    let c: Vec<CandidateRow> = read_rows(candidates_raw)?;
    merge_rows(&a, &c, opts)
}

/// Fails unless every row (of an annotations or candidates table: its `is_malignant` values)
/// has an is_malignant value.
pub fn require_malignancy(
    is_malignant: impl IntoIterator<Item = Option<bool>>,
) -> Result<(), TableError> {
    let (mut rows, mut nulls) = (0, 0);
    for v in is_malignant {
        rows += 1;
        nulls += usize::from(v.is_none());
    }
    match nulls {
        0 => Ok(()),
        nulls => Err(TableError::MalignancyMissing { nulls, rows }),
    }
}
