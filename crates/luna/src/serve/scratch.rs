//! What `/v1/detect` keeps on disk: one folder per request under `.luna/serve/uploads/`
//! (the upload and the CT staged from it), removed when the answer is sent unless
//! `--keep-uploads`; the run records of the detections under `.luna/serve/runs/`, the last
//! `--keep-runs` of them; and a floor of free disk space (`--min-free-disk`) below which a
//! detection is refused with 507 before anything is written.
//!
//! Design: a [`RequestDir`] guard owns a request's folder and removes it when dropped, so
//! every exit path (a parse error, a failed run, a panic in the runner, a client that went
//! away) cleans up. The free-space check asks the file system (`statvfs`) for the space an
//! unprivileged writer has and wants the floor plus [`SPACE_FACTOR`] times the upload (the
//! upload, and the cached partitions the detection writes for it: probability volume,
//! clusters, crops). Records are rotated by name, which sorts by start time.
//!
//! Rejected: keeping failed uploads for inspection by default (the adversarial run filled the
//! disk with them); a quota on the cache (the cache has `luna cache gc`; serve only bounds what
//! it adds by itself); counting our own files to enforce a byte cap (the disk is shared with
//! the cache and everything else; free space is what runs out).

use std::path::{Path, PathBuf};

/// A detection wants this many times its upload in free space above the floor.
pub const SPACE_FACTOR: u64 = 4;

/// The scratch and record folders of `/v1/detect`, and the disk floor.
#[derive(Debug, Clone)]
pub struct Scratch {
    /// Upload folders (`.luna/serve/uploads`).
    pub uploads: PathBuf,
    /// Run records (`.luna/serve/runs`).
    pub runs: PathBuf,
    /// Keep each request's folder after the answer.
    pub keep_uploads: bool,
    /// Run records kept.
    pub keep_runs: usize,
    /// Free bytes that must remain.
    pub min_free: u64,
}

/// Not enough disk left.
#[derive(Debug, thiserror::Error)]
#[error("the server's disk has {free} bytes free; a detection of {upload} bytes needs {needed} (`luna serve --min-free-disk` keeps {floor} free); retry later or ask the operator to free space")]
pub struct NoSpace {
    /// Free bytes now.
    pub free: u64,
    /// The upload's size.
    pub upload: u64,
    /// Bytes wanted.
    pub needed: u64,
    /// The floor.
    pub floor: u64,
}

/// Free bytes for an unprivileged writer on the file system holding `p` (or its nearest
/// existing ancestor).
pub fn free_bytes(p: &Path) -> std::io::Result<u64> {
    let mut at = p;
    while !at.exists() {
        at = at.parent().unwrap_or(Path::new("/"));
    }
    let c =
        std::ffi::CString::new(at.as_os_str().as_encoded_bytes()).map_err(std::io::Error::other)?;
    // SAFETY: a valid NUL-terminated path and a zeroed out-struct that statvfs fills.
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut s) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok((s.f_bavail as u64).saturating_mul(s.f_frsize as u64))
}

impl Scratch {
    /// Refuses an upload of `upload` bytes that would take the disk below the floor.
    pub fn check_space(&self, upload: u64) -> Result<(), NoSpace> {
        // a file system that cannot be asked is not refused for it: the write itself will say
        let Ok(free) = free_bytes(&self.uploads) else {
            return Ok(());
        };
        let needed = self
            .min_free
            .saturating_add(upload.saturating_mul(SPACE_FACTOR));
        if free < needed {
            return Err(NoSpace {
                free,
                upload,
                needed,
                floor: self.min_free,
            });
        }
        Ok(())
    }

    /// A fresh folder for request `name`, removed when the guard drops (unless kept).
    pub fn request(&self, name: &str) -> std::io::Result<RequestDir> {
        let dir = self.uploads.join(name);
        std::fs::create_dir_all(&dir)?;
        Ok(RequestDir {
            dir,
            keep: self.keep_uploads,
        })
    }

    /// Removes the upload folders of servers that are gone (killed before they could clean
    /// up): folders are named `<request>-<pid>`, and a pid that no longer runs owns nothing.
    pub fn clean_stale(&self) {
        if self.keep_uploads {
            return;
        }
        for e in std::fs::read_dir(&self.uploads)
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = e.file_name().to_string_lossy().into_owned();
            let pid = name.rsplit('-').next().and_then(|p| p.parse::<i32>().ok());
            // SAFETY: kill with signal 0 only asks whether the process exists.
            let gone = pid.is_some_and(|p| {
                p > 0
                    && unsafe { libc::kill(p, 0) } != 0
                    && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
            });
            if gone {
                if let Err(err) = std::fs::remove_dir_all(e.path()) {
                    eprintln!(
                        "serve: warning: cannot remove the stale upload {}: {err}",
                        e.path().display()
                    );
                }
            }
        }
    }

    /// Removes the oldest run records beyond `keep_runs`.
    pub fn rotate_runs(&self) {
        let mut ids: Vec<PathBuf> = std::fs::read_dir(&self.runs)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect();
        ids.sort();
        let extra = ids.len().saturating_sub(self.keep_runs);
        for old in &ids[..extra] {
            if let Err(e) = std::fs::remove_dir_all(old) {
                eprintln!(
                    "serve: warning: cannot remove the old run record {}: {e}",
                    old.display()
                );
            }
        }
    }
}

/// One request's folder; removed when dropped unless `--keep-uploads`.
#[derive(Debug)]
pub struct RequestDir {
    dir: PathBuf,
    keep: bool,
}

impl RequestDir {
    /// The folder.
    pub fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for RequestDir {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                eprintln!("serve: warning: cannot remove {}: {e}", self.dir.display());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(root: &Path, keep_runs: usize, min_free: u64) -> Scratch {
        Scratch {
            uploads: root.join("uploads"),
            runs: root.join("runs"),
            keep_uploads: false,
            keep_runs,
            min_free,
        }
    }

    #[test]
    fn request_folders_go_away_and_records_rotate() {
        let d = tempfile::tempdir().unwrap();
        let s = scratch(d.path(), 2, 0);
        let r = s.request("1-2").unwrap();
        std::fs::write(r.path().join("x"), b"1").unwrap();
        let p = r.path().to_path_buf();
        drop(r);
        assert!(!p.exists());
        for id in [
            "20260101T000003-a",
            "20260101T000001-a",
            "20260101T000002-a",
        ] {
            std::fs::create_dir_all(s.runs.join(id)).unwrap();
        }
        s.rotate_runs();
        let mut left: Vec<_> = std::fs::read_dir(&s.runs)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, ["20260101T000002-a", "20260101T000003-a"]);
    }

    #[test]
    fn the_floor_refuses_what_would_pass_it() {
        let d = tempfile::tempdir().unwrap();
        assert!(scratch(d.path(), 1, 0).check_space(1).is_ok());
        let e = scratch(d.path(), 1, u64::MAX / 2)
            .check_space(1)
            .unwrap_err();
        assert!(e.to_string().contains("--min-free-disk"), "{e}");
    }
}
