//! Builds the built-in filters (and the test filter) for wasm32-wasip2 so the
//! binary can embed them: a fresh clone needs no manual step, not even the wasm32-wasip2 target
//! (`wasm_target.rs` adds it with rustup when the toolchain lacks it). Uses a separate
//! target dir under OUT_DIR so it never waits on the outer build's lock.

#![allow(
    clippy::print_stdout,
    reason = "cargo reads a build script's instructions from its standard output"
)]

use std::path::PathBuf;
use std::process::Command;

mod wasm_target;

/// (filter name, crate name) of the built-in filters, embedded in the binary.
const BUILTINS: &[(&str, &str)] = &[
    ("cache", "aigw-filter-cache"),
    ("rate-limit", "aigw-filter-rate-limit"),
    ("retry", "aigw-filter-retry"),
    ("logging", "aigw-filter-logging"),
    ("provider-routing", "aigw-filter-provider-routing"),
    ("prompt-redaction", "aigw-filter-prompt-redaction"),
    ("key-policy", "aigw-filter-key-policy"),
    ("spend-limit", "aigw-filter-spend-limit"),
    ("guardrails", "aigw-filter-guardrails"),
];

/// Filters built only for the end-to-end tests.
const TEST_FILTERS: &[&str] = &["aigw-test-filter", "aigw-stateless-filter"];

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default());
    let root = manifest.parent().map(PathBuf::from).unwrap_or_default();
    for dir in ["plugin-sdk", "plugins", "wit", "tests/filters"] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }
    println!(
        "cargo:rerun-if-changed={}",
        root.join("Cargo.lock").display()
    );
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap_or_default());
    let target_dir = out.join("wasm");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    ensure_wasm_target();

    let mut cmd = Command::new(cargo);
    cmd.current_dir(&root)
        .args(["build", "--profile", "wasm", "--target", "wasm32-wasip2"])
        .arg("--target-dir")
        .arg(&target_dir);
    for (_, krate) in BUILTINS {
        cmd.args(["-p", krate]);
    }
    for krate in TEST_FILTERS {
        cmd.args(["-p", krate]);
    }
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTC_WRAPPER",
        "CARGO_BUILD_TARGET",
        "CARGO_MAKEFLAGS",
        "MAKEFLAGS",
        "MFLAGS",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd.status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => fail(&format!(
            "building the built-in filters for wasm32-wasip2 failed ({s}); if the target is missing run `rustup target add wasm32-wasip2`"
        )),
        Err(e) => fail(&format!(
            "cannot run cargo to build the built-in filters: {e}"
        )),
    }

    let wasm_dir = target_dir.join("wasm32-wasip2").join("wasm");
    let mut table = String::from(
        "/// (name, wasm bytes) of each built-in filter.\npub static BUILTINS: &[(&str, &[u8])] = &[\n",
    );
    for (name, krate) in BUILTINS {
        let file = wasm_dir.join(format!("{}.wasm", krate.replace('-', "_")));
        if !file.exists() {
            fail(&format!(
                "expected {} after building {krate}",
                file.display()
            ));
        }
        table.push_str(&format!(
            "    ({name:?}, include_bytes!({:?})),\n",
            file.display().to_string()
        ));
    }
    table.push_str("];\n");
    if let Err(e) = std::fs::write(out.join("builtins.rs"), table) {
        fail(&format!("cannot write builtins.rs: {e}"));
    }
    for krate in TEST_FILTERS {
        let file = wasm_dir.join(format!("{}.wasm", krate.replace('-', "_")));
        let var = format!("AIGW_WASM_{}", krate.replace('-', "_").to_uppercase());
        println!("cargo:rustc-env={var}={}", file.display());
    }
}

/// Adds the wasm32-wasip2 standard library with rustup when the active toolchain lacks it, so
/// the README's first command works on a machine that had the pinned toolchain but not its target.
fn ensure_wasm_target() {
    let rustc = PathBuf::from(std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into()));
    let sysroot = match wasm_target::sysroot(&rustc) {
        Ok(s) => s,
        Err(e) => fail(&e),
    };
    let have_rustup = Command::new("rustup")
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let rustup_toolchain = std::env::var("RUSTUP_TOOLCHAIN").ok();
    match wasm_target::plan(&sysroot, rustup_toolchain.as_deref(), have_rustup) {
        wasm_target::Plan::Ready => {}
        wasm_target::Plan::Missing { message } => fail(&message),
        wasm_target::Plan::Add { toolchain } => {
            let target = wasm_target::TARGET;
            println!(
                "cargo:warning=adding the {target} target to toolchain {toolchain} (rustup target add, about 20 MB, once) to build the built-in filters"
            );
            let status = Command::new("rustup")
                .args(["target", "add", target, "--toolchain", &toolchain])
                .status();
            match status {
                Ok(s) if s.success() => {}
                Ok(s) => fail(&format!(
                    "`rustup target add {target} --toolchain {toolchain}` failed ({s}); run it by hand and build again"
                )),
                Err(e) => fail(&format!("cannot run rustup: {e}")),
            }
        }
    }
}

fn fail(message: &str) -> ! {
    eprintln!("error: {message}");
    std::process::exit(1)
}
