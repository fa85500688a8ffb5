//! The SDK carries its own copy of the WIT contract (`plugin-sdk/wit/filter.wit`)
//! so that a published package is self-contained. This test keeps that copy
//! equal, byte for byte, to the repository's `wit/filter.wit`, which the host
//! is built from.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

const FIX: &str = "from the repository root run `cp wit/filter.wit plugin-sdk/wit/` \
                   (`cp -r wit/. plugin-sdk/wit/` if wit/ holds more files)";

/// Every file under `dir`, as paths relative to it.
fn files(dir: &Path) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let entries = std::fs::read_dir(&d)
            .unwrap_or_else(|e| panic!("{}: cannot list ({e}); {FIX}", d.display()));
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                todo.push(path);
            } else {
                out.insert(path.strip_prefix(dir).unwrap().to_path_buf());
            }
        }
    }
    out
}

#[test]
fn sdk_wit_is_a_copy_of_the_repository_wit() {
    let sdk = Path::new(env!("CARGO_MANIFEST_DIR"));
    let repo_dir = sdk.join("../wit");
    if !repo_dir.is_dir() {
        // Built from a published package: there is no repository around it.
        eprintln!(
            "note: {} does not exist (not built inside an aigw checkout); nothing to compare",
            repo_dir.display()
        );
        return;
    }
    let copy_dir = sdk.join("wit");

    // The file the bindings are generated from, byte for byte.
    let repo = std::fs::read(repo_dir.join("filter.wit")).unwrap_or_else(|e| {
        panic!(
            "{}: cannot read: {e}",
            repo_dir.join("filter.wit").display()
        )
    });
    let copy = std::fs::read(copy_dir.join("filter.wit")).unwrap_or_else(|e| {
        panic!(
            "{}: cannot read ({e}); the SDK builds from its own copy of the WIT: {FIX}",
            copy_dir.join("filter.wit").display()
        )
    });
    if repo != copy {
        let at = repo
            .iter()
            .zip(copy.iter())
            .position(|(a, b)| a != b)
            .unwrap_or(repo.len().min(copy.len()));
        let line = 1 + repo[..at].iter().filter(|&&b| b == b'\n').count();
        panic!(
            "plugin-sdk/wit/filter.wit differs from wit/filter.wit (first at byte {at}, line {line}; \
             {} vs {} bytes). The SDK builds from its own copy of the WIT: {FIX}",
            copy.len(),
            repo.len()
        );
    }

    // And the rest of the folder, should the contract grow more files.
    let (repo_files, copy_files) = (files(&repo_dir), files(&copy_dir));
    assert_eq!(
        repo_files, copy_files,
        "plugin-sdk/wit/ and wit/ hold different files; {FIX}"
    );
    for file in &repo_files {
        assert!(
            std::fs::read(repo_dir.join(file)).unwrap()
                == std::fs::read(copy_dir.join(file)).unwrap(),
            "plugin-sdk/wit/{0} differs from wit/{0}; {FIX}",
            file.display()
        );
    }
}
