//! Series splits: which series a stage trains on, validates on and tests on.
//!
//! One mechanism for every split luna knows, chosen by [`SplitSpec`] (the `split:` parameter of
//! `merge_candidates`) and recorded per row in the candidate table's `split` column, which every
//! later stage reads (crops, training, evaluation, segmentation); a stage that reads a split
//! names it with [`SplitChoice`].
//!
//! - `{ by: stride, val_stride: N }` — the book's rule (p2ch13/14): sorted unique series uids,
//!   index 0, N, 2N, … are validation, the rest training; no test split. `val_stride: N` at the
//!   top level of `merge_candidates` is the same thing.
//! - `{ by: subset, test: K, val: … }` — LUNA16's folds: the series in folder `subsetK` are the
//!   held-out test fold, the validation series (which choose the best checkpoint) are `val: [..]`
//!   (those subsets), `val: next` (the subset after K, cyclically over the subsets present; the
//!   default) or `val_stride: N` (every N-th of the non-test series, sorted), the rest training.
//!   `test` may be left out (train / val only).
//!
//! A series is in exactly one split (the assignment is a map from series uid). Errors instead
//! of surprises: a series outside any `subsetN` folder under `by: subset`, an empty test or val
//! split, `val` naming the test subset. Rejected: splitting by candidate (the book's ch. 10–12
//! leak), a random split (not reproducible across tools), and an integer `val: 1` meaning "one
//! subset" (too easily read as "subset 1").

use std::collections::{BTreeMap, BTreeSet};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::error::TableError;
use super::rows::Split;

/// How `merge_candidates` assigns series to train / val / test.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "by", rename_all = "snake_case", deny_unknown_fields)]
pub enum SplitSpec {
    /// The book's rule: every `val_stride`-th sorted series is validation, the rest training.
    Stride {
        /// Every `val_stride`-th sorted series (index 0 first) is validation (book: 10).
        val_stride: usize,
    },
    /// LUNA16 folds by the `subsetN` folder a series sits in.
    Subset {
        /// The held-out test subset (none: no test split).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        test: Option<u32>,
        /// Validation subsets: a list such as `[4]`, or `next` (default: the subset after `test`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        val: Option<ValSubsets>,
        /// Instead of `val`: every `val_stride`-th of the non-test series (sorted) is validation.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        val_stride: Option<usize>,
    },
}

impl Default for SplitSpec {
    fn default() -> Self {
        SplitSpec::Stride { val_stride: 10 }
    }
}

/// The validation subsets of a `by: subset` split.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum ValSubsets {
    /// These subset numbers.
    List(Vec<u32>),
    /// A rule (`next`).
    Rule(ValRule),
}

/// A rule naming the validation subset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ValRule {
    /// The subset after the test subset, cyclically over the subsets present.
    Next,
}

impl<'de> Deserialize<'de> for ValSubsets {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let v = serde_json::Value::deserialize(d)?;
        if v.as_str() == Some("next") {
            return Ok(ValSubsets::Rule(ValRule::Next));
        }
        serde_json::from_value::<Vec<u32>>(v.clone())
            .map(ValSubsets::List)
            .map_err(|_| {
                D::Error::custom(format!(
                    "`val` must be a list of subset numbers such as [4], or `next`; got {v}"
                ))
            })
    }
}

impl SplitSpec {
    /// Checks what can be checked before any data is read (plan time).
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        match self {
            SplitSpec::Stride { val_stride: 0 } => Err((
                "val_stride",
                "must be at least 1 (every Nth series is validation)".into(),
            )),
            SplitSpec::Stride { .. } => Ok(()),
            SplitSpec::Subset {
                test,
                val,
                val_stride,
            } => {
                if val.is_some() && val_stride.is_some() {
                    return Err(("val", "give `val` or `val_stride`, not both".into()));
                }
                if *val_stride == Some(0) {
                    return Err(("val_stride", "must be at least 1".into()));
                }
                if let (Some(t), Some(ValSubsets::List(l))) = (test, val) {
                    if l.contains(t) {
                        return Err((
                            "val",
                            format!("subset {t} is the test subset; a series is in one split only"),
                        ));
                    }
                    if l.is_empty() {
                        return Err(("val", "name at least one validation subset".into()));
                    }
                }
                let named = matches!(val, Some(ValSubsets::List(_))) || val_stride.is_some();
                if test.is_none() && !named {
                    return Err((
                        "val",
                        "without `test`, name the validation subsets (`val: [..]`) or `val_stride`"
                            .into(),
                    ));
                }
                Ok(())
            }
        }
    }

    /// Whether the split needs each series' subset.
    pub fn needs_subsets(&self) -> bool {
        matches!(self, SplitSpec::Subset { .. })
    }
}

/// Which split a stage reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum SplitChoice {
    /// Validation series only.
    #[default]
    Val,
    /// Training series only.
    Train,
    /// The held-out test series only.
    Test,
    /// Training and validation series: everything a training stage may read.
    TrainVal,
    /// Every series.
    All,
}

impl SplitChoice {
    /// Whether a row of split `s` is chosen.
    pub fn includes(self, s: Split) -> bool {
        match self {
            SplitChoice::Val => s == Split::Val,
            SplitChoice::Train => s == Split::Train,
            SplitChoice::Test => s == Split::Test,
            SplitChoice::TrainVal => s != Split::Test,
            SplitChoice::All => true,
        }
    }

    /// The name as written in a pipeline.
    pub fn as_str(self) -> &'static str {
        match self {
            SplitChoice::Val => "val",
            SplitChoice::Train => "train",
            SplitChoice::Test => "test",
            SplitChoice::TrainVal => "train_val",
            SplitChoice::All => "all",
        }
    }
}

/// Assigns each series of `uids` to a split by `spec`; `subsets` maps a series to its
/// `subsetN` folder number (needed by `by: subset`).
pub fn assign_splits<'s>(
    uids: impl IntoIterator<Item = &'s str>,
    spec: &SplitSpec,
    subsets: &BTreeMap<String, u32>,
) -> Result<BTreeMap<String, Split>, TableError> {
    let sorted: BTreeSet<&str> = uids.into_iter().collect();
    match spec {
        SplitSpec::Stride { val_stride } => stride(sorted, *val_stride, Split::Train),
        SplitSpec::Subset {
            test,
            val,
            val_stride,
        } => by_subset(&sorted, *test, val.as_ref(), *val_stride, subsets),
    }
}

/// Index 0, n, 2n, … of `sorted` are val, the rest `rest`.
fn stride(
    sorted: BTreeSet<&str>,
    n: usize,
    rest: Split,
) -> Result<BTreeMap<String, Split>, TableError> {
    if n == 0 {
        return Err(TableError::InvalidOption {
            option: "val_stride",
            value: "0".into(),
            why: "must be >= 1",
        });
    }
    Ok(sorted
        .into_iter()
        .enumerate()
        .map(|(i, u)| (u.to_string(), if i % n == 0 { Split::Val } else { rest }))
        .collect())
}

fn by_subset(
    sorted: &BTreeSet<&str>,
    test: Option<u32>,
    val: Option<&ValSubsets>,
    val_stride: Option<usize>,
    subsets: &BTreeMap<String, u32>,
) -> Result<BTreeMap<String, Split>, TableError> {
    let missing: Vec<&&str> = sorted
        .iter()
        .filter(|u| !subsets.contains_key(**u))
        .collect();
    if let Some(first) = missing.first() {
        return Err(TableError::NoSubset {
            series: first.to_string(),
            count: missing.len(),
        });
    }
    let present: BTreeSet<u32> = sorted.iter().map(|u| subsets[*u]).collect();
    if let Some(t) = test.filter(|t| !present.contains(t)) {
        return Err(empty(
            "test",
            format!("no series sits in subset{t}"),
            &present,
        ));
    }
    let mut out = BTreeMap::new();
    let mut rest = BTreeSet::new();
    for u in sorted {
        if Some(subsets[*u]) == test {
            out.insert(u.to_string(), Split::Test);
        } else {
            rest.insert(*u);
        }
    }
    let val_set: BTreeSet<u32> = match (val, val_stride) {
        (_, Some(n)) => {
            out.extend(stride(rest, n, Split::Train)?);
            return check_nonempty(out, &present);
        }
        (Some(ValSubsets::List(l)), None) => l.iter().copied().collect(),
        (Some(ValSubsets::Rule(ValRule::Next)) | None, None) => {
            let t = test.unwrap_or(0);
            let next = present
                .range(t + 1..)
                .next()
                .or_else(|| present.iter().next())
                .copied()
                .filter(|n| Some(*n) != test);
            next.into_iter().collect()
        }
    };
    for u in rest {
        let s = if val_set.contains(&subsets[u]) {
            Split::Val
        } else {
            Split::Train
        };
        out.insert(u.to_string(), s);
    }
    check_nonempty(out, &present)
}

/// Errors when the validation or training split has no series.
fn check_nonempty(
    out: BTreeMap<String, Split>,
    present: &BTreeSet<u32>,
) -> Result<BTreeMap<String, Split>, TableError> {
    for (s, name) in [(Split::Val, "val"), (Split::Train, "train")] {
        if !out.values().any(|v| *v == s) {
            return Err(empty(name, "no series is left for it".into(), present));
        }
    }
    Ok(out)
}

fn empty(split: &'static str, why: String, present: &BTreeSet<u32>) -> TableError {
    let list: Vec<String> = present.iter().map(|s| format!("subset{s}")).collect();
    TableError::EmptySplit {
        split,
        detail: format!("{why} (series sit in {})", list.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subsets(n: usize, per: usize) -> (Vec<String>, BTreeMap<String, u32>) {
        let uids: Vec<String> = (0..n * per).map(|i| format!("1.{i:03}")).collect();
        let map = uids
            .iter()
            .enumerate()
            .map(|(i, u)| (u.clone(), (i / per) as u32))
            .collect();
        (uids, map)
    }

    fn spec(yaml: &str) -> SplitSpec {
        serde_json::from_str(yaml).unwrap()
    }

    #[test]
    fn every_fold_is_disjoint_and_complete() {
        let (uids, map) = subsets(10, 3);
        for k in 0..10u32 {
            let s = spec(&format!(r#"{{"by": "subset", "test": {k}}}"#));
            let a = assign_splits(uids.iter().map(String::as_str), &s, &map).unwrap();
            assert_eq!(a.len(), uids.len());
            for (u, sp) in &a {
                let sub = map[u];
                let want = if sub == k {
                    Split::Test
                } else if sub == (k + 1) % 10 {
                    Split::Val
                } else {
                    Split::Train
                };
                assert_eq!(*sp, want, "fold {k} series {u}");
            }
        }
    }

    #[test]
    fn val_list_and_stride_forms() {
        let (uids, map) = subsets(4, 5);
        let s = spec(r#"{"by": "subset", "test": 3, "val": [0, 1]}"#);
        let a = assign_splits(uids.iter().map(String::as_str), &s, &map).unwrap();
        assert_eq!(a.values().filter(|v| **v == Split::Val).count(), 10);
        let s = spec(r#"{"by": "subset", "test": 0, "val_stride": 5}"#);
        let a = assign_splits(uids.iter().map(String::as_str), &s, &map).unwrap();
        assert_eq!(a.values().filter(|v| **v == Split::Val).count(), 3);
        assert_eq!(a.values().filter(|v| **v == Split::Test).count(), 5);
    }

    #[test]
    fn errors_are_named() {
        let (uids, map) = subsets(3, 2);
        let s = spec(r#"{"by": "subset", "test": 7}"#);
        let e = assign_splits(uids.iter().map(String::as_str), &s, &map).unwrap_err();
        assert!(e.to_string().contains("no series sits in subset7"), "{e}");
        let mut partial = map.clone();
        partial.remove("1.000");
        let s = spec(r#"{"by": "subset", "test": 1}"#);
        let e = assign_splits(uids.iter().map(String::as_str), &s, &partial).unwrap_err();
        assert!(e.to_string().contains("1.000"), "{e}");
        let bad: Result<SplitSpec, _> = serde_json::from_str(r#"{"by": "subset", "val": 4}"#);
        assert!(bad
            .unwrap_err()
            .to_string()
            .contains("list of subset numbers"));
        let s = spec(r#"{"by": "subset", "test": 1, "val": [1]}"#);
        assert_eq!(s.validate().unwrap_err().0, "val");
        let bad: Result<SplitSpec, _> = serde_json::from_str(r#"{"by": "subset", "tset": 1}"#);
        assert!(bad.is_err());
    }
}
