//! `luna run --executor slurm` on a real single-node Slurm cluster (munged, slurmctld and
//! slurmd on loopback, started by scripts/slurm-local.sh): every stage and every array task of
//! a partitioned stage runs as a Slurm job; keys and artifact bytes equal a local run's; a
//! second run submits nothing; a failed job fails its stage with the job's stderr tail; a
//! cancelled array task is resubmitted; Ctrl-C of the driver cancels every job; bad input
//! (no sbatch, an unknown partition, a request Slurm rejects) is exit 2 naming the stage.
//!
//! When the cluster is missing they fail under CI and otherwise skip with a `SKIPPED` line
//! (crate::harness): locally the first test starts the cluster and skips only when
//! scripts/slurm-local.sh reports that this machine cannot run Slurm (exit 3: not root and the
//! packages missing, or the daemons do not start); under CI they require a running one.
//! They take one cluster-wide lock: the node has few CPUs, and the Ctrl-C test checks that no
//! job of its own is left.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::engine_support::{Out, Ws};
use crate::harness::{require, wait_until, Need};

/// `Some(SLURM_CONF)` once the local cluster answers, with the cluster-wide lock; when it
/// does not, [`require`] fails the test under CI or prints `SKIPPED` and gives `None`.
/// Without CI the first call starts the cluster (scripts/slurm-local.sh start: exit 3 means
/// this machine cannot run it); under CI the tests never provision it, they check that it
/// answers (`slurm-local.sh check`): the CI job starts it first, as scripts/test.sh does.
fn cluster() -> Option<(String, MutexGuard<'static, ()>)> {
    static CONF: OnceLock<Result<String, String>> = OnceLock::new();
    static ONE: Mutex<()> = Mutex::new(());
    let conf = require(Need::Slurm, || CONF.get_or_init(local_cluster).clone())?;
    let guard = ONE.lock().unwrap_or_else(|e| e.into_inner());
    Some((conf, guard))
}

/// `SLURM_CONF` of the local cluster, or why there is none.
fn local_cluster() -> Result<String, String> {
    let script = format!("{}/scripts/slurm-local.sh", crate::REPO);
    let action = if crate::harness::ci() {
        "check"
    } else {
        "start"
    };
    let o = Command::new("bash")
        .arg(&script)
        .arg(action)
        .output()
        .map_err(|e| format!("cannot run {script}: {e}"))?;
    let err = String::from_utf8_lossy(&o.stderr).trim().to_string();
    match o.status.code() {
        Some(0) => {
            let env = Command::new("bash")
                .arg(&script)
                .arg("env")
                .output()
                .map_err(|e| format!("cannot run {script} env: {e}"))?;
            let out = String::from_utf8_lossy(&env.stdout).to_string();
            Ok(out
                .lines()
                .find_map(|l| l.strip_prefix("export SLURM_CONF="))
                .expect("slurm-local.sh env prints SLURM_CONF")
                .to_string())
        }
        Some(3) => Err(format!("scripts/slurm-local.sh start: exit 3: {err}")),
        Some(1) if action == "check" => Err(format!("scripts/slurm-local.sh check: exit 1: {err}")),
        code => panic!("scripts/slurm-local.sh {action} failed (exit {code:?}): {err}"),
    }
}

fn slurm_cmd(conf: &str, program: &str, args: &[&str]) -> String {
    let o = Command::new(program)
        .args(args)
        .env("SLURM_CONF", conf)
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"));
    String::from_utf8_lossy(&o.stdout).to_string()
}

/// `id|state` of every job (all states squeue still knows) whose name starts `prefix`.
fn jobs_named(conf: &str, prefix: &str) -> Vec<(String, String)> {
    slurm_cmd(conf, "squeue", &["-h", "-t", "all", "-o", "%j|%i|%T"])
        .lines()
        .filter_map(|l| {
            let mut f = l.split('|');
            let (name, id, st) = (f.next()?, f.next()?, f.next()?);
            name.starts_with(prefix)
                .then(|| (id.to_string(), st.to_string()))
        })
        .collect()
}

/// `luna run PIPELINE --executor slurm`, started in the background.
fn spawn_slurm(ws: &Ws, conf: &str, pipeline: &str) -> std::process::Child {
    ws.command(&["run", pipeline, "--executor", "slurm"])
        .env("SLURM_CONF", conf)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start luna")
}

fn run_slurm(ws: &Ws, conf: &str, pipeline: &str) -> Out {
    ws.luna_env(
        &["run", pipeline, "--executor", "slurm"],
        &[("SLURM_CONF", conf)],
    )
}

/// The data pipeline on a tiny synthetic set (6 CTs), with `resources:` on the crops.
fn data_pipeline(name: &str) -> String {
    format!(
        "pipeline: {name}\nstages:\n  \
         data: {{ uses: synth, with: {{ preset: tiny, seed: 3, series: 6 }} }}\n  \
         annotations: {{ uses: load_annotations, needs: [data] }}\n  \
         candidates: {{ uses: merge_candidates, needs: [annotations, data], with: {{ val_stride: 2 }} }}\n  \
         crops: {{ uses: build_crops, needs: [candidates, data], resources: {{ cpus: 1, mem: 400M, time: \"10:00\" }} }}\n  \
         count:\n    uses: command\n    needs: [crops]\n    with: {{ run: \"ls $LUNA_IN_CROPS/crops | wc -l > $LUNA_OUT/n.txt\", outputs: [n.txt] }}\n"
    )
}

/// An artifact's files as (path, size, blake3).
type Files = Vec<(String, u64, String)>;

/// stage → (key, files) of the last run's artifacts.
fn artifacts(ws: &Ws) -> BTreeMap<String, (String, Files)> {
    let run = ws.last_run();
    let mut out = BTreeMap::new();
    for s in run["stages"].as_array().expect("stages") {
        let stage = s["stage"].as_str().unwrap_or_default().to_string();
        let key = s["key"].as_str().unwrap_or_default().to_string();
        let dir = ws.path(&format!("cache/objects/{}/{key}", &key[..2]));
        let m: Value = serde_json::from_slice(
            &std::fs::read(dir.join("manifest.json")).expect("read manifest"),
        )
        .expect("manifest is JSON");
        let mut files: Files = m["files"]
            .as_array()
            .expect("files")
            .iter()
            .map(|f| {
                (
                    f["path"].as_str().unwrap_or_default().into(),
                    f["size"].as_u64().unwrap_or(0),
                    f["blake3"].as_str().unwrap_or_default().into(),
                )
            })
            .collect();
        files.sort();
        // every listed file really has those bytes
        for (p, _, h) in &files {
            let bytes = std::fs::read(dir.join(p)).expect("read artifact file");
            assert_eq!(&crate::engine_support::b3(&bytes), h, "{stage}/{p}");
        }
        out.insert(stage, (key, files));
    }
    out
}

fn jobs_of(run: &Value, stage: &str) -> Vec<String> {
    run["stages"]
        .as_array()
        .expect("stages")
        .iter()
        .find(|s| s["stage"] == stage)
        .and_then(|s| s["jobs"].as_array())
        .map(|j| {
            j.iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

fn tmp_dirs(ws: &Ws) -> usize {
    std::fs::read_dir(ws.path("cache/tmp"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[test]
fn slurm_runs_every_stage_and_shard_as_jobs_with_the_keys_and_bytes_of_a_local_run() {
    let Some((conf, _one)) = cluster() else {
        return;
    };
    let ws = Ws::new();
    ws.pipeline("sl_data", &data_pipeline("sl_data"));
    run_slurm(&ws, &conf, "sl_data").expect_code(0);
    let run = ws.last_run();
    // every stage ran as Slurm jobs; the partitioned one as a 4-task array
    let known: BTreeMap<String, String> = jobs_named(&conf, "luna-sl_data-").into_iter().collect();
    for stage in ["data", "annotations", "candidates", "count"] {
        let j = jobs_of(&run, stage);
        assert_eq!(j.len(), 1, "{stage}: {j:?}");
        assert_eq!(
            known.get(&j[0]).map(String::as_str),
            Some("COMPLETED"),
            "{stage} {j:?} in {known:?}"
        );
    }
    let crops = jobs_of(&run, "crops");
    let base = crops[0].split('_').next().unwrap_or_default().to_string();
    assert_eq!(
        crops,
        (0..4).map(|i| format!("{base}_{i}")).collect::<Vec<_>>()
    );
    for j in &crops {
        assert_eq!(
            known.get(j).map(String::as_str),
            Some("COMPLETED"),
            "{j} in {known:?}"
        );
    }
    assert_eq!(
        ws.read(&format!("{}/n.txt", luna_path(&ws, "sl_data", "count")))
            .trim(),
        "6"
    );
    // `luna runs ID` shows them
    let shown = ws.luna(&["runs", "show", run["id"].as_str().unwrap_or_default()]);
    assert!(
        shown
            .stdout
            .contains(&format!("Slurm jobs {}", crops.join(", "))),
        "{}",
        shown.stdout
    );

    // the same stages computed locally: same keys, same files, same bytes
    let local = Ws::new();
    local.pipeline("sl_data", &data_pipeline("sl_data"));
    local.luna(&["run", "sl_data"]).expect_code(0);
    assert!(jobs_of(&local.last_run(), "crops").is_empty());
    assert_eq!(artifacts(&ws), artifacts(&local));
    // `luna status` does not care which executor ran it
    let status = |w: &Ws| w.luna(&["status", "sl_data"]).stdout;
    assert_eq!(status(&ws), status(&local));

    // a second run submits nothing
    let before = jobs_named(&conf, "luna-sl_data-").len();
    run_slurm(&ws, &conf, "sl_data").expect_code(0);
    let again = ws.last_run();
    assert!(again["stages"]
        .as_array()
        .expect("stages")
        .iter()
        .all(|s| s["status"] == "cached" && s.get("jobs").is_none()));
    assert_eq!(jobs_named(&conf, "luna-sl_data-").len(), before);
    assert_eq!(tmp_dirs(&ws), 0);
}

fn luna_path(ws: &Ws, pipeline: &str, stage: &str) -> String {
    let o = ws.luna(&["path", pipeline, stage]);
    o.expect_code(0);
    o.stdout.trim().to_string()
}

#[test]
fn slurm_failed_job_fails_the_stage_with_the_job_stderr_tail() {
    let Some((conf, _one)) = cluster() else {
        return;
    };
    let ws = Ws::new();
    ws.pipeline(
        "sl_fail",
        "pipeline: sl_fail\nstages:\n  \
         bad:\n    uses: command\n    with: { run: \"echo first >&2; echo boom-$((6*7)) >&2; exit 3\", outputs: [x] }\n  \
         after:\n    uses: command\n    needs: [bad]\n    with: { run: \"touch $LUNA_OUT/y\", outputs: [y] }\n",
    );
    let o = run_slurm(&ws, &conf, "sl_fail");
    o.expect_code(1);
    let run = ws.last_run();
    let bad = &run["stages"][0];
    assert_eq!(bad["status"], "failed");
    let err = bad["error"].as_str().unwrap_or_default();
    assert!(
        err.contains("boom-42") && err.contains("exit code 3"),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "(Slurm job {} failed (FAILED))",
            jobs_of(&run, "bad")[0]
        )),
        "{err}"
    );
    assert!(o.stderr.contains("boom-42"), "{}", o.stderr);
    assert_eq!(run["stages"][1]["status"], "skipped");
    assert!(jobs_of(&run, "after").is_empty());
}

#[test]
fn slurm_job_output_lands_in_a_workspace_whose_path_holds_a_percent_sign() {
    let Some((conf, _one)) = cluster() else {
        return;
    };
    // `%j` in a folder name: unescaped, Slurm replaced it with the job id and wrote the
    // job's output elsewhere, so the failure showed no stderr and named an empty folder.
    let ws = Ws::with_prefix("luna-100%j-");
    ws.pipeline(
        "sl_pct",
        "pipeline: sl_pct\nstages:\n  \
         bad:\n    uses: command\n    with: { run: \"echo boom-$((6*7)) >&2; exit 3\", outputs: [x] }\n",
    );
    let o = run_slurm(&ws, &conf, "sl_pct");
    o.expect_code(1);
    let err = ws.last_run()["stages"][0]["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        err.contains("boom-42"),
        "the job's stderr was not found: {err}"
    );
    let ok = "pipeline: sl_pct\nstages:\n  ok: { uses: command, with: { run: \"echo hi > $LUNA_OUT/x\", outputs: [x] } }\n";
    ws.pipeline("sl_pct", ok);
    run_slurm(&ws, &conf, "sl_pct").expect_code(0);
}

#[test]
fn slurm_bad_input_is_exit_2_naming_the_stage_and_slurms_message_with_nothing_run() {
    let Some((conf, _one)) = cluster() else {
        return;
    };
    let pipeline = "pipeline: sl_bad\nstages:\n  \
                    small: { uses: command, with: { run: \"touch $LUNA_OUT/a\", outputs: [a] } }\n  \
                    big: { uses: command, needs: [small], with: { run: \"touch $LUNA_OUT/b\", outputs: [b] }, resources: { mem: 9999999G } }\n";
    let nothing_ran = |ws: &Ws| {
        assert!(ws.runs().is_empty());
        assert_eq!(ws.ls("cache/objects").len(), 0);
        assert!(jobs_named(&conf, "luna-sl_bad-").is_empty());
    };
    // no sbatch on PATH
    let ws = Ws::new();
    ws.pipeline("sl_bad", pipeline);
    let empty = ws.path("empty-bin");
    std::fs::create_dir_all(&empty).expect("mkdir");
    let path = empty.to_string_lossy().to_string();
    let o = ws.luna_env(
        &["run", "sl_bad", "--executor", "slurm"],
        &[("SLURM_CONF", &conf), ("PATH", &path)],
    );
    o.expect_code(2);
    assert!(
        o.stderr
            .starts_with("error: --executor slurm needs `sbatch`, which cannot be run: "),
        "{}",
        o.stderr
    );
    nothing_ran(&ws);
    // a request Slurm rejects (more memory than any node has)
    let o = run_slurm(&ws, &conf, "sl_bad");
    o.expect_code(2);
    assert!(
        o.stderr
            .starts_with("error: stage `big`: Slurm rejects its job request: ")
            && o.stderr
                .contains("Requested node configuration is not available"),
        "{}",
        o.stderr
    );
    nothing_ran(&ws);
    // an unknown partition (luna.toml)
    ws.file(
        "luna.toml",
        "[executor.slurm]\npartition = \"no-such-partition\"\n",
    );
    let o = run_slurm(&ws, &conf, "sl_bad");
    o.expect_code(2);
    assert!(
        o.stderr
            .starts_with("error: stage `small`: Slurm rejects its job request: ")
            && o.stderr
                .contains("invalid partition specified: no-such-partition"),
        "{}",
        o.stderr
    );
    nothing_ran(&ws);
    // and `kind = "slurm"` in luna.toml is the default executor
    ws.file(
        "luna.toml",
        "[executor]\nkind = \"slurm\"\n[executor.slurm]\npartition = \"no-such-partition\"\n",
    );
    let o = ws.luna_env(&["run", "sl_bad"], &[("SLURM_CONF", &conf)]);
    o.expect_code(2);
    nothing_ran(&ws);
}

/// A pipeline of one slow partitioned stage over items in `items/`, `want[i]` of them in
/// shard `i` of 2.
fn slow_ws(name: &str, want: [usize; 2], delay_ms: u64, extra: &str) -> Ws {
    let ws = Ws::new();
    let mut per_shard = [0usize; 2];
    let mut i = 0;
    while per_shard != want {
        let name = format!("item{i:02}");
        let s = luna::engine::context::shard_of(&name, 2) as usize;
        if per_shard[s] < want[s] {
            per_shard[s] += 1;
            ws.file(
                &format!("items/{name}"),
                format!("{name} of {name_}\n", name_ = name),
            );
        }
        i += 1;
    }
    ws.file(
        "luna.toml",
        "[executor.slurm]\narray_tasks = 2\npoll_ms = 200\n",
    );
    ws.pipeline(
        name,
        &format!(
            "pipeline: {name}\nstages:\n  \
             parts: {{ uses: test_slow_partitions, with: {{ items: items, delay_ms: {delay_ms} }} }}\n{extra}"
        ),
    );
    ws
}

/// Waits until `pred` holds for the jobs named `prefix` (panics after `secs`).
fn wait_jobs(
    conf: &str,
    prefix: &str,
    secs: u64,
    pred: impl Fn(&[(String, String)]) -> bool,
) -> Vec<(String, String)> {
    let t0 = Instant::now();
    loop {
        let j = jobs_named(conf, prefix);
        if pred(&j) {
            return j;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(secs),
            "jobs {prefix}: {j:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn slurm_cancelled_array_task_is_resubmitted_and_the_run_completes() {
    let Some((conf, _one)) = cluster() else {
        return;
    };
    let ws = slow_ws("sl_retry", [4, 4], 1000, "");
    let child = spawn_slurm(&ws, &conf, "sl_retry");
    // cancel task 0 once it runs (it has 4 partitions to compute, 1 s each)
    let jobs = wait_jobs(&conf, "luna-sl_retry-", 60, |j| {
        j.iter()
            .any(|(id, st)| id.ends_with("_0") && st == "RUNNING")
    });
    // (squeue still lists jobs of earlier test runs: the running one is this run's)
    let task0 = jobs
        .iter()
        .find(|(id, st)| id.ends_with("_0") && st == "RUNNING")
        .map(|(id, _)| id.clone())
        .unwrap_or_default();
    // mid-work: once the task has committed one of its partitions (1 s each), not after a
    // guessed delay
    wait_until(
        "a partition committed by array task 0",
        Duration::from_secs(60),
        || {
            ws.manifests().iter().any(|m| {
                m["stage"].as_str().is_some_and(|s| {
                    s.strip_prefix("parts[").is_some_and(|item| {
                        let item = item.trim_end_matches(']');
                        let name = item.rsplit('/').next().unwrap_or(item);
                        luna::engine::context::shard_of(name, 2) == 0
                    })
                })
            })
        },
    );
    slurm_cmd(&conf, "scancel", &[&task0]);
    let o = child.wait_with_output().expect("wait for luna");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{stderr}");
    let run = ws.last_run();
    let ids = jobs_of(&run, "parts");
    // the two array tasks, then task 0 again as a job of its own
    assert_eq!(ids.len(), 3, "{ids:?}");
    assert_eq!(ids[0], task0);
    assert!(ids[2].ends_with("_0") && ids[2] != task0, "{ids:?}");
    let states: BTreeMap<String, String> =
        jobs_named(&conf, "luna-sl_retry-").into_iter().collect();
    assert_eq!(
        states.get(&task0).map(String::as_str),
        Some("CANCELLED"),
        "{states:?}"
    );
    assert_eq!(
        states.get(&ids[2]).map(String::as_str),
        Some("COMPLETED"),
        "{states:?}"
    );
    // nothing half-committed: no tmp dirs, every object whole, the output complete
    assert_eq!(tmp_dirs(&ws), 0);
    ws.luna(&["cache", "verify"]).expect_code(0);
    let out = luna_path(&ws, "sl_retry", "parts");
    assert_eq!(ws.read(&format!("{out}/count.txt")), "8\n");
    let items = ws.ls("items");
    assert_eq!(items.len(), 8);
    assert_eq!(ws.ls(&format!("{out}/parts")), items);
    for name in &items {
        assert_eq!(
            ws.read(&format!("{out}/parts/{name}")),
            ws.read(&format!("items/{name}"))
        );
    }
}

#[test]
fn slurm_ctrl_c_of_the_driver_cancels_every_job_it_submitted() {
    let Some((conf, _one)) = cluster() else {
        return;
    };
    let ws = slow_ws(
        "sl_int",
        [3, 3],
        3000,
        "  other: { uses: command, with: { run: \"sleep 60; touch $LUNA_OUT/z\", outputs: [z] } }\n",
    );
    let child = spawn_slurm(&ws, &conf, "sl_int");
    // both stages submitted: the 2-task array and the command's job
    wait_jobs(&conf, "luna-sl_int-", 60, |j| {
        j.len() >= 2 && j.iter().any(|(_, s)| s == "RUNNING")
    });
    // the driver has recorded both submissions (its stage logs say so) before the signal
    wait_until(
        "the driver logging both submissions",
        Duration::from_secs(60),
        || {
            ["parts", "other"].iter().all(|stage| {
                ws.ls("runs").iter().any(|id| {
                    std::fs::read_to_string(ws.path(&format!("runs/{id}/logs/{stage}.log")))
                        .is_ok_and(|l| l.contains("slurm: submitted job"))
                })
            })
        },
    );
    // SAFETY: signalling the child we started.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGINT);
    }
    let o = child.wait_with_output().expect("wait for luna");
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains("interrupted; cancelled the Slurm jobs this run submitted"),
        "{stderr}"
    );
    // squeue shows none of them pending or running
    let left = wait_jobs(&conf, "luna-sl_int-", 20, |j| {
        j.iter()
            .all(|(_, st)| !matches!(st.as_str(), "PENDING" | "RUNNING" | "COMPLETING"))
    });
    assert!(left.iter().any(|(_, st)| st == "CANCELLED"), "{left:?}");
    let run = ws.last_run();
    assert!(run["ended"].is_string());
    assert_eq!(run["success"], false);
    let submitted: usize = ["parts", "other"]
        .iter()
        .map(|s| jobs_of(&run, s).len())
        .sum();
    assert!(submitted >= 2, "{run}");
    // nothing of either stage committed
    assert!(!Path::new(&ws.path("cache/objects")).exists() || ws.manifests().is_empty());
}

#[test]
fn resources_are_checked_at_their_position_and_never_change_a_key() {
    let ws = Ws::new();
    let yaml = |res: &str| {
        format!(
            "pipeline: res\nstages:\n  a:\n    uses: command\n    with: {{ run: \"echo 1 > $LUNA_OUT/a\", outputs: [a] }}\n{res}"
        )
    };
    ws.pipeline("res", &yaml("    resources: { cpus: two }\n"));
    let o = ws.luna(&["run", "res"]);
    o.expect_code(2);
    assert!(
        o.stderr.starts_with(
            "error: stages.a.resources.cpus: expected a non-negative integer, found string \"two\"\n  --> pipelines/res.yaml:6:24\n"
        ),
        "{}",
        o.stderr
    );
    ws.pipeline("res", &yaml(""));
    ws.luna(&["run", "res"]).expect_code(0);
    let key = ws.last_run()["stages"][0]["key"].clone();
    // hints only: the same key, nothing to run
    ws.pipeline(
        "res",
        &yaml("    resources: { cpus: 4, mem: 2G, gpus: 1, time: \"1:00:00\" }\n"),
    );
    ws.luna(&["run", "res"]).expect_code(0);
    let again = ws.last_run();
    assert_eq!(again["stages"][0]["key"], key);
    assert_eq!(again["stages"][0]["status"], "cached");
}

#[test]
fn slurm_failed_array_task_fails_the_stage_and_cancels_the_other_tasks() {
    let Some((conf, _one)) = cluster() else {
        return;
    };
    let ws = slow_ws("sl_shardfail", [6, 1], 1000, "");
    // the one item of shard 1 fails after 1 s; shard 0 has 6 s of work
    let failing = ws
        .ls("items")
        .into_iter()
        .find(|n| luna::engine::context::shard_of(n, 2) == 1)
        .unwrap_or_default();
    let yaml = ws.read("pipelines/sl_shardfail.yaml").replace(
        "delay_ms: 1000 }",
        &format!("delay_ms: 1000, fail: {failing} }}"),
    );
    ws.pipeline("sl_shardfail", &yaml);
    let o = run_slurm(&ws, &conf, "sl_shardfail");
    o.expect_code(1);
    let run = ws.last_run();
    let ids = jobs_of(&run, "parts");
    assert_eq!(ids.len(), 2, "{ids:?}");
    let err = run["stages"][0]["error"].as_str().unwrap_or_default();
    assert!(
        err.starts_with("item ") && err.contains(&format!("/items/{failing} fails, as asked")),
        "{err}"
    );
    assert!(
        err.contains(&format!("(Slurm job {} failed (FAILED))", ids[1])),
        "{err}"
    );
    let states: BTreeMap<String, String> = wait_jobs(&conf, "luna-sl_shardfail-", 20, |j| {
        j.iter()
            .all(|(_, st)| !matches!(st.as_str(), "PENDING" | "RUNNING" | "COMPLETING"))
    })
    .into_iter()
    .collect();
    assert_eq!(states.get(&ids[1]).map(String::as_str), Some("FAILED"));
    assert_eq!(states.get(&ids[0]).map(String::as_str), Some("CANCELLED"));
    assert!(ws.manifests().iter().all(|m| m["stage"] != "parts"));
}
