//! The spool's folders and the file moves between them: claiming by atomic rename,
//! moving without overwriting, and the lock that marks a processing folder as in use.

use std::fs::File;
use std::path::{Path, PathBuf};

use super::{LOCK_FILE, REASON_SUFFIX};
use crate::error::{GatewayError, Result, Stage};

#[derive(Debug, Clone)]
pub struct SpoolDirs {
    pub inbox: PathBuf,
    pub processing: PathBuf,
    pub done: PathBuf,
    pub failed: PathBuf,
}

impl SpoolDirs {
    pub fn for_flow(root: &Path, flow_folder: &str) -> SpoolDirs {
        let base = root.join(flow_folder);
        SpoolDirs {
            inbox: base.join("inbox"),
            processing: base.join("processing"),
            done: base.join("done"),
            failed: base.join("failed"),
        }
    }

    pub fn create(&self) -> Result<()> {
        for d in [&self.inbox, &self.processing, &self.done, &self.failed] {
            std::fs::create_dir_all(d).map_err(|e| {
                GatewayError::permanent(
                    Stage::Config,
                    format!("cannot create spool folder {}: {e}", d.display()),
                )
            })?;
        }
        Ok(())
    }
}

/// A message file: `*.json`, not hidden, not a reason file, and a regular file or a
/// symbolic link (which is claimed only to be parked: the spool never follows one).
pub(super) fn wanted(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    !name.starts_with('.')
        && name.ends_with(".json")
        && !name.ends_with(REASON_SUFFIX)
        && std::fs::symlink_metadata(path)
            .is_ok_and(|m| m.file_type().is_file() || m.file_type().is_symlink())
}

/// Whether `path` is a symbolic link (not followed).
pub(super) fn is_link(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink())
}

/// `name`, or `stem-N.json` for the first N not taken in `dir`.
fn candidates(name: &str) -> impl Iterator<Item = String> + '_ {
    let (stem, ext) = match name.rsplit_once('.') {
        Some((s, e)) => (s, format!(".{e}")),
        None => (name, String::new()),
    };
    std::iter::once(name.to_string()).chain((1..).map(move |n| format!("{stem}-{n}{ext}")))
}

/// Moves `from` into a folder others also write to, never overwriting: a hard link
/// under the first free name, then the old name removed. Returns the new path.
pub(super) fn move_into(from: &Path, dir: &Path) -> std::io::Result<PathBuf> {
    let name = from
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("message.json");
    for candidate in candidates(name).take(10_000) {
        let to = dir.join(&candidate);
        match std::fs::hard_link(from, &to) {
            Ok(()) => {
                std::fs::remove_file(from)?;
                return Ok(to);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other("no free name"))
}

/// Claims an inbox file into this instance's own folder: `rename` is atomic, so of
/// several instances racing for one file exactly one gets it. The name is free in the
/// target folder because only this instance writes there.
pub(super) fn claim(from: &Path, mine: &Path) -> std::io::Result<PathBuf> {
    let name = from
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("message.json");
    let to = candidates(name)
        .map(|c| mine.join(c))
        .find(|p| !p.exists())
        .unwrap_or_else(|| mine.join(name));
    // rename moves a symbolic link itself, never what it points at.
    std::fs::rename(from, &to)?;
    // Patient data: owner-only from here on (done/ and failed/ keep the mode), whatever
    // the writer's umask was. Never through a link: that would change its target.
    if !is_link(&to) {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o600));
    }
    Ok(to)
}

/// Creates this instance's processing folder and locks it for the process's life.
pub(super) fn own_folder(mine: &Path) -> Result<File> {
    let fail = |e: std::io::Error| {
        GatewayError::permanent(
            Stage::Config,
            format!("cannot claim spool folder {}: {e}", mine.display()),
        )
    };
    std::fs::create_dir_all(mine).map_err(fail)?;
    let f = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(mine.join(LOCK_FILE))
        .map_err(fail)?;
    f.try_lock()
        .map_err(|e| fail(std::io::Error::other(e.to_string())))?;
    Ok(f)
}

/// A name safe as a folder name.
pub(super) fn safe(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clashing_names_keep_their_suffix_and_nothing_is_overwritten() {
        let d = tempfile::tempdir().unwrap();
        let (a, b) = (d.path().join("a"), d.path().join("b"));
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        for (i, body) in ["one", "two", "three"].iter().enumerate() {
            let f = a.join("r1.json");
            std::fs::write(&f, body).unwrap();
            let to = move_into(&f, &b).unwrap();
            let want = ["r1.json", "r1-1.json", "r1-2.json"][i];
            assert_eq!(to.file_name().unwrap(), want);
            assert!(!f.exists());
        }
        assert_eq!(std::fs::read_to_string(b.join("r1.json")).unwrap(), "one");
        assert_eq!(
            std::fs::read_to_string(b.join("r1-2.json")).unwrap(),
            "three"
        );
        assert!(wanted(&b.join("r1-1.json")));
        std::fs::write(b.join("r1.json.reason.json"), "{}").unwrap();
        assert!(!wanted(&b.join("r1.json.reason.json")));
    }

    #[test]
    fn a_running_instances_folder_is_left_alone_and_a_stopped_ones_is_recovered() {
        let d = tempfile::tempdir().unwrap();
        let processing = d.path().join("processing");
        let (alive, dead) = (processing.join("gw-a"), processing.join("gw-b"));
        let held = own_folder(&alive).unwrap();
        drop(own_folder(&dead).unwrap());
        std::fs::write(alive.join("x.json"), "a").unwrap();
        std::fs::write(dead.join("x.json"), "b").unwrap();
        // A second instance cannot take a folder whose lock is held.
        assert!(own_folder(&alive).is_err());
        drop(held);
        assert!(own_folder(&alive).is_ok(), "free once its owner stopped");
    }
}
