//! Ground-truth records of a generated series (CSV rows and synth_truth.json content).

use super::geometry::SeriesGeometry;
use serde::Serialize;

/// Rendered shape of a planted nodule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NoduleShape {
    /// Smooth sphere (benign look).
    Sphere,
    /// Core sphere plus several lobes and a few short spikes (malignant look).
    Lobulated,
    /// Core sphere with many radiating spikes (malignant look).
    Spiculated,
}

/// Density class of a planted nodule (`realistic` preset).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NoduleDensity {
    /// Soft-tissue density throughout.
    Solid,
    /// Ground-glass halo around a solid core.
    PartSolid,
    /// Ground glass only (−750…−300 HU, textured).
    GroundGlass,
}

/// What a planted nodule touches (`realistic` preset).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NoduleAttachment {
    /// Surrounded by parenchyma.
    Isolated,
    /// Touching the chest wall / pleura.
    Juxtapleural,
    /// Touching a vessel.
    Juxtavascular,
}

/// Ground truth of one planted nodule.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NoduleTruth {
    /// Centre in world mm (x, y, z) — the annotation centre.
    pub xyz: [f64; 3],
    /// Nearest voxel (index, row, col).
    pub irc: [i64; 3],
    /// Nominal diameter (mm) written to the CSVs.
    pub diameter_mm: f64,
    /// Whether the rendered shape is malignant-looking.
    pub malignant: bool,
    /// Label written as `mal_bool` (differs from `malignant` only through label noise).
    pub mal_bool: bool,
    /// Rendered shape.
    pub shape: NoduleShape,
    /// Synthetic reader ratings (1–5) written as `mal_details`.
    pub mal_details: Vec<u8>,
    /// Density class (`realistic` preset only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub density: Option<NoduleDensity>,
    /// What the nodule touches (`realistic` preset only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attachment: Option<NoduleAttachment>,
    /// Whether it is calcified (dense, benign; `realistic` preset only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub calcified: Option<bool>,
}

/// One row of candidates.csv.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CandidateTruth {
    /// World mm (x, y, z).
    pub xyz: [f64; 3],
    /// 1 = nodule, 0 = not.
    pub class: u8,
    /// Where it was placed: nodule, vessel, bifurcation, parenchyma, tissue (and with the
    /// `realistic` preset airway, pleura, mediastinum).
    pub kind: &'static str,
}

/// One row of annotations_excluded.csv (a rendered sub-3 mm blob).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExcludedTruth {
    /// World mm (x, y, z).
    pub xyz: [f64; 3],
    /// Value written to the CSV (-1 or the true diameter).
    pub diameter_mm: f64,
}

/// Ground truth of one series (also serialised into synth_truth.json).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SeriesTruth {
    /// Series position in the generation order.
    pub index: usize,
    /// Series instance UID.
    pub uid: String,
    /// `subsetN` folder number.
    pub subset: usize,
    /// Geometry as written to the header.
    pub geometry: SeriesGeometry,
    /// Planted nodules.
    pub nodules: Vec<NoduleTruth>,
    /// Irrelevant findings.
    pub excluded: Vec<ExcludedTruth>,
    /// Candidates (shuffled).
    #[serde(skip)]
    pub candidates: Vec<CandidateTruth>,
}
