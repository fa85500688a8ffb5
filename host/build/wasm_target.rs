//! Decides whether the build can compile the built-in filters for `wasm32-wasip2` as things are,
//! or must first add the target's standard library with rustup. Pure functions over paths and
//! environment values so that `wasm_target_test.rs` (beside this file) can check each case
//! without rustup.
//!
//! `rust-toolchain.toml` names the target, but rustup only installs listed targets when it
//! installs the toolchain itself: a machine that already had the pinned toolchain lacks it, and a
//! fresh clone's first `cargo run` would fail after minutes of compiling with "can't find crate
//! for std".

use std::path::{Path, PathBuf};

/// The target the filters are built for.
pub const TARGET: &str = "wasm32-wasip2";

/// What the build script must do before it builds the filters.
#[derive(Debug, PartialEq, Eq)]
pub enum Plan {
    /// The target's standard library is in the sysroot: build.
    Ready,
    /// Run `rustup target add TARGET --toolchain <toolchain>`, then build.
    Add { toolchain: String },
    /// The target is missing and rustup cannot add it (no rustup, or a toolchain rustup does
    /// not manage); the message says what to do.
    Missing { message: String },
}

/// Whether `sysroot` holds a standard library for `target` (`lib/rustlib/<target>/lib/libstd-*`).
pub fn std_installed(sysroot: &Path, target: &str) -> bool {
    let lib = sysroot.join("lib").join("rustlib").join(target).join("lib");
    let Ok(entries) = std::fs::read_dir(lib) else {
        return false;
    };
    entries.flatten().any(|entry| {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        name.starts_with("libstd-") && name.ends_with(".rlib")
    })
}

/// The toolchain rustup should add the target to: the one rustup itself says is running this
/// build (`RUSTUP_TOOLCHAIN`, set by its proxies), else the sysroot's folder name when the
/// sysroot lies in rustup's `toolchains/` folder. `None` when rustup does not manage it.
pub fn toolchain(rustup_toolchain: Option<&str>, sysroot: &Path) -> Option<String> {
    if let Some(name) = rustup_toolchain.map(str::trim).filter(|n| !n.is_empty()) {
        return Some(name.to_string());
    }
    let parent = sysroot.parent()?;
    if parent.file_name()? != "toolchains" {
        return None;
    }
    Some(sysroot.file_name()?.to_string_lossy().into_owned())
}

/// What to do, given the sysroot, `RUSTUP_TOOLCHAIN` and whether a `rustup` command exists.
pub fn plan(sysroot: &Path, rustup_toolchain: Option<&str>, have_rustup: bool) -> Plan {
    if std_installed(sysroot, TARGET) {
        return Plan::Ready;
    }
    match toolchain(rustup_toolchain, sysroot) {
        Some(toolchain) if have_rustup => Plan::Add { toolchain },
        _ => Plan::Missing {
            message: format!(
                "the {TARGET} standard library is not in {} and rustup is not there to add it: \
                 install the {TARGET} target for this toolchain (with rustup: `rustup target add {TARGET}`)",
                sysroot.display()
            ),
        },
    }
}

/// The sysroot of the compiler at `rustc` (`rustc --print sysroot`).
pub fn sysroot(rustc: &Path) -> Result<PathBuf, String> {
    let out = std::process::Command::new(rustc)
        .args(["--print", "sysroot"])
        .output()
        .map_err(|e| format!("cannot run {} --print sysroot: {e}", rustc.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{} --print sysroot failed ({})",
            rustc.display(),
            out.status
        ));
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}
