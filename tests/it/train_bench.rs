//! Benchmark (ignored; run by `bench/train.sh`): samples/s of the training input pipeline alone
//! vs samples/s of training on it, on 32×48×48 crops in the `build_crops` layout.
//!
//! "Input pipeline alone" does what `nn::loader` does per batch on the same number of threads
//! (crop read from the in-memory `CropSet`, i16 → f32, `Tensor::from_slice`) without the model;
//! "training" is `nn::train::train_pass` (loader threads + model) with batch 24, 2 torch
//! threads, no augmentation, the p2ch14 SGD optimizer.

use std::time::Instant;

use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64;

use luna::store::crop_set::{read_index, select, CropSet, Split, Task};
use luna::store::CropWriter;
use luna::tables::{write_rows, CropIndexRow};
use luna_torch::nn::checkpoint::LoadedModel;
use luna_torch::nn::classify::{BestBy, Classification, CropSamples};
use luna_torch::nn::train::{train_pass, Quiet};
use luna_torch::nn::{LunaModelConfig, Optimizer, OptimizerConfig, TrainConfig};

const N: usize = 480;

fn fixture(dir: &std::path::Path) {
    std::fs::create_dir_all(dir.join("crops")).unwrap();
    let mut rng = Pcg64::seed_from_u64(1);
    let mut w = CropWriter::create(dir.join("crops/s.h5"), [32, 48, 48], 3).unwrap();
    for _ in 0..N {
        let c: Vec<i16> = (0..32 * 48 * 48)
            .map(|_| rng.random_range(-1000..1000))
            .collect();
        w.append(&c, [16, 24, 24]).unwrap();
    }
    w.finish().unwrap();
    let index: Vec<CropIndexRow> = (0..N)
        .map(|i| CropIndexRow {
            candidate_id: i as i64,
            series_uid: "s".into(),
            file: "crops/s.h5".into(),
            row: i as i64,
            center_irc: [16, 24, 24],
            is_nodule: i % 2 == 0,
            has_annotation: i % 2 == 0,
            is_malignant: Some(false),
            diameter_mm: 0.0,
            split: luna::tables::Split::Train,
        })
        .collect();
    write_rows(&index, &dir.join("index.parquet")).unwrap();
}

#[test]
#[ignore = "benchmark; run with --ignored --nocapture (bench/train.sh)"]
fn bench_train_input_pipeline() {
    let _torch = crate::nn_support::torch_lock();
    let tmp = tempfile::tempdir().unwrap();
    fixture(tmp.path());
    let idx = tmp.path().join("index.parquet");
    let rows = read_index(&idx).unwrap();
    let (r, l) = select(&rows, Task::Nodule, Split::Train, true, &idx).unwrap();
    let set = CropSet::open(tmp.path(), r, l).unwrap();
    let order: Vec<usize> = (0..set.rows.len()).collect();
    let threads = 2;
    // input pipeline alone, 3 passes
    let t0 = Instant::now();
    for _ in 0..3 {
        std::thread::scope(|s| {
            for w in 0..threads {
                let (set, order) = (&set, &order);
                s.spawn(move || {
                    let mut hu = vec![0i16; set.voxels()];
                    for chunk in order.chunks(24).skip(w).step_by(threads) {
                        let mut data = vec![0f32; set.voxels() * chunk.len()];
                        for (k, &i) in chunk.iter().enumerate() {
                            set.read_into(i, &mut hu).unwrap();
                            for (o, &v) in
                                data[k * hu.len()..(k + 1) * hu.len()].iter_mut().zip(&hu)
                            {
                                *o = f32::from(v);
                            }
                        }
                        let t = tch::Tensor::from_slice(&data).view([
                            chunk.len() as i64,
                            1,
                            32,
                            48,
                            48,
                        ]);
                        let _ = std::hint::black_box(t);
                    }
                });
            }
        });
    }
    let input = (3 * N) as f64 / t0.elapsed().as_secs_f64();
    // training on it
    tch::set_num_threads(2);
    tch::manual_seed(0);
    let lm = LoadedModel::fresh(&LunaModelConfig::default(), tch::Device::Cpu).unwrap();
    let mut opt = Optimizer::new(&lm.vs, OptimizerConfig::book_classifier(), None).unwrap();
    let cfg = TrainConfig {
        batch_size: 24,
        loader_threads: 2,
        prefetch: 2,
        ..TrainConfig::default()
    };
    let short: Vec<usize> = order[..240].to_vec();
    let task = Classification {
        best_by: BestBy::F1,
    };
    let (_, stats) = train_pass(
        &lm.model,
        &mut opt,
        &task,
        &CropSamples(&set),
        &short,
        &cfg,
        None,
        1,
        &Quiet,
    )
    .unwrap();
    println!("input pipeline alone: {input:.1} samples/s ({threads} threads, in memory)");
    println!(
        "training: {:.1} samples/s (batch 24, 2 torch threads), data wait {:.1}%",
        stats.samples_per_sec,
        stats.data_wait_fraction * 100.0
    );
    println!("ratio: {:.1}x", input / stats.samples_per_sec);
}
