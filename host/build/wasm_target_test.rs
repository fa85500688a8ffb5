//! Tests of the build script's wasm target detection (`wasm_target.rs`), on sysroots laid out in
//! temporary folders the way rustup lays them out.
#![allow(clippy::unwrap_used, clippy::panic)]

#[path = "wasm_target.rs"]
mod wasm_target;

use std::path::Path;
use wasm_target::{Plan, TARGET, plan, std_installed, toolchain};

/// A rustup-shaped home with one toolchain; `with_wasm_std` puts a wasm32-wasip2 libstd in it.
fn sysroot(home: &Path, name: &str, with_wasm_std: bool) -> std::path::PathBuf {
    let root = home.join("toolchains").join(name);
    let host_lib = root.join("lib/rustlib/x86_64-unknown-linux-gnu/lib");
    std::fs::create_dir_all(&host_lib).unwrap();
    std::fs::write(host_lib.join("libstd-0123abcd.rlib"), b"").unwrap();
    let wasm_lib = root.join("lib/rustlib").join(TARGET).join("lib");
    std::fs::create_dir_all(&wasm_lib).unwrap();
    if with_wasm_std {
        std::fs::write(wasm_lib.join("libstd-89abcdef.rlib"), b"").unwrap();
    }
    root
}

#[test]
fn a_sysroot_with_the_wasm_std_is_ready() {
    let home = tempfile::tempdir().unwrap();
    let root = sysroot(home.path(), "1.95.0-x86_64-unknown-linux-gnu", true);
    assert!(std_installed(&root, TARGET));
    assert_eq!(
        plan(&root, Some("1.95.0-x86_64-unknown-linux-gnu"), true),
        Plan::Ready
    );
    // Ready never needs rustup.
    assert_eq!(plan(&root, None, false), Plan::Ready);
}

#[test]
fn an_empty_target_folder_is_not_a_std() {
    // rustup leaves the folder behind on some removals; only a libstd rlib counts.
    let home = tempfile::tempdir().unwrap();
    let root = sysroot(home.path(), "1.95.0-x86_64-unknown-linux-gnu", false);
    assert!(!std_installed(&root, TARGET));
    assert!(std_installed(&root, "x86_64-unknown-linux-gnu"));
}

#[test]
fn a_missing_target_is_added_to_the_toolchain_rustup_names() {
    let home = tempfile::tempdir().unwrap();
    // The pinned toolchain may be a link to another folder (here `stable`): the name rustup
    // gives the build wins over the folder's name.
    let root = sysroot(home.path(), "stable-x86_64-unknown-linux-gnu", false);
    assert_eq!(
        plan(&root, Some("1.95.0-x86_64-unknown-linux-gnu"), true),
        Plan::Add {
            toolchain: "1.95.0-x86_64-unknown-linux-gnu".into()
        }
    );
}

#[test]
fn without_rustup_toolchain_the_sysroot_folder_names_the_toolchain() {
    let home = tempfile::tempdir().unwrap();
    let root = sysroot(home.path(), "1.95.0-x86_64-unknown-linux-gnu", false);
    assert_eq!(
        toolchain(None, &root).as_deref(),
        Some("1.95.0-x86_64-unknown-linux-gnu")
    );
    assert_eq!(
        toolchain(Some("  "), &root).as_deref(),
        Some("1.95.0-x86_64-unknown-linux-gnu")
    );
    assert_eq!(
        plan(&root, None, true),
        Plan::Add {
            toolchain: "1.95.0-x86_64-unknown-linux-gnu".into()
        }
    );
}

#[test]
fn a_toolchain_rustup_does_not_manage_gets_a_clear_error() {
    // A distribution's rustc in /usr: no rustup folder, no RUSTUP_TOOLCHAIN.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("usr");
    std::fs::create_dir_all(root.join("lib/rustlib")).unwrap();
    assert_eq!(toolchain(None, &root), None);
    match plan(&root, None, true) {
        Plan::Missing { message } => {
            assert!(message.contains(TARGET), "{message}");
            assert!(message.contains("rustup target add"), "{message}");
        }
        other => panic!("expected Missing, got {other:?}"),
    }
}

#[test]
fn no_rustup_command_means_missing_even_in_a_rustup_folder() {
    let home = tempfile::tempdir().unwrap();
    let root = sysroot(home.path(), "1.95.0-x86_64-unknown-linux-gnu", false);
    assert!(matches!(
        plan(&root, Some("1.95.0-x86_64-unknown-linux-gnu"), false),
        Plan::Missing { .. }
    ));
}

#[test]
fn the_real_compiler_reports_a_sysroot_with_its_host_std() {
    // The same call the build script makes, against the compiler on this machine.
    let root = wasm_target::sysroot(Path::new("rustc")).unwrap();
    let rustlib = root.join("lib/rustlib");
    let host_has_std = std::fs::read_dir(&rustlib)
        .unwrap()
        .flatten()
        .any(|entry| std_installed(&root, &entry.file_name().to_string_lossy()));
    assert!(
        host_has_std,
        "no target with a libstd under {}",
        rustlib.display()
    );
    assert!(wasm_target::sysroot(Path::new("/nonexistent/rustc")).is_err());
}
