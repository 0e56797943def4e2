//! Optimizers vs torch.optim (oracle), state save/restore, and freezing.
use crate::nn_support::{max_abs_diff, read_st, run_oracle};
use luna_torch::nn::{Optimizer, OptimizerConfig};
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

struct Tiny {
    vs: VarStore,
    w: Tensor,
    b: Tensor,
}

fn tiny(w: &Tensor, b: &Tensor) -> Tiny {
    let vs = VarStore::new(Device::Cpu);
    let w = vs.root().add("w", w.copy(), true);
    let b = vs.root().add("b", b.copy(), true);
    Tiny { vs, w, b }
}

fn data() -> (Tensor, Tensor, Tensor, Tensor) {
    tch::manual_seed(11);
    let o = (Kind::Double, Device::Cpu);
    (
        Tensor::randn([3, 4], o),
        Tensor::randn([3], o),
        Tensor::randn([5, 4], o),
        Tensor::randn([5, 3], o).tanh(),
    )
}

fn step(m: &Tiny, opt: &mut Optimizer, x: &Tensor, t: &Tensor) {
    let y = x.matmul(&m.w.tr()) + &m.b;
    let loss = (y.tanh() - t).square().mean(Kind::Double);
    opt.backward_step(&loss);
}

fn configs() -> Vec<(&'static str, OptimizerConfig)> {
    vec![
        (
            "sgd_mom",
            OptimizerConfig::Sgd {
                lr: 0.05,
                momentum: 0.9,
                weight_decay: 0.01,
            },
        ),
        (
            "sgd_plain",
            OptimizerConfig::Sgd {
                lr: 0.05,
                momentum: 0.0,
                weight_decay: 1e-4,
            },
        ),
        (
            "adam",
            OptimizerConfig::Adam {
                lr: 0.01,
                betas: (0.8, 0.95),
                eps: 1e-6,
                weight_decay: 0.02,
            },
        ),
    ]
}

#[test]
fn sgd_and_adam_match_torch_and_resume_identically() {
    let _torch = crate::nn_support::torch_lock();
    let dir = tempfile::tempdir().unwrap();
    let (w0, b0, x, t) = data();
    Tensor::write_safetensors(
        &[("w", &w0), ("b", &b0), ("x", &x), ("t", &t)],
        dir.path().join("optim_in.safetensors"),
    )
    .unwrap();
    run_oracle("nn_optim.py", &[dir.path().to_str().unwrap(), "5"]);
    let want = read_st(&dir.path().join("optim_torch.safetensors"));
    for (name, cfg) in configs() {
        // Straight 5 steps.
        let m = tiny(&w0, &b0);
        let mut opt = Optimizer::new(&m.vs, cfg.clone(), None).unwrap();
        for _ in 0..5 {
            step(&m, &mut opt, &x, &t);
        }
        let dw = max_abs_diff(&m.w, &want[&format!("{name}.w")]);
        let db = max_abs_diff(&m.b, &want[&format!("{name}.b")]);
        println!("{name}: max abs diff vs torch w {dw:e} b {db:e}");
        assert!(dw <= 1e-6 && db <= 1e-6, "{name}: w {dw} b {db}");

        // 3 steps, save, fresh model + optimizer, load, 2 steps: identical to straight.
        let m1 = tiny(&w0, &b0);
        let mut o1 = Optimizer::new(&m1.vs, cfg.clone(), None).unwrap();
        for _ in 0..3 {
            step(&m1, &mut o1, &x, &t);
        }
        let state = dir.path().join(format!("{name}.state.safetensors"));
        o1.save(&state).unwrap();
        let m2 = tiny(&m1.w.detach(), &m1.b.detach());
        let mut o2 = Optimizer::new(&m2.vs, cfg.clone(), None).unwrap();
        o2.load(&state).unwrap();
        for _ in 0..2 {
            step(&m2, &mut o2, &x, &t);
        }
        assert_eq!(
            max_abs_diff(&m2.w, &m.w),
            0.0,
            "{name}: resumed run diverged"
        );
        assert_eq!(
            max_abs_diff(&m2.b, &m.b),
            0.0,
            "{name}: resumed run diverged"
        );
    }
}

#[test]
fn state_file_has_torch_named_entries() {
    let _torch = crate::nn_support::torch_lock();
    let (w0, b0, x, t) = data();
    let m = tiny(&w0, &b0);
    let mut opt = Optimizer::new(&m.vs, OptimizerConfig::adam(1e-3), None).unwrap();
    step(&m, &mut opt, &x, &t);
    let mut keys: Vec<String> = opt.state_tensors().into_iter().map(|(k, _)| k).collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "b.exp_avg",
            "b.exp_avg_sq",
            "b.step",
            "w.exp_avg",
            "w.exp_avg_sq",
            "w.step"
        ]
    );
}

#[test]
fn frozen_parameters_do_not_move() {
    let _torch = crate::nn_support::torch_lock();
    let (w0, b0, x, t) = data();
    let m = tiny(&w0, &b0);
    let cfg = OptimizerConfig::Sgd {
        lr: 0.1,
        momentum: 0.9,
        weight_decay: 0.1,
    };
    let mut opt = Optimizer::new(&m.vs, cfg, Some(&["w".to_string()])).unwrap();
    assert_eq!(opt.param_names(), ["w"]);
    for _ in 0..3 {
        step(&m, &mut opt, &x, &t);
    }
    assert_eq!(max_abs_diff(&m.b, &b0), 0.0);
    assert!(max_abs_diff(&m.w, &w0) > 1e-3);
}

#[test]
fn mismatched_state_is_a_clear_error() {
    let _torch = crate::nn_support::torch_lock();
    let (w0, b0, _, _) = data();
    let m = tiny(&w0, &b0);
    let p = tempfile::tempdir().unwrap();
    let f = p.path().join("s.safetensors");
    let bad = Tensor::zeros([7], (Kind::Double, Device::Cpu));
    Tensor::write_safetensors(&[("w.momentum_buffer", &bad)], &f).unwrap();
    let mut opt = Optimizer::new(&m.vs, OptimizerConfig::book_classifier(), None).unwrap();
    let e = opt.load(&f).unwrap_err().to_string();
    assert!(e.starts_with(&format!("optimizer state {}: entry \"w.momentum_buffer\" does not match the model (expected shape [3, 4], found [7])", f.display())), "{e}");
    let e = Optimizer::new(
        &m.vs,
        OptimizerConfig::book_classifier(),
        Some(&["nope".to_string()]),
    )
    .unwrap_err();
    assert_eq!(e.to_string(), "optimizer: trainable variable \"nope\" is not in the model; hint: names look like \"head_linear.weight\"");
    let lm = luna_torch::nn::LoadedModel::fresh(&Default::default(), Device::Cpu).unwrap();
    let e = Optimizer::new(
        &lm.vs,
        OptimizerConfig::book_classifier(),
        Some(&["tail_batchnorm.running_mean".to_string()]),
    )
    .unwrap_err();
    assert_eq!(e.to_string(), "optimizer: variable \"tail_batchnorm.running_mean\" is a buffer, not a trainable parameter; hint: list only weights and biases");
}
