//! `cache verify --remote`: every object's manifest read and checked, and every file it
//! names downloaded and hashed once (a file shared by objects is read once, and its problem
//! reported for each of them). Nothing is written anywhere.

use std::collections::BTreeMap;

use futures::stream::{self, StreamExt};

use super::super::error::RemoteError;
use super::pull::Fetched;
use super::Remote;

impl Remote {
    /// Checks every object of the remote: its manifest parses and names its key, and every
    /// file it lists is there with its size and blake3 (each file downloaded and hashed once).
    /// Returns the number of objects checked and the problems by key.
    pub fn verify(&self) -> Result<(usize, Vec<(String, String)>), RemoteError> {
        let inv = self.inventory()?;
        let keys: Vec<String> = inv.objects.iter().cloned().collect();
        self.rt.block_on(async {
            let manifests: Vec<(String, Fetched)> = stream::iter(keys)
                .map(|k| async move {
                    let m = self.get_manifest(&k).await;
                    (k, m)
                })
                .buffer_unordered(self.jobs * 4)
                .collect()
                .await;
            let mut problems: BTreeMap<String, Vec<String>> = BTreeMap::new();
            let mut by_file: BTreeMap<String, (u64, String, Vec<String>)> = BTreeMap::new();
            for (k, m) in &manifests {
                match m {
                    Some(Ok(m)) => {
                        for f in &m.files {
                            match inv.files.get(&f.blake3) {
                                None => problems
                                    .entry(k.clone())
                                    .or_default()
                                    .push(format!("file {} is missing", f.path)),
                                Some(&s) if s != f.size => {
                                    problems.entry(k.clone()).or_default().push(format!(
                                        "file {} has {s} bytes, the manifest says {}",
                                        f.path, f.size
                                    ))
                                }
                                Some(_) => by_file
                                    .entry(f.blake3.clone())
                                    .or_insert((f.size, f.path.clone(), Vec::new()))
                                    .2
                                    .push(k.clone()),
                            }
                        }
                    }
                    Some(Err(why)) => problems.entry(k.clone()).or_default().push(why.clone()),
                    None => problems
                        .entry(k.clone())
                        .or_default()
                        .push("manifest vanished while verifying".into()),
                }
            }
            let total = by_file.values().map(|f| f.0).sum();
            let bar = self.progress("verify", total, by_file.len());
            let hashed: Vec<(Vec<String>, Option<String>)> = stream::iter(by_file)
                .map(|(h, (size, path, owners))| {
                    let bar = &bar;
                    async move {
                        let r = self.read_file(&h, size, &path, None, bar).await;
                        bar.file_done();
                        (owners, r.err().map(|p| p.to_string()))
                    }
                })
                .buffer_unordered(self.jobs)
                .collect()
                .await;
            bar.finish();
            for (owners, r) in hashed {
                if let Some(why) = r {
                    for o in owners {
                        problems.entry(o).or_default().push(why.clone());
                    }
                }
            }
            Ok((
                manifests.len(),
                problems
                    .into_iter()
                    .map(|(k, v)| (k, v.join("; ")))
                    .collect(),
            ))
        })
    }
}
