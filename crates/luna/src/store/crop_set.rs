//! The crops artifact as training data: reads `index.parquet` (written by `build_crops`),
//! selects a task's rows and split, and serves crops by sample index (`luna-torch` adapts a
//! [`CropSet`] to its training loop's sample source).
//!
//! Decisions:
//! - Crops are decoded into memory once (`CropReader::read_all`, one buffer per HDF5 file) when
//!   the selected files hold less than [`IN_MEMORY_LIMIT`] bytes of decoded crops; a demo-size
//!   set (2.5k crops, 370 MB) then costs no IO per epoch. Bigger sets are read per sample
//!   (`CropReader` decompresses outside the HDF5 lock, so loader threads scale). Rejected: an
//!   epoch-level cache of decoded crops on disk (the HDF5 store already is that cache).
//! - Labels come from the index only (cheap `label(i)`, no crop IO), as `SampleSource` requires.
//! - Malignancy labels are `is_malignant`; a null there means the malignancy CSV was absent when
//!   the crops were built, which is an error for malignancy stages (never silently "benign").

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::engine::error::StageError;
use crate::tables::{read_rows, CropIndexRow};

/// Decoded crops above this many bytes are read per sample instead of held in memory.
pub const IN_MEMORY_LIMIT: u64 = 4 << 30;

/// What a classifier learns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum Task {
    /// Nodule vs non-nodule candidate (book p2ch14 `LunaDataset`).
    #[default]
    Nodule,
    /// Malignant vs benign nodule (book p2ch14 `MalignantLunaDataset`).
    Malignancy,
}

impl Task {
    /// The task a trained classifier learned, from its sidecar's `train_params` (no `task`
    /// there = `train_classifier`'s default, nodule).
    pub fn of_train_params(train_params: &serde_json::Value) -> Task {
        train_params
            .get("task")
            .and_then(|t| serde_json::from_value(t.clone()).ok())
            .unwrap_or_default()
    }
}

/// Which split a stage reads (`tables::SplitChoice`: val, train, test, train_val, all).
pub use crate::tables::SplitChoice as Split;

/// Reads the rows of a crops `index.parquet` (schema-checked through `tables`).
pub fn read_index(path: &Path) -> Result<Vec<CropIndexRow>, StageError> {
    read_rows::<CropIndexRow>(path).map_err(|e| {
        StageError::domain(e).with_hint(
            "the crops artifact must come from `build_crops`; rebuild it with `luna run <pipeline> --force <crops stage>`",
        )
    })
}

/// The error for a malignancy stage on crops built without malignancy labels.
pub fn no_malignancy(path: &Path) -> StageError {
    StageError::msg(format!(
        "malignancy stages need annotations_with_malignancy.csv: the crops index {} has no malignancy labels (is_malignant is null)",
        path.display()
    ))
    .with_hint("put annotations_with_malignancy.csv (LUNA16 + LIDC malignancy) next to annotations.csv and re-run, or use `task: nodule`")
}

/// Selects the rows of `split` a task uses and their labels. Nodule task: every candidate,
/// label `is_nodule`. Malignancy: nodules (label `is_malignant`) plus, when `with_negatives`
/// (training), non-nodule candidates labelled "not malignant". A nodule of unknown malignancy
/// (null: under merge_candidates' `rule: official`, a class-1 candidate matching no annotated
/// nodule) is left out; when no nodule has a label at all, the labels were never loaded, which
/// is an error.
pub fn select(
    rows: &[CropIndexRow],
    task: Task,
    split: Split,
    with_negatives: bool,
    index_path: &Path,
) -> Result<(Vec<CropIndexRow>, Vec<bool>), StageError> {
    let in_split = |r: &CropIndexRow| split.includes(r.split);
    let mut sel = Vec::new();
    let mut labels = Vec::new();
    for r in rows.iter().filter(|r| in_split(r)) {
        match task {
            Task::Nodule => {
                labels.push(r.is_nodule);
                sel.push(r.clone());
            }
            Task::Malignancy if r.is_nodule => {
                if let Some(m) = r.is_malignant {
                    labels.push(m);
                    sel.push(r.clone());
                }
            }
            Task::Malignancy if with_negatives => {
                labels.push(false);
                sel.push(r.clone());
            }
            Task::Malignancy => {}
        }
    }
    let nodules = rows.iter().filter(|r| in_split(r) && r.is_nodule);
    if task == Task::Malignancy
        && nodules.clone().count() > 0
        && nodules.clone().all(|r| r.is_malignant.is_none())
    {
        return Err(no_malignancy(index_path));
    }
    Ok((sel, labels))
}

/// Where a crop's voxels come from.
enum Store {
    /// Decoded file buffers; a sample is a slice of one.
    Memory(Vec<Vec<i16>>),
    /// Open readers, one per file.
    Readers(Vec<crate::store::CropReader>),
}

/// Crops of selected rows with their labels, ready for training or prediction.
pub struct CropSet {
    /// The rows, in sample order.
    pub rows: Vec<CropIndexRow>,
    /// Labels, one per row.
    pub labels: Vec<bool>,
    /// (file slot, row in file) per sample.
    loc: Vec<(usize, u64)>,
    shape: [usize; 3],
    store: Store,
}

impl CropSet {
    /// Opens the crops of `rows` under the artifact directory `dir`, in memory when they fit.
    pub fn open(
        dir: &Path,
        rows: Vec<CropIndexRow>,
        labels: Vec<bool>,
    ) -> Result<CropSet, StageError> {
        let mut slots: HashMap<String, usize> = HashMap::new();
        let mut paths: Vec<PathBuf> = Vec::new();
        let mut loc = Vec::with_capacity(rows.len());
        for r in &rows {
            let n = slots.len();
            let slot = *slots.entry(r.file.clone()).or_insert_with(|| {
                paths.push(dir.join(&r.file));
                n
            });
            loc.push((slot, r.row.max(0) as u64));
        }
        let readers = paths
            .iter()
            .map(|p| crate::store::CropReader::open(p).map_err(StageError::domain))
            .collect::<Result<Vec<_>, _>>()?;
        let shape = readers.first().map(|r| r.width()).unwrap_or([32, 48, 48]);
        for (r, p) in readers.iter().zip(&paths) {
            if r.width() != shape {
                return Err(StageError::msg(format!(
                    "crops {} are {:?}, other files of the artifact are {shape:?}",
                    p.display(),
                    r.width()
                )));
            }
        }
        for (i, &(slot, row)) in loc.iter().enumerate() {
            if row >= readers[slot].len() {
                return Err(StageError::msg(format!(
                    "crops index: candidate {} points at row {row} of {}, which has {} rows",
                    rows[i].candidate_id,
                    paths[slot].display(),
                    readers[slot].len()
                ))
                .with_hint("rebuild the crops artifact"));
            }
        }
        let decoded: u64 = readers
            .iter()
            .map(|r| r.len() * r.voxels() as u64 * 2)
            .sum();
        let store = if decoded < IN_MEMORY_LIMIT {
            Store::Memory(
                readers
                    .iter()
                    .map(|r| r.read_all().map_err(StageError::domain))
                    .collect::<Result<_, _>>()?,
            )
        } else {
            Store::Readers(readers)
        };
        Ok(CropSet {
            rows,
            labels,
            loc,
            shape,
            store,
        })
    }

    /// Whether crops were decoded into memory.
    pub fn in_memory(&self) -> bool {
        matches!(self.store, Store::Memory(_))
    }

    /// Voxels per crop.
    pub fn voxels(&self) -> usize {
        self.shape.iter().product()
    }

    /// Writes sample `i`'s HU values into `out`.
    pub fn read_into(&self, i: usize, out: &mut [i16]) -> Result<(), crate::store::StoreError> {
        let (slot, row) = self.loc[i];
        match &self.store {
            Store::Memory(bufs) => {
                let v = self.voxels();
                let start = row as usize * v;
                out.copy_from_slice(&bufs[slot][start..start + v]);
                Ok(())
            }
            Store::Readers(rs) => rs[slot].read(row, out),
        }
    }

    /// Crop shape (index, row, col).
    pub fn shape(&self) -> [usize; 3] {
        self.shape
    }
}
