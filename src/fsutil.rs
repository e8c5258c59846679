//! File writes that never leave a torn file behind.

use std::io::Write;
use std::path::Path;

/// Writes `bytes` to a temporary file beside `path`, syncs it, and renames
/// it over `path`, so readers see the old content or the new, never half.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other(format!("{} is not a file path", path.display())))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Builds a directory at `out` without ever exposing a half-written one:
/// `fill` writes into a hidden sibling, which is renamed into place only
/// when it succeeded (and removed when it did not). An existing `out` is
/// replaced only with `overwrite`; the caller checks for it first.
pub fn write_dir_atomic<E>(
    out: &Path,
    overwrite: bool,
    fill: impl FnOnce(&Path) -> Result<(), E>,
) -> Result<(), E>
where
    E: From<(std::path::PathBuf, std::io::Error)>,
{
    let dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "export".into());
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |e: std::io::Error| E::from((path, e))
    };
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir(&tmp).map_err(io(&tmp))?;
    if let Err(e) = fill(&tmp) {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    let result = (|| {
        if overwrite && out.exists() {
            let old = dir.join(format!(".{name}.old-{}", std::process::id()));
            std::fs::rename(out, &old)?;
            std::fs::rename(&tmp, out)?;
            if old.is_dir() {
                std::fs::remove_dir_all(&old)
            } else {
                std::fs::remove_file(&old)
            }
        } else {
            std::fs::rename(&tmp, out)
        }
    })();
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result.map_err(io(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_fill_leaves_nothing_and_a_good_one_replaces_only_when_asked() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("export");
        let failed: Result<(), (std::path::PathBuf, std::io::Error)> =
            write_dir_atomic(&out, false, |dir| {
                std::fs::write(dir.join("half.bin"), b"half")
                    .map_err(|e| (dir.to_path_buf(), e))?;
                Err((dir.to_path_buf(), std::io::Error::other("disk full")))
            });
        assert!(failed.is_err());
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
        let write = |text: &'static str, overwrite: bool| {
            write_dir_atomic::<(std::path::PathBuf, std::io::Error)>(&out, overwrite, |dir| {
                std::fs::write(dir.join("f"), text).map_err(|e| (dir.to_path_buf(), e))
            })
        };
        write("one", false).unwrap();
        write("two", true).unwrap();
        assert_eq!(std::fs::read_to_string(out.join("f")).unwrap(), "two");
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 1);
    }
}
