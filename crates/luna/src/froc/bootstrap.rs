//! Rule 9 of the module doc: seeded scan-level bootstrap of the 7 sensitivities, the CPM and the
//! curve (for the CI band), with the documented counter-based SplitMix64 generator so that an
//! independent implementation can draw the same resamples.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::curve::{Ranked, LAST_OF_GROUP, POSITIVE};
use super::mean;
use super::score::Scored;

/// Points of the CI band grid: `2^(-3 + i/40)` for i = 0..=240 (1/8 … 8 FPs per scan).
pub const BAND_POINTS: usize = 241;

const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// Draw `k` of the resampling generator: SplitMix64's output for the state
/// `seed + (k+1)·0x9E3779B97F4A7C15` (wrapping arithmetic).
pub fn draw(seed: u64, k: u64) -> u64 {
    let mut z = seed.wrapping_add(k.wrapping_add(1).wrapping_mul(GOLDEN_GAMMA));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// How often each of `scans` scans is drawn in round `round`: draw `round·scans + j` modulo
/// `scans` is the j-th scan index of the round.
pub fn resample_counts(seed: u64, round: usize, scans: usize) -> Vec<u32> {
    let mut counts = vec![0u32; scans];
    let base = (round as u64).wrapping_mul(scans as u64);
    for j in 0..scans as u64 {
        counts[(draw(seed, base + j) % scans as u64) as usize] += 1;
    }
    counts
}

/// Mean and confidence interval of one statistic over the rounds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    /// Mean over the rounds.
    #[serde(deserialize_with = "crate::artifacts::f64_or_nan")]
    pub mean: f64,
    /// Lower bound (sorted value at ⌊(1−c)/2·N⌋).
    #[serde(deserialize_with = "crate::artifacts::f64_or_nan")]
    pub low: f64,
    /// Upper bound (sorted value at ⌊(1−(1−c)/2)·N⌋).
    #[serde(deserialize_with = "crate::artifacts::f64_or_nan")]
    pub high: f64,
}

/// One point of the CI band.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct BandPoint {
    /// FPs per scan.
    pub fps: f64,
    /// Mean sensitivity over the rounds.
    pub mean: f64,
    /// Lower bound.
    pub lower: f64,
    /// Upper bound.
    pub upper: f64,
}

/// The bootstrap's results.
#[derive(Debug, Clone, PartialEq)]
pub struct Bootstrap {
    /// Rounds.
    pub samples: usize,
    /// Generator seed.
    pub seed: u64,
    /// Interval confidence.
    pub confidence: f64,
    /// The CPM (mean of the 7 sensitivities of each round).
    pub cpm: Interval,
    /// Each of the 7 sensitivities.
    pub sensitivities: [Interval; 7],
    /// The curve's band on the log2 grid.
    pub band: Vec<BandPoint>,
}

/// Where the 7 CPM rates sit on the band grid (2^(−3 + i/40) is 1/8, 1/4, … 8 there exactly).
const RATE_AT: [usize; 7] = [0, 40, 80, 120, 160, 200, 240];

/// The band grid's FP rates.
pub fn band_grid() -> Vec<f64> {
    (0..BAND_POINTS)
        .map(|i| 2f64.powf(-3.0 + i as f64 / 40.0))
        .collect()
}

/// Mean and the script's percentile interval of `values` (sorted in place).
fn interval(values: &mut [f64], confidence: f64) -> Interval {
    let n = values.len();
    let m = mean(values);
    values.sort_by(|a, b| a.total_cmp(b));
    let pz = (1.0 - confidence) / 2.0;
    let at = |q: f64| values[((q * n as f64).floor() as usize).min(n - 1)];
    Interval {
        mean: m,
        low: at(pz),
        high: at(1.0 - pz),
    }
}

/// One round's 7 sensitivities and band values.
type Round = ([f64; 7], Vec<f64>);

/// Per-scan entry counts: (false positives, detected nodules, included nodules).
fn per_scan(scored: &Scored, scans: usize) -> Vec<[u64; 3]> {
    let mut v = vec![[0u64; 3]; scans];
    for e in scored.entries.iter().filter(|e| !e.excluded) {
        v[e.scan as usize][usize::from(e.positive)] += 1;
    }
    for (t, &n) in v.iter_mut().zip(&scored.nodules_per_scan) {
        t[2] = u64::from(n);
    }
    v
}

/// One round: the curve of the entries weighted by `counts`, read at every `grid` point with
/// `numpy.interp` semantics, in one streaming pass and without building the curve.
///
/// Equivalent to `interp(grid, froc_curve(..))` up to rounding: the curve's collinear points
/// (which `drop_intermediate` removes) do not change a piecewise-linear interpolation, so they
/// are kept; the totals (FP, detected, nodules) come from per-scan counts, so each point's
/// coordinates use the script's formulas as soon as the point is known. Points left of the
/// next grid value by a clear margin are not even converted to floats, and the pass stops once
/// the last grid value (8 FPs per scan) is passed, typically after a small part of the entries.
fn round_band(
    ranked: &Ranked,
    counts: &[u32],
    totals: [u64; 3],
    scans: usize,
    grid: &[f64],
) -> Vec<f64> {
    let [fpt, tpt, nodules] = totals;
    let s = scans as f64;
    let x_of = |fp: u64| {
        if fpt == 0 {
            0.0
        } else {
            (fp as f64 / fpt as f64) * fpt as f64 / s
        }
    };
    let y_of = |tp: u64| {
        if tpt == 0 || nodules == 0 {
            0.0
        } else {
            (tp as f64 / tpt as f64) * tpt as f64 / nodules as f64
        }
    };
    // An FP count below `bound` certainly gives fps < grid[q] (margin far above rounding).
    let bound_of = |q: usize| {
        grid.get(q)
            .map_or(u64::MAX, |g| (g * s * (1.0 - 1e-9)).floor() as u64)
    };
    let mut out = Vec::with_capacity(grid.len());
    let mut bound = bound_of(0);
    let (mut tp, mut fp) = (0u64, 0u64);
    let (mut ptp, mut pfp) = (0u64, 0u64); // the previous curve point, (0, 0) first
    for &e in &ranked.packed {
        let w = u64::from(counts[(e >> 2) as usize]);
        let pos = u64::from(e & POSITIVE);
        tp += w * pos;
        fp += w * (1 - pos);
        // A threshold whose entries all have weight 0 repeats the previous point, which
        // changes no interpolation: no need to track whether the group had weight.
        if e & LAST_OF_GROUP == 0 {
            continue;
        }
        if fp >= bound {
            let x = x_of(fp);
            let (px, py) = (x_of(pfp), y_of(ptp));
            while out.len() < grid.len() && grid[out.len()] < x {
                let g = grid[out.len()];
                // The last point with fps <= g is the previous one (numpy.interp's j).
                out.push(if px == g {
                    py
                } else {
                    (y_of(tp) - py) / (x - px) * (g - px) + py
                });
            }
            if out.len() == grid.len() {
                // Every grid value is read: the rest of the curve lies beyond the last one.
                return out;
            }
            bound = bound_of(out.len());
        }
        (pfp, ptp) = (fp, tp);
    }
    let last = y_of(ptp);
    out.resize(grid.len(), last);
    out
}

/// Runs `samples` rounds (see the module doc) over the entries of `scored`.
pub fn bootstrap(
    ranked: &Ranked,
    scored: &Scored,
    scans: usize,
    samples: usize,
    seed: u64,
    confidence: f64,
) -> Bootstrap {
    let grid = band_grid();
    let per = per_scan(scored, scans);
    let rounds: Vec<Round> = (0..samples)
        .into_par_iter()
        .map(|b| {
            let counts = resample_counts(seed, b, scans);
            let mut totals = [0u64; 3];
            for (&c, t) in counts.iter().zip(&per) {
                for k in 0..3 {
                    totals[k] += u64::from(c) * t[k];
                }
            }
            let band = round_band(ranked, &counts, totals, scans, &grid);
            (std::array::from_fn(|k| band[RATE_AT[k]]), band)
        })
        .collect();
    let column = |f: &dyn Fn(&Round) -> f64| -> Interval {
        let mut v: Vec<f64> = rounds.iter().map(f).collect();
        interval(&mut v, confidence)
    };
    let cpm = column(&|r| mean(&r.0));
    let sensitivities = std::array::from_fn(|i| column(&|r| r.0[i]));
    let band = grid
        .iter()
        .enumerate()
        .map(|(g, &fps)| {
            let iv = column(&|r| r.1[g]);
            BandPoint {
                fps,
                mean: iv.mean,
                lower: iv.low,
                upper: iv.high,
            }
        })
        .collect();
    Bootstrap {
        samples,
        seed,
        confidence,
        cpm,
        sensitivities,
        band,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::froc::curve::{froc_curve, interp};
    use crate::froc::score::Entry;

    #[test]
    fn the_rates_are_grid_points() {
        let g = band_grid();
        for (k, &i) in RATE_AT.iter().enumerate() {
            assert_eq!(g[i], crate::froc::RATES[k]);
        }
    }

    /// The streaming round equals interp on the full curve, on random weighted entries with
    /// ties, zero weights, vertical steps and grid points on curve x values.
    #[test]
    fn streaming_round_equals_interp_on_the_curve() {
        let scans = 16usize;
        for seed in 0..40u64 {
            let mut entries = Vec::new();
            let mut nodules = vec![0u32; scans];
            for k in 0..200u64 {
                let r = draw(seed, k);
                let scan = (r % scans as u64) as u32;
                let positive = (r >> 8).is_multiple_of(5);
                let excluded = positive && (r >> 16).is_multiple_of(4);
                if positive {
                    nodules[scan as usize] += 1;
                }
                entries.push(Entry {
                    scan,
                    probability: ((r >> 24) % 30) as f64 / 30.0,
                    positive,
                    excluded,
                });
            }
            let scored = Scored {
                entries,
                counts: Default::default(),
                nodules_per_scan: nodules,
                book_hits: 0,
            };
            let ranked = Ranked::new(&scored);
            let per = per_scan(&scored, scans);
            let counts = resample_counts(seed, 3, scans);
            let mut totals = [0u64; 3];
            for (&c, t) in counts.iter().zip(&per) {
                for k in 0..3 {
                    totals[k] += u64::from(c) * t[k];
                }
            }
            let curve = froc_curve(&ranked, |s| u64::from(counts[s as usize]), totals[2], scans);
            let xs: Vec<f64> = curve.iter().map(|p| p.fps).collect();
            let ys: Vec<f64> = curve.iter().map(|p| p.sensitivity).collect();
            let mut grid = band_grid();
            grid.extend(xs.iter().copied().filter(|x| !(0.125..=8.0).contains(x)));
            grid.extend(xs.iter().copied());
            grid.sort_by(|a, b| a.total_cmp(b));
            let got = round_band(&ranked, &counts, totals, scans, &grid);
            for (g, v) in grid.iter().zip(&got) {
                let want = interp(*g, &xs, &ys);
                assert!((v - want).abs() < 1e-12, "seed {seed} x {g}: {v} vs {want}");
            }
        }
    }
}
