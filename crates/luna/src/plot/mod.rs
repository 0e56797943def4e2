//! PNG plots with plotters: line plots (loss per epoch, F1/AUC per epoch, ROC and PR curves,
//! drawn by `luna-torch`) and the shared font/error helpers that `froc`'s FROC plot uses. It
//! lives in `luna`, not `luna-torch`, because `evaluate_froc` runs in the `luna` binary, which
//! must not link libtorch (rejected: a second copy of the font and helpers in `froc`).
//!
//! Decisions: the bitmap backend with an embedded DejaVu Sans (`assets/DejaVuSans.ttf`, Bitstream
//! Vera / DejaVu free licence in `assets/DejaVuSans-LICENSE.txt`) registered through `ab_glyph`,
//! so plots render identically on machines without fontconfig or system fonts (rejected: the
//! `ttf` feature, which needs system fonts and fontconfig). Size is fixed at 800×600.
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::FontStyle;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

static FONT: &[u8] = include_bytes!("assets/DejaVuSans.ttf");
static FONT_OK: OnceLock<bool> = OnceLock::new();

/// Plot width in pixels.
pub const WIDTH: u32 = 800;
/// Plot height in pixels.
pub const HEIGHT: u32 = 600;

/// Plotting errors.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// The drawing backend failed (usually writing the file).
    #[error("plot {path}: {message}; hint: check that the directory exists and is writable")]
    Draw {
        /// Output file.
        path: PathBuf,
        /// Backend message.
        message: String,
    },
    /// The embedded font could not be registered.
    #[error("plot {path}: embedded font could not be loaded")]
    Font {
        /// Output file.
        path: PathBuf,
    },
    /// No finite points to draw.
    #[error("plot {path}: no finite data points in any series; hint: nothing to plot yet")]
    Empty {
        /// Output file.
        path: PathBuf,
    },
}

/// Registers the embedded font as `sans-serif` (once per process).
pub fn ensure_font(path: &Path) -> Result<(), PlotError> {
    let ok = *FONT_OK.get_or_init(|| {
        plotters::style::register_font("sans-serif", FontStyle::Normal, FONT).is_ok()
    });
    if ok {
        Ok(())
    } else {
        Err(PlotError::Font {
            path: path.to_path_buf(),
        })
    }
}

fn range(vals: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    let (lo, hi) = vals
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(v), b.max(v))
        });
    if lo > hi {
        return None;
    }
    let pad = if hi > lo { (hi - lo) * 0.05 } else { 0.5 };
    Some((lo - pad, hi + pad))
}

/// The error of a failed plotters call while drawing `path`.
pub fn draw_error(path: &Path, e: &dyn std::fmt::Display) -> PlotError {
    PlotError::Draw {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// The chart every plot draws on: f64 × f64 axes on the PNG bitmap.
pub type Chart<'a, 'b> =
    ChartContext<'a, BitMapBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// Draws a PNG at `path`: white background, `title`, axes over `x` × `y`; then `draw` adds
/// the mesh and the series (labelled series get a legend entry); then the legend at `legend`.
pub fn draw_chart(
    path: &Path,
    title: &str,
    x: std::ops::Range<f64>,
    y: std::ops::Range<f64>,
    legend: SeriesLabelPosition,
    draw: impl FnOnce(&mut Chart<'_, '_>) -> Result<(), PlotError>,
) -> Result<(), PlotError> {
    ensure_font(path)?;
    let root = BitMapBackend::new(path, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| draw_error(path, &e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 24))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(x, y)
        .map_err(|e| draw_error(path, &e))?;
    draw(&mut chart)?;
    chart
        .configure_series_labels()
        .position(legend)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()
        .map_err(|e| draw_error(path, &e))?;
    root.present().map_err(|e| draw_error(path, &e))?;
    Ok(())
}

/// Draws `series` (name, points) as lines with a legend into a PNG at `path`.
pub fn plot_lines(
    path: &Path,
    title: &str,
    x_label: &str,
    series: &[(String, Vec<(f64, f64)>)],
) -> Result<(), PlotError> {
    let all = || series.iter().flat_map(|(_, p)| p.iter());
    let (Some(xr), Some(yr)) = (range(all().map(|p| p.0)), range(all().map(|p| p.1))) else {
        return Err(PlotError::Empty {
            path: path.to_path_buf(),
        });
    };
    let err = |e: &dyn std::fmt::Display| draw_error(path, e);
    let legend = SeriesLabelPosition::UpperRight;
    draw_chart(path, title, xr.0..xr.1, yr.0..yr.1, legend, |chart| {
        chart
            .configure_mesh()
            .x_desc(x_label)
            .label_style(("sans-serif", 14))
            .draw()
            .map_err(|e| err(&e))?;
        for (i, (name, pts)) in series.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            let pts: Vec<(f64, f64)> = pts
                .iter()
                .copied()
                .filter(|p| p.0.is_finite() && p.1.is_finite())
                .collect();
            chart
                .draw_series(LineSeries::new(pts, color.stroke_width(2)))
                .map_err(|e| err(&e))?
                .label(name.as_str())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
        }
        Ok(())
    })
}
