//! Augmentation: identity when off, exact flips, and agreement with torch affine_grid/grid_sample.
use crate::nn_support::{max_abs_diff, read_st, run_oracle};
use luna_torch::nn::{augment_with, AugmentConfig, Augmenter};
use tch::{Device, Kind, Tensor};

fn input(n: i64) -> Tensor {
    tch::manual_seed(5);
    Tensor::randn([n, 1, 8, 12, 10], (Kind::Float, Device::Cpu)) * 300.0
}

fn theta(rows: &[[f32; 12]]) -> Tensor {
    let flat: Vec<f32> = rows.iter().flatten().copied().collect();
    Tensor::from_slice(&flat).view([rows.len() as i64, 3, 4])
}

const ID: [f32; 12] = [1., 0., 0., 0., 0., 1., 0., 0., 0., 0., 1., 0.];

#[test]
fn all_transforms_off_is_identity() {
    let _torch = crate::nn_support::torch_lock();
    let x = input(4);
    let y = Augmenter::new(AugmentConfig::none(), 9)
        .augment(&x)
        .unwrap();
    let d = max_abs_diff(&x, &y);
    assert!(
        d < 1e-3,
        "identity augmentation changed values by {d} (HU scale 300)"
    );
}

#[test]
fn flip_of_x_axis_reverses_columns() {
    let _torch = crate::nn_support::torch_lock();
    let x = input(1);
    let mut t = ID;
    t[0] = -1.0;
    let y = augment_with(&x, &theta(&[t]), 0.0, None).unwrap();
    assert!(max_abs_diff(&y, &x.flip([4])) < 1e-3);
    let mut t = ID;
    t[10] = -1.0; // z = index axis
    let y = augment_with(&x, &theta(&[t]), 0.0, None).unwrap();
    assert!(max_abs_diff(&y, &x.flip([2])) < 1e-3);
}

#[test]
fn explicit_thetas_match_torch_grid_sample() {
    let _torch = crate::nn_support::torch_lock();
    let dir = tempfile::tempdir().unwrap();
    let x = input(5);
    let (s, c) = (30f32.to_radians().sin(), 30f32.to_radians().cos());
    let th = theta(&[
        ID,
        [-1., 0., 0., 0., 0., 1., 0., 0., 0., 0., -1., 0.],
        [c, -s, 0., 0., s, c, 0., 0., 0., 0., 1., 0.],
        [1.2, 0., 0., 0.1, 0., 0.85, 0., -0.07, 0., 0., 1.1, 0.05],
        [
            -c * 1.1,
            -s,
            0.,
            0.08,
            -s,
            c * 0.9,
            0.,
            0.0,
            0.,
            0.,
            -1.,
            -0.1,
        ],
    ]);
    Tensor::write_safetensors(
        &[("x", &x), ("theta", &th)],
        dir.path().join("aug_in.safetensors"),
    )
    .unwrap();
    let y = augment_with(&x, &th, 0.0, None).unwrap();
    run_oracle("nn_augment.py", &[dir.path().to_str().unwrap()]);
    let t = read_st(&dir.path().join("aug_torch.safetensors"));
    let d = max_abs_diff(&y, &t["y"]);
    println!("augment vs torch max abs diff: {d:e}");
    assert!(d < 1e-3, "differs from torch by {d}");
    // The offset really moves the image (the p2ch14 bug would make row 3 equal to the identity).
    assert!(max_abs_diff(&y.get(3), &x.get(3)) > 10.0);
}

#[test]
fn noise_has_requested_std_and_is_seeded() {
    let _torch = crate::nn_support::torch_lock();
    let x = input(2);
    let cfg = AugmentConfig {
        noise: 25.0,
        ..AugmentConfig::none()
    };
    let a = Augmenter::new(cfg.clone(), 3).augment(&x).unwrap();
    let b = Augmenter::new(cfg, 3).augment(&x).unwrap();
    assert_eq!(max_abs_diff(&a, &b), 0.0);
    let std = (&a - &x).std(true).double_value(&[]);
    assert!((std - 25.0).abs() < 1.0, "noise std {std}");
    let full = Augmenter::new(AugmentConfig::default(), 3)
        .augment(&x)
        .unwrap();
    let again = Augmenter::new(AugmentConfig::default(), 3)
        .augment(&x)
        .unwrap();
    assert_eq!(max_abs_diff(&full, &again), 0.0);
}

#[test]
fn bad_shapes_are_errors() {
    let _torch = crate::nn_support::torch_lock();
    let x = Tensor::zeros([2, 8, 8, 8], (Kind::Float, Device::Cpu));
    let e = Augmenter::new(AugmentConfig::none(), 1)
        .augment(&x)
        .unwrap_err();
    assert_eq!(e.to_string(), "augment: input must be 5-D (N,C,D,H,W), found shape [2, 8, 8, 8]; hint: add the channel axis");
    let e = augment_with(&input(2), &theta(&[ID]), 0.0, None).unwrap_err();
    assert_eq!(
        e.to_string(),
        "augment: theta must have shape [2, 3, 4], found [1, 3, 4]"
    );
}
