//! `command`: run a shell command as a cached stage (like DVC's `cmd`).
//!
//! ```yaml
//! stages:
//!   features:
//!     uses: command
//!     needs: [crops]
//!     with:
//!       run: python scripts/features.py "$LUNA_IN_CROPS" "$LUNA_OUT/features.parquet"
//!       inputs: [scripts/features.py]      # fingerprinted by content
//!       outputs: [features.parquet]        # must exist under $LUNA_OUT afterwards
//! ```
//!
//! The command runs with `sh -c` in the workspace root. Environment: `LUNA_OUT` (the output
//! directory), `LUNA_IN_<STAGE>` for every upstream artifact (stage name upper-cased, other
//! characters → `_`), `LUNA_WORKSPACE`, `LUNA_STAGE`. stdout and stderr go to the stage log;
//! a line `luna:progress N/M` moves the progress bar. A non-zero exit or a missing declared
//! output fails the stage (stderr tail shown) and nothing is committed. If luna dies, even by
//! `kill -9`, the command's whole process group gets SIGKILL (see `GUARD`), so a killed run
//! leaves no orphan writing into the cache. When the command itself ends, luna SIGKILLs what is
//! left of its process group before committing: a background job (`cmd &`) does not outlive
//! its stage, cannot add files to the committed object, and does not hold the stage open by
//! keeping stdout open. (A process that leaves the group with `setsid` escapes this; don't.)
//! Output lines need not be UTF-8. Two stages whose `LUNA_IN_` names would collide (`a-b`,
//! `a_b`) are rejected when the pipeline is loaded.

use std::collections::{BTreeMap, VecDeque};
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::engine::context::StageContext;
use crate::engine::error::StageError;
use crate::engine::kind::{ExternalInput, Hint, InputPath, ParamError, Stage};

/// Parameters of `command`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CommandParams {
    /// Shell command, run with `sh -c` in the workspace root.
    pub run: String,
    /// Files or directories the command reads; their content is part of the cache key.
    #[serde(default)]
    pub inputs: Vec<InputPath>,
    /// Files or directories the command must create under `$LUNA_OUT`.
    #[serde(default)]
    pub outputs: Vec<String>,
    /// Extra environment variables (part of the cache key).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Artifact types the output provides to typed inputs downstream (e.g. `[crops]` for a
    /// command that writes the `build_crops` layout). A promise, not checked; not in the key.
    #[serde(default)]
    pub provides: Hint<Vec<String>>,
}

/// The `command` kind.
pub struct CommandStage;

/// `LUNA_IN_<NAME>` for a stage name.
pub fn env_name(stage: &str) -> String {
    let up: String = stage
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("LUNA_IN_{up}")
}

impl Stage for CommandStage {
    type Params = CommandParams;
    const KIND: &'static str = "command";
    const VERSION: u32 = 1;
    const DOC: &'static str =
        "Run a shell command; $LUNA_OUT is its output dir, $LUNA_IN_<STAGE> its inputs";

    fn provides(p: &CommandParams) -> Vec<String> {
        p.provides.0.clone()
    }

    fn inputs(p: &CommandParams) -> Vec<ExternalInput> {
        p.inputs
            .iter()
            .map(|i| ExternalInput::new(i.to_string(), i.path()))
            .collect()
    }

    fn validate(p: &CommandParams) -> Result<(), ParamError> {
        if p.run.trim().is_empty() {
            return Err(ParamError::new("run", "the command is empty"));
        }
        for (i, o) in p.outputs.iter().enumerate() {
            if o.is_empty() || o.starts_with('/') || o.split('/').any(|c| c == "..") {
                return Err(ParamError::new(
                    format!("outputs.{i}"),
                    format!("`{o}` must be a relative path inside $LUNA_OUT"),
                ));
            }
        }
        Ok(())
    }

    fn run(&self, p: &CommandParams, ctx: &mut StageContext) -> Result<(), StageError> {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(GUARD)
            .arg("luna-command")
            .arg(&p.run)
            .current_dir(ctx.workspace());
        cmd.env("LUNA_OUT", ctx.out_dir())
            .env("LUNA_WORKSPACE", ctx.workspace())
            .env("LUNA_STAGE", ctx.stage());
        for u in ctx.upstreams() {
            cmd.env(env_name(&u.stage), &u.dir);
        }
        cmd.envs(&p.env);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // SAFETY: setpgid, prctl and getppid in the child before exec; all async-signal-safe.
        let parent = std::process::id() as libc::pid_t;
        unsafe {
            cmd.pre_exec(move || {
                // own process group, so the guard's `kill 0` reaches every process of the command
                // and nothing else
                libc::setpgid(0, 0);
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                if libc::getppid() != parent {
                    // luna died before prctl took effect: the signal will never come
                    return Err(std::io::Error::other(
                        "luna exited while starting the command",
                    ));
                }
                Ok(())
            });
        }
        ctx.log(format!("$ {}", p.run));
        let mut child = cmd.spawn().map_err(|e| StageError::io("sh", e))?;
        // the guard is the leader of the command's process group (setpgid above)
        let pgid = child.id() as libc::pid_t;
        let tail: Arc<Mutex<VecDeque<String>>> = Arc::default();
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let ctx_ref = &*ctx;
        let status = std::thread::scope(|s| {
            if let Some(out) = stdout {
                s.spawn(move || for_each_line(out, |line| handle_line(ctx_ref, line)));
            }
            if let Some(err) = stderr {
                let tail = tail.clone();
                s.spawn(move || {
                    for_each_line(err, |line| {
                        handle_line(ctx_ref, line);
                        let mut t = tail.lock().unwrap_or_else(|e| e.into_inner());
                        t.push_back(line.to_string());
                        if t.len() > 20 {
                            t.pop_front();
                        }
                    })
                });
            }
            // Wait for the command to end without reaping it, so its pid (the group's id) cannot
            // be reused; then SIGKILL whatever it left running in its group. An orphaned
            // background job must not add files to the output after it is committed, nor keep
            // the output pipes (and so this stage) open.
            let waited = wait_exited(pgid);
            // SAFETY: signals the command's own process group, whose leader is not reaped yet.
            unsafe { libc::kill(-pgid, libc::SIGKILL) };
            waited.and_then(|()| child.wait())
        });
        let status = status.map_err(|e| StageError::io("sh", e))?;
        if !status.success() {
            use std::os::unix::process::ExitStatusExt;
            let st = match (status.code(), status.signal()) {
                (Some(c), _) => format!("exit code {c}"),
                (None, Some(sig)) => format!("signal {sig}"),
                _ => "unknown status".into(),
            };
            let t = tail.lock().unwrap_or_else(|e| e.into_inner());
            return Err(StageError::CommandFailed {
                command: p.run.clone(),
                status: st,
                stderr_tail: t.iter().cloned().collect::<Vec<_>>().join("\n"),
                log: ctx.log_path().to_path_buf(),
            });
        }
        for o in &p.outputs {
            let path = ctx.out_dir().join(o);
            if !path.exists() {
                return Err(StageError::MissingOutput {
                    name: o.clone(),
                    path,
                });
            }
        }
        Ok(())
    }
}

/// The direct child of luna: runs the user's command (`$1`) in an inner shell and, when luna
/// dies (PR_SET_PDEATHSIG delivers SIGTERM), kills its whole process group with SIGKILL, so
/// background jobs and grandchildren die too, not only the shell luna started. PDEATHSIG alone
/// reaches only the direct child (it is not inherited across fork); SIGKILL would leave no
/// chance to clean up. `wait` returns as soon as the trapped signal arrives (POSIX), and the
/// command's exit status is the script's.
const GUARD: &str = r#"trap 'kill -KILL 0' TERM; sh -c "$1" & wait $!"#;

/// Calls `f` for every line `r` yields, bytes that are not UTF-8 replaced by U+FFFD: a command
/// printing binary must not make luna stop reading (the command would then die of SIGPIPE).
fn for_each_line(r: impl Read, mut f: impl FnMut(&str)) {
    for line in BufReader::new(r).split(b'\n').map_while(Result::ok) {
        let line = String::from_utf8_lossy(&line);
        f(line.strip_suffix('\r').unwrap_or(&line));
    }
}

/// Blocks until process `pid` (a child) has exited, leaving it unreaped (`WNOWAIT`).
fn wait_exited(pid: libc::pid_t) -> std::io::Result<()> {
    loop {
        // SAFETY: an all-zero siginfo_t is valid; waitid fills it.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: waits for our own child; `info` lives for the call.
        let rc = unsafe {
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        if rc == 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(e);
        }
    }
}

fn handle_line(ctx: &StageContext, line: &str) {
    if let Some(rest) = line.trim().strip_prefix("luna:progress ") {
        if let Some((a, b)) = rest.split_once('/') {
            if let (Ok(a), Ok(b)) = (a.trim().parse::<u64>(), b.trim().parse::<u64>()) {
                ctx.progress().set(a, b, "steps");
                return;
            }
        }
    }
    ctx.log(line);
}
