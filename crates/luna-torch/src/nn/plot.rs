//! PNG line plots: the helpers live in the `luna` crate ([`luna::plot`]) since `evaluate_froc`
//! (which must not link libtorch) draws FROC curves with the same embedded font; re-exported
//! here so the training loop and reports keep their paths.

pub use luna::plot::{plot_lines, PlotError, HEIGHT, WIDTH};
