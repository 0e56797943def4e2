//! `froc.png`: the FROC curve on a log2 x axis from 1/8 to 8 FPs per scan (as the script plots
//! it), with the bootstrap mean and its CI band when there is a bootstrap.
//!
//! The x axis is drawn in log2 units (−3…3) with labels `2^x`, so the seven CPM rates are
//! exactly the seven grid lines (rejected: plotters' log coordinates, whose tick placement we do
//! not control). The curve is drawn interpolated on the band grid, as the script draws
//! `np.interp` on its grid.

use std::path::Path;

use plotters::prelude::*;

use super::bootstrap::band_grid;
use super::curve::interp;
use super::FrocResult;
use crate::plot::{draw_chart, draw_error, PlotError};

fn rate_label(v: &f64) -> String {
    let r = 2f64.powf(*v);
    if r >= 1.0 {
        format!("{r:.0}")
    } else {
        format!("{r}")
    }
}

/// Draws `r` into the PNG at `path`.
pub fn plot_froc(path: &Path, r: &FrocResult) -> Result<(), PlotError> {
    let err = |e: &dyn std::fmt::Display| draw_error(path, e);
    let grid = band_grid();
    let xs: Vec<f64> = r.curve.iter().map(|p| p.fps).collect();
    let ys: Vec<f64> = r.curve.iter().map(|p| p.sensitivity).collect();
    let main: Vec<(f64, f64)> = grid
        .iter()
        .map(|&g| (g.log2(), interp(g, &xs, &ys)))
        .collect();
    let title = match &r.bootstrap {
        Some(b) => format!(
            "FROC: CPM {:.3} (95% CI {:.3}–{:.3})",
            r.cpm, b.cpm.low, b.cpm.high
        ),
        None => format!("FROC: CPM {:.3}", r.cpm),
    };
    let legend = SeriesLabelPosition::LowerRight;
    draw_chart(path, &title, -3.0..3.0, 0.0..1.0, legend, |chart| {
        chart
            .configure_mesh()
            .x_labels(7)
            .y_labels(11)
            .x_label_formatter(&rate_label)
            .x_desc("average number of false positives per scan")
            .y_desc("sensitivity")
            .label_style(("sans-serif", 14))
            .draw()
            .map_err(|e| err(&e))?;
        let blue = RGBColor(31, 119, 180);
        if let Some(b) = &r.bootstrap {
            let mut band: Vec<(f64, f64)> =
                b.band.iter().map(|p| (p.fps.log2(), p.upper)).collect();
            band.extend(b.band.iter().rev().map(|p| (p.fps.log2(), p.lower)));
            let fill = blue.mix(0.15).filled();
            chart
                .draw_series(std::iter::once(Polygon::new(band, fill)))
                .map_err(|e| err(&e))?
                .label(format!("95% CI ({} bootstraps)", b.samples))
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 20, y + 5)], fill));
            let mean: Vec<(f64, f64)> = b.band.iter().map(|p| (p.fps.log2(), p.mean)).collect();
            let light = blue.mix(0.6).stroke_width(1);
            chart
                .draw_series(LineSeries::new(mean, light))
                .map_err(|e| err(&e))?
                .label("bootstrap mean")
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], light));
        }
        let line = blue.stroke_width(2);
        chart
            .draw_series(LineSeries::new(main, line))
            .map_err(|e| err(&e))?
            .label("FROC")
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], line));
        Ok(())
    })
}
