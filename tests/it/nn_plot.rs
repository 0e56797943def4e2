//! PNG plots decode: signature and IHDR size.
use luna_torch::nn::plot::{plot_lines, HEIGHT, WIDTH};

#[test]
fn plot_lines_writes_a_png_of_the_expected_size() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("loss.png");
    let trn: Vec<(f64, f64)> = (1..=10).map(|e| (e as f64, 1.0 / e as f64)).collect();
    let val: Vec<(f64, f64)> = (1..=10)
        .map(|e| (e as f64, 1.2 / e as f64 + 0.05))
        .collect();
    plot_lines(
        &path,
        "loss per epoch",
        "epoch",
        &[("trn".to_string(), trn), ("val".to_string(), val)],
    )
    .unwrap();
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    assert_eq!(&bytes[12..16], b"IHDR");
    assert_eq!(u32::from_be_bytes(bytes[16..20].try_into().unwrap()), WIDTH);
    assert_eq!(
        u32::from_be_bytes(bytes[20..24].try_into().unwrap()),
        HEIGHT
    );
    if let Ok(keep) = std::env::var("LUNA_NN_KEEP_PLOT") {
        std::fs::copy(&path, keep).unwrap();
    }
}

#[test]
fn empty_series_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.png");
    let e = plot_lines(&path, "t", "x", &[("a".to_string(), vec![(f64::NAN, 1.0)])]).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "plot {}: no finite data points in any series; hint: nothing to plot yet",
            path.display()
        )
    );
}
