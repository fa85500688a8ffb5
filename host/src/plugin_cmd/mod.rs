//! `aigw plugin new` (scaffold a filter crate) and `aigw plugin build`
//! (compile it to a wasm32-wasip2 component and install it in `plugins_dir`,
//! where the running gateway's hot reload picks it up).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The SDK crate this binary was built with (a source checkout).
const SDK_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../plugin-sdk");

const LIB_RS: &str = include_str!("template_lib.rs.txt");

/// A filter name: what goes into a pipeline and the `.wasm` file name.
fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "'{name}' is not a valid filter name: use lower-case letters, digits, '-' and '_', starting with a letter"
        ))
    }
}

/// Writes a new filter crate `name` into `dir` (default `./name`).
pub fn new_filter(name: &str, dir: Option<&Path>, sdk: Option<&Path>) -> Result<String, String> {
    check_name(name)?;
    let dir = dir
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from(name));
    if dir.exists()
        && std::fs::read_dir(&dir)
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
    {
        return Err(format!(
            "{}: already exists and is not empty; pick another name or --dir",
            dir.display()
        ));
    }
    let sdk = match sdk {
        Some(p) => p.to_path_buf(),
        None => PathBuf::from(SDK_DIR),
    };
    let sdk = std::fs::canonicalize(&sdk).map_err(|e| {
        format!(
            "--sdk {}: cannot find the aigw plugin SDK ({e}); pass the path of plugin-sdk/ in an aigw checkout",
            sdk.display()
        )
    })?;
    if !sdk.join("Cargo.toml").is_file() {
        return Err(format!(
            "--sdk {}: no Cargo.toml there; pass the path of plugin-sdk/ in an aigw checkout",
            sdk.display()
        ));
    }
    let sdk_text = sdk.to_string_lossy().replace('\\', "/");
    let cargo_toml = format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
publish = false

[lib]
# cdylib: the wasm component; rlib: native unit tests with `cargo test`.
crate-type = ["cdylib", "rlib"]

[dependencies]
aigw-plugin-sdk = {{ path = "{sdk_text}" }}
serde = {{ version = "1", features = ["derive"] }}
serde_json = "1"

[dev-dependencies]
aigw-plugin-sdk = {{ path = "{sdk_text}", features = ["testing"] }}

# Small, fast-loading components.
[profile.release]
opt-level = "s"
lto = true
strip = true
codegen-units = 1
panic = "abort"

# A crate of its own, even inside another workspace's folder.
[workspace]
"#
    );
    let toolchain = "[toolchain]\nchannel = \"1.95.0\"\ntargets = [\"wasm32-wasip2\"]\n";
    let files: [(&str, String); 4] = [
        ("Cargo.toml", cargo_toml),
        ("rust-toolchain.toml", toolchain.to_string()),
        (".gitignore", "/target\n".to_string()),
        ("src/lib.rs", LIB_RS.replace("{{name}}", name)),
    ];
    std::fs::create_dir_all(dir.join("src"))
        .map_err(|e| format!("{}: cannot create: {e}", dir.display()))?;
    for (file, text) in files {
        let path = dir.join(file);
        std::fs::write(&path, text)
            .map_err(|e| format!("{}: cannot write: {e}", path.display()))?;
    }
    Ok(format!(
        "created filter '{name}' in {dir}\n  test:    cd {dir} && cargo test\n  install: aigw plugin build {dir} --config aigw.toml\n  use:     add \"{name}\" to a gateway's pipeline",
        dir = dir.display()
    ))
}

/// Where `plugin build` installs: `--plugins-dir`, or the config's `plugins_dir`.
pub fn plugins_dir(config: &Path, explicit: Option<&Path>) -> Result<PathBuf, String> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    crate::config::Config::load(config)
        .map(|c| c.plugins_dir)
        .map_err(|e| format!("{e} (or pass --plugins-dir)"))
}

/// Builds the filter crate at `path` for wasm32-wasip2 (release) and copies
/// each component it produces into `plugins_dir`, atomically.
pub fn build(path: &Path, plugins_dir: &Path) -> Result<String, String> {
    let manifest = if path.is_file() {
        path.to_path_buf()
    } else {
        path.join("Cargo.toml")
    };
    if !manifest.is_file() {
        return Err(format!(
            "{}: no Cargo.toml; pass the filter crate's folder (made by `aigw plugin new`)",
            path.display()
        ));
    }
    let manifest =
        std::fs::canonicalize(&manifest).map_err(|e| format!("{}: {e}", manifest.display()))?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--release", "--target", "wasm32-wasip2"])
        .arg("--manifest-path")
        .arg(&manifest)
        .arg("--message-format=json-render-diagnostics")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    // From the crate's folder, so its rust-toolchain.toml applies.
    if let Some(dir) = manifest.parent() {
        cmd.current_dir(dir);
    }
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run cargo (is Rust installed?): {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "cargo build failed for {} (see the compiler output above); a missing target is added with `rustup target add wasm32-wasip2`",
            manifest.display()
        ));
    }
    let mut built = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if msg["reason"] != "compiler-artifact"
            || !msg["target"]["crate_types"]
                .as_array()
                .is_some_and(|t| t.iter().any(|k| k == "cdylib"))
        {
            continue;
        }
        let name = msg["target"]["name"].as_str().unwrap_or("").to_string();
        for f in msg["filenames"].as_array().into_iter().flatten() {
            if let Some(f) = f.as_str().filter(|f| f.ends_with(".wasm")) {
                built.push((name.replace('_', "-"), PathBuf::from(f)));
            }
        }
    }
    if built.is_empty() {
        return Err(format!(
            "{}: cargo built no wasm component; the crate needs `crate-type = [\"cdylib\", ...]` under [lib]",
            manifest.display()
        ));
    }
    std::fs::create_dir_all(plugins_dir)
        .map_err(|e| format!("{}: cannot create: {e}", plugins_dir.display()))?;
    let mut report = Vec::new();
    for (name, file) in built {
        let bytes =
            std::fs::read(&file).map_err(|e| format!("{}: cannot read: {e}", file.display()))?;
        let dest = plugins_dir.join(format!("{name}.wasm"));
        // Write beside, then rename: the hot reloader never sees half a file.
        let tmp = plugins_dir.join(format!(".{name}.wasm.tmp"));
        std::fs::write(&tmp, &bytes)
            .map_err(|e| format!("{}: cannot write: {e}", tmp.display()))?;
        std::fs::rename(&tmp, &dest)
            .map_err(|e| format!("{}: cannot install: {e}", dest.display()))?;
        report.push(format!(
            "installed filter '{name}' ({} KiB) at {}",
            bytes.len().div_ceil(1024),
            dest.display()
        ));
    }
    Ok(report.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(check_name("redact-names").is_ok());
        assert!(check_name("a_1").is_ok());
        for bad in ["", "Upper", "1abc", "a b", "../x", "a.wasm"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn scaffold_refuses_a_non_empty_dir_and_writes_a_crate() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("f");
        let msg = new_filter("my-filter", Some(&dir), None).unwrap();
        assert!(msg.contains("my-filter"));
        let cargo = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
        assert!(cargo.contains("name = \"my-filter\""));
        assert!(cargo.contains("crate-type = [\"cdylib\", \"rlib\"]"));
        let lib = std::fs::read_to_string(dir.join("src/lib.rs")).unwrap();
        assert!(lib.contains("x-my-filter") && !lib.contains("{{name}}"));
        let again = new_filter("my-filter", Some(&dir), None).unwrap_err();
        assert!(again.contains("not empty"), "{again}");
        let no_sdk = new_filter("x", Some(&tmp.path().join("g")), Some(tmp.path())).unwrap_err();
        assert!(no_sdk.contains("--sdk"), "{no_sdk}");
    }
}
