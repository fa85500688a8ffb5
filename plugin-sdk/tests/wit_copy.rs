//! The SDK carries its own copy of the WIT contract it builds against, so that a published
//! package is self-contained: `plugin-sdk/wit/filter.wit` is the repository's
//! `wit/0.2.0/filter.wit`, and `plugin-sdk/wit/deps/filter-0.1.0/filter.wit` is
//! `wit/0.1.0/filter.wit` (0.2.0 imports the 0.1.0 host services), and so is the repository's
//! own `wit/0.2.0/deps/filter-0.1.0/filter.wit` (a copy, not a link, so that checkouts without
//! symbolic links build). This test keeps each copy equal, byte for byte, to the file the host
//! is built from.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

const FIX: &str = "from the repository root run `cp wit/0.2.0/filter.wit plugin-sdk/wit/ && \
                   cp wit/0.1.0/filter.wit plugin-sdk/wit/deps/filter-0.1.0/ && \
                   cp wit/0.1.0/filter.wit wit/0.2.0/deps/filter-0.1.0/`";

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
    for (repo, copy) in [
        ("0.2.0/filter.wit", "plugin-sdk/wit/filter.wit"),
        (
            "0.1.0/filter.wit",
            "plugin-sdk/wit/deps/filter-0.1.0/filter.wit",
        ),
        ("0.1.0/filter.wit", "wit/0.2.0/deps/filter-0.1.0/filter.wit"),
    ] {
        let (repo_path, copy_path) = (repo_dir.join(repo), sdk.join("..").join(copy));
        let a = std::fs::read(&repo_path)
            .unwrap_or_else(|e| panic!("{}: cannot read: {e}", repo_path.display()));
        let b = std::fs::read(&copy_path).unwrap_or_else(|e| {
            panic!(
                "{}: cannot read ({e}); the SDK builds from its own copy of the WIT: {FIX}",
                copy_path.display()
            )
        });
        if a != b {
            let at = a
                .iter()
                .zip(b.iter())
                .position(|(x, y)| x != y)
                .unwrap_or(a.len().min(b.len()));
            let line = 1 + a[..at].iter().filter(|&&c| c == b'\n').count();
            panic!(
                "{copy} differs from wit/{repo} (first at byte {at}, line {line}; \
                 {} vs {} bytes). The SDK builds from its own copy of the WIT: {FIX}",
                b.len(),
                a.len()
            );
        }
    }
    // Nothing else in the SDK's copy: a stray file would be a contract the host lacks.
    let mut extra = Vec::new();
    let mut todo = vec![sdk.join("wit")];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                todo.push(path);
            } else if !path.ends_with("filter.wit") {
                extra.push(path.display().to_string());
            }
        }
    }
    assert!(
        extra.is_empty(),
        "unexpected files in plugin-sdk/wit: {extra:?}"
    );
}
