//! Why a stage will run: one variant per cause, with old and new values.
//!
//! Freshness is decided by key (see `fingerprint.rs`); these reasons *explain* a stale key by
//! diffing the new key material against the last recorded state of the same stage. Every cause
//! is collected (not just the first), and rendering is one exhaustive `match`, so a new cause
//! that is not rendered does not compile. The JSON form (`status --json`) is pinned by tests.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::cache::short;
use super::fingerprint::KeyMaterial;

/// One reason a stage will run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum RerunReason {
    /// Never run in this workspace and not in the cache.
    FirstRun,
    /// Ran before, but its artifact is no longer in the cache (gc, another cache dir).
    NoCachedArtifact {
        /// The key looked for.
        key: String,
    },
    /// A parameter's value changed.
    ParamChanged {
        /// Dotted path under `with`.
        path: String,
        /// Previous value.
        old: serde_json::Value,
        /// New value.
        new: serde_json::Value,
    },
    /// A parameter was added.
    ParamAdded {
        /// Dotted path.
        path: String,
        /// New value.
        new: serde_json::Value,
    },
    /// A parameter was removed.
    ParamRemoved {
        /// Dotted path.
        path: String,
        /// Previous value.
        old: serde_json::Value,
    },
    /// An external input's content changed.
    InputChanged {
        /// Input label.
        name: String,
        /// Path as written.
        path: String,
        /// Previous blake3.
        old: String,
        /// New blake3.
        new: String,
    },
    /// An external input was added.
    InputAdded {
        /// Input label.
        name: String,
        /// Path.
        path: String,
    },
    /// An external input was removed.
    InputRemoved {
        /// Input label.
        name: String,
        /// Path.
        path: String,
    },
    /// `uses:` changed.
    KindChanged {
        /// Previous kind.
        old: String,
        /// New kind.
        new: String,
    },
    /// The kind's VERSION changed (a luna upgrade changed its output).
    KindVersionChanged {
        /// Kind name.
        kind: String,
        /// Previous version.
        old: u32,
        /// New version.
        new: u32,
    },
    /// An upstream stage will run first.
    UpstreamWillRun {
        /// Upstream stage.
        stage: String,
    },
    /// An upstream stage may run first (its own upstream will): this stage runs only if that
    /// one's output changes.
    UpstreamMayRun {
        /// Upstream stage.
        stage: String,
    },
    /// Not a cause to run but why a stage that looked stale stayed cached: the upstream stage
    /// re-ran and wrote byte-identical output (early cutoff; see `fingerprint.rs`).
    UpstreamUnchanged {
        /// The upstream stage that re-ran.
        stage: String,
    },
    /// An upstream artifact differs from last time although that stage is fresh now.
    UpstreamChanged {
        /// Upstream stage.
        stage: String,
        /// Previous key.
        old: String,
        /// New key.
        new: String,
    },
    /// A `needs:` entry was added.
    UpstreamAdded {
        /// Upstream stage.
        stage: String,
    },
    /// A `needs:` entry was removed.
    UpstreamRemoved {
        /// Upstream stage.
        stage: String,
    },
    /// A named input is now filled by another upstream artifact.
    InputRebound {
        /// Input name.
        input: String,
    },
    /// `--force` selected it.
    Forced,
    /// The previous record could not be read.
    ManifestUnreadable {
        /// What failed.
        error: String,
    },
    /// The key differs but no difference was found: a bug signal, please report.
    NothingObvious,
}

impl fmt::Display for RerunReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RerunReason::FirstRun => write!(f, "no cached artifact (first run)"),
            RerunReason::NoCachedArtifact { key } => {
                write!(f, "no cached artifact (key {} not in cache)", short(key))
            }
            RerunReason::ParamChanged { path, old, new } => {
                write!(f, "param {path} changed {old} → {new}")
            }
            RerunReason::ParamAdded { path, new } => write!(f, "param {path} added ({new})"),
            RerunReason::ParamRemoved { path, old } => {
                write!(f, "param {path} removed (was {old})")
            }
            RerunReason::InputChanged {
                name,
                path,
                old,
                new,
            } => {
                let shown = if name == path {
                    format!("input {path}")
                } else {
                    format!("input {name} ({path})")
                };
                write!(
                    f,
                    "{shown} changed (blake3 {}… → {}…)",
                    crate::text::head_chars(old, 4),
                    crate::text::head_chars(new, 4)
                )
            }
            RerunReason::InputAdded { name, path } => write!(f, "input {name} added ({path})"),
            RerunReason::InputRemoved { name, path } => write!(f, "input {name} removed ({path})"),
            RerunReason::KindChanged { old, new } => write!(f, "kind changed {old} → {new}"),
            RerunReason::KindVersionChanged { kind, old, new } => {
                write!(f, "kind {kind} version {old} → {new}")
            }
            RerunReason::UpstreamWillRun { stage } => write!(f, "upstream '{stage}' will run"),
            RerunReason::UpstreamMayRun { stage } => write!(f, "upstream '{stage}' may run"),
            RerunReason::UpstreamUnchanged { stage } => {
                write!(f, "upstream re-ran, output unchanged ('{stage}')")
            }
            RerunReason::UpstreamChanged { stage, old, new } => {
                write!(
                    f,
                    "upstream '{stage}' artifact changed ({} → {})",
                    short(old),
                    short(new)
                )
            }
            RerunReason::UpstreamAdded { stage } => write!(f, "upstream '{stage}' added to needs"),
            RerunReason::UpstreamRemoved { stage } => {
                write!(f, "upstream '{stage}' removed from needs")
            }
            RerunReason::InputRebound { input } => {
                write!(
                    f,
                    "input '{input}' now comes from another upstream artifact"
                )
            }
            RerunReason::Forced => write!(f, "forced (--force)"),
            RerunReason::ManifestUnreadable { error } => {
                write!(f, "previous record unreadable ({error})")
            }
            RerunReason::NothingObvious => {
                write!(f, "key changed for no visible reason (please report this)")
            }
        }
    }
}

/// Where an upstream stage stands when a stage is explained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pending {
    /// Fresh or finished: its artifact is known.
    Settled,
    /// It will run.
    WillRun,
    /// It may run (an upstream of its own will).
    MayRun,
}

impl RerunReason {
    /// Whether the reason is only that an upstream stage will or may run first (a stage with
    /// no other reason is "maybe stale": its upstream's output decides).
    pub fn is_upstream_pending(&self) -> bool {
        matches!(
            self,
            RerunReason::UpstreamWillRun { .. } | RerunReason::UpstreamMayRun { .. }
        )
    }
}

/// Diffs the previous key material of a stage against the new one.
/// `pending` says where each upstream stage stands in this run.
pub fn diff(
    old: &KeyMaterial,
    new: &KeyMaterial,
    pending: &dyn Fn(&str) -> Pending,
) -> Vec<RerunReason> {
    let mut out = Vec::new();
    if old.kind != new.kind {
        out.push(RerunReason::KindChanged {
            old: old.kind.clone(),
            new: new.kind.clone(),
        });
    } else if old.version != new.version {
        out.push(RerunReason::KindVersionChanged {
            kind: new.kind.clone(),
            old: old.version,
            new: new.version,
        });
    }
    diff_params("", &old.params, &new.params, &mut out);
    for (stage, key) in &new.upstream {
        match old.upstream.get(stage) {
            None => out.push(RerunReason::UpstreamAdded {
                stage: stage.clone(),
            }),
            Some(_) if pending(stage) == Pending::WillRun => {
                out.push(RerunReason::UpstreamWillRun {
                    stage: stage.clone(),
                })
            }
            Some(_) if pending(stage) == Pending::MayRun => out.push(RerunReason::UpstreamMayRun {
                stage: stage.clone(),
            }),
            Some(k) if k != key => out.push(RerunReason::UpstreamChanged {
                stage: stage.clone(),
                old: k.clone(),
                new: key.clone(),
            }),
            Some(_) => {}
        }
    }
    for stage in old.upstream.keys() {
        if !new.upstream.contains_key(stage) {
            out.push(RerunReason::UpstreamRemoved {
                stage: stage.clone(),
            });
        }
    }
    for (input, key) in &new.bindings {
        if old.bindings.get(input).is_some_and(|k| k != key)
            && !out.iter().any(|r| {
                matches!(
                    r,
                    RerunReason::UpstreamWillRun { .. }
                        | RerunReason::UpstreamMayRun { .. }
                        | RerunReason::UpstreamChanged { .. }
                )
            })
        {
            out.push(RerunReason::InputRebound {
                input: input.clone(),
            });
        }
    }
    let old_in: BTreeMap<&str, _> = old.inputs.iter().map(|i| (i.name.as_str(), i)).collect();
    let new_in: BTreeMap<&str, _> = new.inputs.iter().map(|i| (i.name.as_str(), i)).collect();
    for (name, n) in &new_in {
        match old_in.get(name) {
            None => out.push(RerunReason::InputAdded {
                name: name.to_string(),
                path: n.path.clone(),
            }),
            Some(o) if o.blake3 != n.blake3 => out.push(RerunReason::InputChanged {
                name: name.to_string(),
                path: n.path.clone(),
                old: o.blake3.clone(),
                new: n.blake3.clone(),
            }),
            Some(_) => {}
        }
    }
    for (name, o) in &old_in {
        if !new_in.contains_key(name) {
            out.push(RerunReason::InputRemoved {
                name: name.to_string(),
                path: o.path.clone(),
            });
        }
    }
    out
}

fn diff_params(
    prefix: &str,
    old: &serde_json::Value,
    new: &serde_json::Value,
    out: &mut Vec<RerunReason>,
) {
    use serde_json::Value;
    let join = |k: &str| {
        if prefix.is_empty() {
            k.to_string()
        } else {
            format!("{prefix}.{k}")
        }
    };
    match (old, new) {
        (Value::Object(o), Value::Object(n)) => {
            for (k, nv) in n {
                match o.get(k) {
                    None => out.push(RerunReason::ParamAdded {
                        path: join(k),
                        new: nv.clone(),
                    }),
                    Some(ov) => diff_params(&join(k), ov, nv, out),
                }
            }
            for (k, ov) in o {
                if !n.contains_key(k) {
                    out.push(RerunReason::ParamRemoved {
                        path: join(k),
                        old: ov.clone(),
                    });
                }
            }
        }
        (o, n) if o != n => out.push(RerunReason::ParamChanged {
            path: prefix.to_string(),
            old: o.clone(),
            new: n.clone(),
        }),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_form_is_pinned() {
        let r = RerunReason::ParamChanged {
            path: "lr".into(),
            old: 0.001.into(),
            new: 0.003.into(),
        };
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"reason":"param_changed","path":"lr","old":0.001,"new":0.003}"#
        );
        assert_eq!(r.to_string(), "param lr changed 0.001 → 0.003");
        let r = RerunReason::UpstreamWillRun {
            stage: "crops".into(),
        };
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"reason":"upstream_will_run","stage":"crops"}"#
        );
        assert_eq!(r.to_string(), "upstream 'crops' will run");
    }

    #[test]
    fn nested_params_are_diffed_by_path() {
        let mut out = Vec::new();
        diff_params(
            "",
            &serde_json::json!({"a": {"b": 1, "c": 2}}),
            &serde_json::json!({"a": {"b": 3}, "d": true}),
            &mut out,
        );
        let shown: Vec<String> = out.iter().map(|r| r.to_string()).collect();
        assert_eq!(
            shown,
            vec![
                "param a.b changed 1 → 3",
                "param a.c removed (was 2)",
                "param d added (true)"
            ]
        );
    }
}
