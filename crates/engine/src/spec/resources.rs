//! A stage's `resources:` — what a scheduler should give the process that runs its work:
//!
//! ```yaml
//!   crops:
//!     uses: build_crops
//!     resources: { cpus: 4, mem: 8G, time: "01:00:00" }
//!   train:
//!     uses: train_classifier
//!     resources: { cpus: 8, mem: 32G, gpus: 1, time: "12:00:00" }
//! ```
//!
//! Hints only: resources never enter a cache key (a stage computed with 2 CPUs or 16 is the
//! same artifact), and the local executor ignores them. The values are kept as the user wrote
//! them (`mem: 8G`, `time: "1-00:00:00"`) and handed to the scheduler, which is the one judge
//! of their syntax: a request Slurm rejects is reported with the stage's name and Slurm's
//! words before anything is submitted. Rejected: parsing memory and time into numbers here
//! (a second, stricter grammar than the scheduler's, for no gain); resources inside `with:`
//! (they would become kind parameters, and every kind would have to declare them).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The `resources:` of a stage; every field optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    /// CPUs for the stage's process (Slurm `--cpus-per-task`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<u32>,
    /// Memory, in the scheduler's syntax (`8G`, `500M`; Slurm `--mem`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mem: Option<String>,
    /// GPUs (Slurm `--gres=gpu:N`); for torch stages the executor asks for one by default
    /// when the stage's `device` is `cuda` or `auto` and the cluster has GPUs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpus: Option<u32>,
    /// Wall-time limit, in the scheduler's syntax (`30`, `01:00:00`, `1-00:00:00`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
}

impl Resources {
    /// Parses the (interpolated) `resources:` value; `Err((sub-path, message))`.
    pub fn from_json(v: &serde_json::Value) -> Result<Resources, (String, String)> {
        if v.is_null() {
            return Ok(Resources::default());
        }
        let v = match v {
            // `mem: 8G` and `time: 30` may come as numbers; the scheduler takes text
            serde_json::Value::Object(m) => serde_json::Value::Object(
                m.iter()
                    .map(|(k, x)| match (k.as_str(), x) {
                        ("mem" | "time", serde_json::Value::Number(n)) => {
                            (k.clone(), serde_json::Value::String(n.to_string()))
                        }
                        _ => (k.clone(), x.clone()),
                    })
                    .collect(),
            ),
            other => other.clone(),
        };
        serde_path_to_error::deserialize(v).map_err(|e| {
            let path = e.path().to_string();
            (
                if path == "." { String::new() } else { path },
                e.into_inner().to_string(),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_parse_numbers_as_text_and_reject_unknown_keys() {
        let r = Resources::from_json(&serde_json::json!({"cpus": 2, "mem": 512, "time": "5"}));
        assert_eq!(
            r,
            Ok(Resources {
                cpus: Some(2),
                mem: Some("512".into()),
                gpus: None,
                time: Some("5".into())
            })
        );
        let e = Resources::from_json(&serde_json::json!({"cpu": 2})).err();
        let (path, msg) = e.unwrap_or_default();
        assert_eq!(path, "cpu");
        assert!(msg.starts_with("unknown field `cpu`"), "{msg}");
        let e = Resources::from_json(&serde_json::json!({"cpus": "two"})).err();
        assert_eq!(e.map(|e| e.0), Some("cpus".to_string()));
    }
}
