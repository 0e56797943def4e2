//! Official LUNA16 FROC / CPM scoring (pure Rust, no torch): a submission of CAD marks
//! (`seriesuid,coordX,coordY,coordZ,probability`, world mm) against `annotations.csv`,
//! `annotations_excluded.csv` and `seriesuids.csv`, exactly as the challenge's
//! `noduleCADEvaluationLUNA16.py` (`evaluateCAD` with `maxNumberOfCADMarks=100`) scores it,
//! plus the CPM the leaderboard showed and a seeded bootstrap CI. Used by the `evaluate_froc`
//! stage and by `luna froc`; both write the same files ([`write_outputs`]).
//!
//! # The rules (reference/luna-evaluation.md §1.3–§1.4)
//! 1. **Scans.** The evaluated scans are the `seriesuids` list (its length is the FP divisor).
//!    Per scan, the included findings (`annotations.csv`) come first, then the excluded ones
//!    (`annotations_excluded.csv`); findings of other series are ignored.
//! 2. **Cap.** A scan with more than `max_marks` (100) marks keeps only the marks whose
//!    probability is *strictly greater* than the `max_marks+1`-th highest, so ties at the cut
//!    can drop more than the excess. `max_marks: 0` keeps every mark.
//! 3. **Hit.** A mark hits a finding when its squared distance in mm to the centre is strictly
//!    below R² with R = diameter / 2; a negative diameter (the `-1` rows) means 10 mm.
//! 4. **Included finding.** Every mark that hits it leaves the scan's FP pool (a mark may hit
//!    two nodules and then counts for both). Hit at least once: one positive entry with the
//!    maximum probability of its hits; the other hits are *double detections* (neither TP nor
//!    FP). Not hit: a positive entry with probability −1e9 marked *excluded* — left out of the
//!    ROC but counted in the sensitivity denominator.
//! 5. **Excluded finding.** Marks still in the pool that hit it are removed and *ignored*.
//! 6. **False positives.** Every mark left in the pool is a negative entry with its probability.
//! 7. **Curve.** sklearn's `roc_curve` (default `drop_intermediate=True`) on the non-excluded
//!    entries: entries sorted by probability, descending; one point per distinct probability
//!    (cumulative TP and FP counts); interior points whose TP and FP second differences are
//!    both zero are dropped (when there are more than two); `(0, 0)` with threshold `+inf` is
//!    prepended. Then `fps = fpr · (n_entries − n_detected) / n_scans` — or 0 everywhere when
//!    there is no negative entry at all (the script's "no false positives" branch) — and
//!    `sensitivity = tpr · n_detected / n_nodules`, so missed nodules cap the plateau.
//! 8. **CPM.** `sensitivities[i] = numpy.interp(rate_i, fps, sensitivity)` for the rates
//!    [`RATES`] on the full curve (at a vertical step numpy gives the upper value; beyond the
//!    last point the last value); `cpm` is their mean. `cpm_nearest` is DIAG's `getCPM`
//!    (unicorn_eval): per rate, starting from `distance = max(fps)` and sensitivity 0, walk the
//!    curve and take the point whose `|fps − rate|` is strictly smaller than the best so far
//!    (so a system whose max fps is below half a rate scores 0 there, as DIAG does).
//! 9. **Bootstrap.** `bootstrap` rounds; round *b* draws `n_scans` scan indices with
//!    replacement, concatenates those scans' entries (TP, missed and FP alike, with their
//!    multiplicity) and recomputes the curve with the same scan count; each round gives the 7
//!    sensitivities (by `interp`), their mean (a CPM) and the curve interpolated on a log2 grid
//!    of [`BAND_POINTS`] FP rates from 1/8 to 8 (`2^(−3 + i/40)`). Reported: the mean and the
//!    95% interval, the sorted values at ⌊0.025·N⌋ and ⌊0.975·N⌋ (the script's
//!    `compute_mean_ci`).
//!
//! # Decisions
//! - **Degenerate cases** where the script divides by zero get the value its counting formula
//!   has in the limit, instead of NaN: no detected nodule (tpr undefined) or no nodule at all in
//!   a bootstrap round → sensitivity 0; a round with no entries → the curve `(0, 0)` alone.
//!   The full evaluation itself refuses a scan set with no included nodule
//!   ([`FrocError::NoNodules`]): its sensitivity means nothing.
//! - **Resampling generator** (documented so an independent implementation can reproduce the
//!   rounds; `tests/oracle/froc_oracle.py` does): draw *k* of a run is SplitMix64's output for
//!   state `seed + (k+1)·0x9E3779B97F4A7C15` (wrapping), and scan index *j* of round *b* is draw
//!   `k = b·n_scans + j` modulo `n_scans`. Counter-based, so rounds run in parallel (rayon) and
//!   the result does not depend on the thread count. Rejected: numpy's Mersenne Twister (the
//!   script's `np.random.randint`, which is not seedable through the script anyway and would need
//!   a bit-exact port), and writing the index lists to disk for the oracle (888k numbers).
//! - **Bootstrap by weights, streamed.** The non-excluded entries are sorted once; a round is one
//!   pass over them with each entry weighted by its scan's multiplicity (zero-weight entries
//!   create no threshold), which is the curve of the concatenated copies. The pass reads the
//!   curve at the band grid as it goes (numpy.interp semantics; the 7 rates are grid points),
//!   without storing it: 4 bytes per entry and no allocation per round. It keeps the collinear
//!   points `drop_intermediate` would remove (they do not change a linear interpolation), so a
//!   round's values can differ from the script's in the last bits only. Rejected:
//!   concatenating the copies and sorting them in every round (what the script does).
//! - **Counts in integers.** TP/FP cumulative counts and the second differences of
//!   `drop_intermediate` are exact `u64`; the float formulas then follow the script's order of
//!   operations, so curves agree with numpy + sklearn to the last bit or so.
//! - **Strict input.** A submission with a missing column, a non-numeric or non-finite value,
//!   an empty series uid, a series not in `seriesuids`, no header or no rows is rejected with its
//!   file and 1-based line ([`FrocError`]), before anything is written. The script silently skips
//!   unknown series; we refuse them because a typo would silently lower the CPM.
//! - **Outputs** ([`write_outputs`]): `submission.csv` (every mark, uncapped — the file the
//!   official script would be run on), `seriesuids.csv` (no header), `froc.csv`
//!   (`fps,sensitivity,threshold`, every curve point, the first threshold `inf`), `froc.json`,
//!   `froc_bootstrap.csv` (`fps,mean,lower,upper` on the band grid, like the script's
//!   `froc_<name>_bootstrapping.csv`) and `froc.png` (log2 x axis, CI band). The band is on a
//!   241-point log grid instead of the script's 10,000-point linear one: it only feeds the plot
//!   and the band file, and the reported numbers (7 sensitivities, CPM) are exact per round.
//! - **The book's recall beside the official one.** `froc.json` holds `candidate_recall`
//!   (TP / nodules at the LUNA16 radius) and `recall_book_matcher`: the share of included
//!   nodules that a kept mark matches under the book's rule (closer than 0.7 × diameter,
//!   [`book_match`]), labelled as the book's wherever it is shown; it never enters the FROC.
//! - Rejected: calling the Python script (needs Python 2/3 ports, sklearn, matplotlib, 20 min
//!   with bootstrapping); a dataframe pipeline (the work is a sort and a few linear passes).

mod bootstrap;
mod curve;
mod error;
mod input;
mod output;
mod plot;
mod score;

pub use bootstrap::{
    bootstrap, draw, resample_counts, BandPoint, Bootstrap, Interval, BAND_POINTS,
};
pub use curve::{cpm_nearest, froc_curve, interp, sensitivities_at, CurvePoint, Ranked};
pub use error::FrocError;
pub use input::{
    read_findings, read_seriesuids, read_submission, write_seriesuids, Finding, FrocInput, Mark,
    Scans, SERIESUIDS_FILE,
};
pub use output::{froc_json, input_rows, summary, write_outputs, OUTPUT_FILES, SUBMISSION_HEADER};
pub use score::{book_match, cap_marks, score, Counts, Entry, Scored};

/// The FP-per-scan rates of the CPM.
pub const RATES: [f64; 7] = [0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0];

/// Scoring options.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FrocOptions {
    /// Marks kept per scan (the script's `maxNumberOfCADMarks`); 0 keeps every mark.
    pub max_marks: usize,
    /// Bootstrap rounds; 0 skips the bootstrap.
    pub bootstrap: usize,
    /// Seed of the resampling generator.
    pub seed: u64,
    /// Confidence of the bootstrap interval (the script's `bConfidence`).
    pub confidence: f64,
}

impl Default for FrocOptions {
    fn default() -> Self {
        FrocOptions {
            max_marks: 100,
            bootstrap: 1000,
            seed: 0,
            confidence: 0.95,
        }
    }
}

/// Everything one scoring produces.
#[derive(Debug, Clone)]
pub struct FrocResult {
    /// The FROC curve, from (0, 0).
    pub curve: Vec<CurvePoint>,
    /// Sensitivity at each of [`RATES`] (numpy.interp on the curve).
    pub sensitivities: [f64; 7],
    /// Mean of `sensitivities`.
    pub cpm: f64,
    /// DIAG's nearest-point CPM.
    pub cpm_nearest: f64,
    /// Per-sensitivity values of DIAG's nearest-point rule.
    pub sensitivities_nearest: [f64; 7],
    /// TP/FP/FN and ignored counts.
    pub counts: Counts,
    /// Included nodules matched by the book's 0.7 × diameter rule ([`book_match`]).
    pub book_hits: usize,
    /// The bootstrap, when `bootstrap > 0`.
    pub bootstrap: Option<Bootstrap>,
    /// The options used.
    pub options: FrocOptions,
}

/// Scores `input` by the official rules (see the module doc).
pub fn evaluate(input: &FrocInput, options: FrocOptions) -> Result<FrocResult, FrocError> {
    if !(options.confidence > 0.0 && options.confidence < 1.0) {
        return Err(FrocError::InvalidOption {
            option: "confidence",
            value: options.confidence.to_string(),
            why: "must be in (0, 1)",
        });
    }
    if input.scans.len() >= 1 << 30 {
        return Err(FrocError::InvalidOption {
            option: "scans",
            value: input.scans.len().to_string(),
            why: "at most 2^30 - 1 scans can be scored",
        });
    }
    let scored = score(input, options.max_marks);
    if scored.counts.nodules == 0 {
        return Err(FrocError::NoNodules {
            scans: input.scans.len(),
        });
    }
    let ranked = Ranked::new(&scored);
    let curve = froc_curve(
        &ranked,
        |_| 1,
        scored.counts.nodules as u64,
        input.scans.len(),
    );
    let sensitivities = sensitivities_at(&curve, &RATES);
    let (cpm_nearest, sensitivities_nearest) = cpm_nearest(&curve, &RATES);
    let bootstrap = (options.bootstrap > 0).then(|| {
        bootstrap::bootstrap(
            &ranked,
            &scored,
            input.scans.len(),
            options.bootstrap,
            options.seed,
            options.confidence,
        )
    });
    Ok(FrocResult {
        cpm: mean(&sensitivities),
        curve,
        sensitivities,
        cpm_nearest,
        sensitivities_nearest,
        counts: scored.counts,
        book_hits: scored.book_hits,
        bootstrap,
        options,
    })
}

/// Sequential mean (numpy's sum of fewer than 8 values is sequential too).
pub(crate) fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}
