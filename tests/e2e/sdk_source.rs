//! Where a scaffolded filter gets the SDK from, end to end, each from a folder
//! outside the checkout:
//!
//! - `aigw plugin new --sdk-git file://CHECKOUT --sdk-rev HEAD-SHA`, built with
//!   `aigw plugin build` (cargo fetches the SDK with git);
//! - `aigw plugin new --sdk-path RELATIVE-PATH`, built the same way;
//! - `cargo package -p aigw-plugin-sdk`: the package `cargo publish` would upload
//!   holds its own WIT and builds with nothing else from the repository.
//!
//! They need what the guide's tour needs (`writing_filters_guide_works_as_written`):
//! cargo, the wasm32-wasip2 target and crates.io (or a warm cargo cache). The filter
//! builds share `target/guide-filter` with the tour, so dependencies stay built between
//! runs; each command is bounded by `timeout`.

use crate::harness::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Seconds any one cargo-running command may take.
const LIMIT_S: &str = "900";

/// The repository root.
fn checkout() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .unwrap()
}

/// `program args…` under `timeout`, with none of the variables of the cargo running
/// these tests that would leak into a user's build (target dir, flags, make jobserver).
fn bounded(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new("timeout");
    cmd.arg(LIMIT_S).arg(program);
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "CARGO_MAKEFLAGS",
        "MAKEFLAGS",
        "MFLAGS",
        "CARGO_MANIFEST_DIR",
        "CARGO_PKG_NAME",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

/// Runs `cmd`; panics with its output unless it succeeds. Returns stdout.
fn run(what: &str, cmd: &mut Command) -> String {
    let out: Output = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what} failed ({}; 124 is the {LIMIT_S} s timeout):\n--- stdout\n{stdout}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// `aigw plugin build DIR --plugins-dir PLUGINS` from `cwd`, sharing the tour's
/// target dir; returns the installed component.
fn build_and_install(cwd: &Path, crate_dir: &str, name: &str) -> Vec<u8> {
    let plugins = cwd.join("plugins.d");
    let out = run(
        &format!("aigw plugin build {crate_dir}"),
        bounded(env!("CARGO_BIN_EXE_aigw"))
            .args(["plugin", "build", crate_dir, "--plugins-dir"])
            .arg(&plugins)
            .current_dir(cwd)
            .env("CARGO_TARGET_DIR", checkout().join("target/guide-filter")),
    );
    assert!(out.contains(&format!("installed filter '{name}'")), "{out}");
    let wasm = std::fs::read(plugins.join(format!("{name}.wasm"))).unwrap();
    // A component (layer 1 in bytes 6..8), not a core module.
    assert!(
        wasm.len() > 8 && wasm.starts_with(b"\0asm") && wasm[6..8] == [1, 0],
        "{name}.wasm is not a wasm component"
    );
    wasm
}

/// The gateway loads `wasm` as filter `name` and runs its `configure`.
fn assert_loads(name: &str, wasm: &[u8]) {
    let cfg = format!(
        "[gateways.gw]\npipeline = [\"{name}\"]\n[gateways.gw.filters.{name}]\nbanned_word = \"x\"\n"
    );
    let (ok, text) = check(&cfg, &[(name, wasm)]);
    assert!(ok, "aigw check refused the built filter:\n{text}");
    // The example filter's configure runs: an unknown key is its error.
    let bad = cfg.replace("banned_word", "banned_wrod");
    let (ok, text) = check(&bad, &[(name, wasm)]);
    assert!(!ok && text.contains("banned_wrod"), "{text}");
}

/// A temp dir that is not inside the checkout.
fn outside_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let real = dir.path().canonicalize().unwrap();
    assert!(
        !real.starts_with(checkout()),
        "{} is inside the checkout; set TMPDIR elsewhere",
        real.display()
    );
    dir
}

/// SDK from git: `--sdk-git file:///CHECKOUT --sdk-rev $(git rev-parse HEAD)`.
/// Cargo clones the checkout's committed HEAD (not the working tree): the filter
/// is built against the SDK as committed.
#[test]
fn sdk_from_git_builds_a_filter_outside_the_checkout() {
    let root = checkout();
    if !root.join(".git").exists() {
        eprintln!(
            "note: {} is not a git checkout; nothing to fetch the SDK from",
            root.display()
        );
        return;
    }
    let head = run(
        "git rev-parse HEAD",
        Command::new("git")
            .arg("-C")
            .arg(&root)
            .args(["rev-parse", "HEAD"]),
    )
    .trim()
    .to_string();
    assert_eq!(head.len(), 40, "{head}");
    let url = format!("file://{}", root.display());

    let work = outside_dir();
    let name = "sdk-git-filter";
    let said = run(
        "aigw plugin new --sdk-git",
        bounded(env!("CARGO_BIN_EXE_aigw"))
            .args(["plugin", "new", name, "--sdk-git", &url, "--sdk-rev", &head])
            .current_dir(work.path()),
    );
    assert!(said.contains(&format!("created filter '{name}'")), "{said}");
    let manifest = std::fs::read_to_string(work.path().join(name).join("Cargo.toml")).unwrap();
    let dep = format!("aigw-plugin-sdk = {{ git = \"{url}\", rev = \"{head}\" }}");
    let dev = format!(
        "aigw-plugin-sdk = {{ git = \"{url}\", rev = \"{head}\", features = [\"testing\"] }}"
    );
    assert!(
        manifest.contains(&dep) && manifest.contains(&dev),
        "{manifest}"
    );
    assert!(!manifest.contains("path ="), "{manifest}");

    let wasm = build_and_install(work.path(), name, name);

    // The host under test is built from the working tree: the filter built from HEAD
    // matches its WIT only when the contract and the SDK are committed as they are.
    let status = run(
        "git status",
        Command::new("git").arg("-C").arg(root).args([
            "status",
            "--porcelain",
            "--",
            "wit",
            "plugin-sdk",
        ]),
    );
    if status.trim().is_empty() {
        assert_loads(name, &wasm);
    } else {
        eprintln!(
            "note: wit/ or plugin-sdk/ differ from HEAD; the filter built from HEAD is not loaded into this build:\n{status}"
        );
    }
}

/// SDK from a folder: `--sdk-path` with a path relative to a working directory
/// outside the checkout; Cargo.toml gets it absolute.
#[test]
fn sdk_from_a_path_builds_a_filter_outside_the_checkout() {
    let root = checkout();
    let work = outside_dir();
    let cwd = work.path().canonicalize().unwrap();
    // ../../…/CHECKOUT/plugin-sdk, as typed from `cwd`.
    let ups = cwd.components().count() - 1;
    let relative =
        PathBuf::from("../".repeat(ups)).join(root.join("plugin-sdk").strip_prefix("/").unwrap());
    let name = "sdk-path-filter";
    let said = run(
        "aigw plugin new --sdk-path",
        bounded(env!("CARGO_BIN_EXE_aigw"))
            .args(["plugin", "new", name, "--sdk-path"])
            .arg(relative)
            .current_dir(&cwd),
    );
    assert!(said.contains(&format!("created filter '{name}'")), "{said}");
    let manifest = std::fs::read_to_string(cwd.join(name).join("Cargo.toml")).unwrap();
    let sdk = root.join("plugin-sdk");
    let dep = format!("aigw-plugin-sdk = {{ path = \"{}\" }}", sdk.display());
    let dev = format!(
        "aigw-plugin-sdk = {{ path = \"{}\", features = [\"testing\"] }}",
        sdk.display()
    );
    assert!(
        manifest.contains(&dep) && manifest.contains(&dev),
        "{manifest}"
    );

    let wasm = build_and_install(&cwd, name, name);
    assert_loads(name, &wasm);

    // The scaffold's own tests pass as generated, and fail once the filter implements a
    // hook that `describe` does not declare (the host would never call it).
    let crate_dir = cwd.join(name);
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let test = |what: &str| {
        bounded(&cargo)
            .arg("test")
            .current_dir(&crate_dir)
            .env("CARGO_TARGET_DIR", checkout().join("target/guide-filter"))
            .output()
            .map(|o| {
                let text = format!(
                    "{}{}",
                    String::from_utf8_lossy(&o.stdout),
                    String::from_utf8_lossy(&o.stderr)
                );
                eprintln!("cargo test ({what}): {}", o.status);
                (o.status.success(), text)
            })
            .unwrap()
    };
    let (ok, text) = test("as generated");
    assert!(ok && text.contains("runs_like_the_host"), "{text}");
    let lib = crate_dir.join("src/lib.rs");
    let source = std::fs::read_to_string(&lib).unwrap();
    let anchor = "    /// Adds a header to every response";
    assert!(source.contains(anchor), "the scaffold changed: {source}");
    std::fs::write(
        &lib,
        source.replacen(
            anchor,
            &format!(
                "    fn on_done(&mut self, _s: &aigw_plugin_sdk::Summary) {{\n        host::counter_add(\"done\", 1);\n    }}\n\n{anchor}"
            ),
            1,
        ),
    )
    .unwrap();
    let (ok, text) = test("with an undeclared on_done");
    assert!(
        !ok,
        "an undeclared hook passed the scaffold's tests:\n{text}"
    );
    assert!(
        text.contains("implements on_done but describe() does not declare it"),
        "{text}"
    );
}

/// The SDK as `cargo publish` would upload it: the package lists its own WIT and
/// README and no test or repository file, and `cargo package` builds it unpacked,
/// away from the repository (a `../wit` would fail here).
#[test]
fn sdk_packages_on_its_own() {
    let root = checkout();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let listed = run(
        "cargo package --list -p aigw-plugin-sdk",
        bounded(&cargo)
            .args([
                "package",
                "--list",
                "--allow-dirty",
                "-p",
                "aigw-plugin-sdk",
            ])
            .current_dir(&root),
    );
    let files: Vec<&str> = listed.lines().map(str::trim).collect();
    for wanted in [
        "Cargo.toml",
        "README.md",
        "src/lib.rs",
        "src/bindings.rs",
        "wit/filter.wit",
        "wit/deps/filter-0.1.0/filter.wit",
    ] {
        assert!(
            files.contains(&wanted),
            "{wanted} is not packaged:\n{listed}"
        );
    }
    assert!(
        files
            .iter()
            .all(|f| !f.starts_with("tests/") && !f.starts_with("..")),
        "packaged files beyond the SDK's:\n{listed}"
    );
    run(
        "cargo package -p aigw-plugin-sdk",
        bounded(cargo)
            .args([
                "package",
                "--allow-dirty",
                "-p",
                "aigw-plugin-sdk",
                "--target-dir",
            ])
            .arg(root.join("target/sdk-package"))
            .current_dir(root),
    );
}

/// The SDK and contract of commit df2eb8a, before filters could declare `on_error` or
/// report panics: a filter built against it still loads into this host (the contract only
/// gained imports), gets the host's default `on_error` (open), and its panic still shows
/// as a trap.
#[test]
fn a_filter_built_with_the_previous_sdk_still_loads() {
    const PREVIOUS: &str = "df2eb8ab7c29ed085117fcadeb972779da58ed30";
    let root = checkout();
    let rev = Command::new("git")
        .arg("-C")
        .arg(&root)
        .args([
            "rev-parse",
            "--verify",
            "--quiet",
            &format!("{PREVIOUS}^{{commit}}"),
        ])
        .output();
    let Some(rev) = rev
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    else {
        eprintln!("note: skipped: commit {PREVIOUS} is not in this checkout's history");
        return;
    };
    let url = format!("file://{}", root.display());
    let work = outside_dir();
    let name = "previous-sdk-filter";
    run(
        "aigw plugin new --sdk-git (previous SDK)",
        bounded(env!("CARGO_BIN_EXE_aigw"))
            .args(["plugin", "new", name, "--sdk-git", &url, "--sdk-rev", &rev])
            .current_dir(work.path()),
    );
    // Written against the previous SDK's API: panics when asked to.
    std::fs::write(
        work.path().join(name).join("src/lib.rs"),
        r#"use aigw_plugin_sdk::{Decision, Filter, FilterInfo, Hooks, Request};
pub struct Old;
impl Filter for Old {
    fn describe() -> FilterInfo {
        FilterInfo::hooks(Hooks { request_headers: true, ..Hooks::default() })
    }
    fn configure(_: serde_json::Value) -> Result<Self, String> {
        Ok(Old)
    }
    fn on_request_headers(&mut self, r: &Request) -> Decision {
        if r.headers.get("x-boom").is_some() {
            panic!("old filter asked to fail");
        }
        Decision::proceed()
    }
}
aigw_plugin_sdk::export_filter!(Old);
"#,
    )
    .unwrap();
    let wasm = build_and_install(work.path(), name, name);

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mock = Mock::start().await;
        let dir = prepare_with_server(
            "admin_listen = \"127.0.0.1:0\"\n",
            &format!(
                "{}[gateways.gw]\npipeline = [\"{name}\"]\n",
                mock.providers_toml()
            ),
            &[(name, &wasm)],
        );
        let gw = Gateway::start_in(dir);
        let url = gw.url("/v1/acct/gw/openai/chat/completions");
        let r = send(&url, &[], &chat("x", false)).await;
        assert_eq!(r.status.as_u16(), 200, "{}", r.text());
        // No declaration: the host's default, open, lets the request through.
        let r = send(&url, &[("x-boom", "1")], &chat("x", false)).await;
        assert_eq!(r.status.as_u16(), 200, "{}", r.text());
        let status = send_req(request(
            hyper::Method::GET,
            &gw.admin_url("/api/plugins"),
            &[],
            "",
        ))
        .await
        .json();
        let p = status["plugins"]
            .as_array()
            .and_then(|p| p.iter().find(|p| p["name"] == name))
            .cloned()
            .unwrap_or_default();
        assert!(p["declared_on_error"].is_null(), "{p}");
        assert_eq!(p["stages"][0]["on_error"], "open", "{p}");
        let last = p["stages"][0]["health"]["last_error"]["message"]
            .as_str()
            .unwrap_or("");
        assert!(last.contains("unreachable"), "{p}");
    });
}
