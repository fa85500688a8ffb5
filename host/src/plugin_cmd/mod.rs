//! `aigw plugin new` (scaffold a filter crate) and `aigw plugin build`
//! (compile it to a wasm32-wasip2 component and install it in `plugins_dir`,
//! where the running gateway's hot reload picks it up).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

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

/// The SDK package a scaffolded filter crate depends on.
const SDK_PACKAGE: &str = "aigw-plugin-sdk";

/// Where a scaffolded filter crate gets `aigw-plugin-sdk` from: the flags
/// `--sdk-version`, `--sdk-git` (with `--sdk-rev`) and `--sdk-path`, at most one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SdkSource {
    /// A version requirement on crates.io: `aigw-plugin-sdk = "VER"`.
    Version(String),
    /// A git repository holding the SDK (cargo finds the package in it), at
    /// `rev` or, without one, the repository's default branch.
    Git {
        /// Repository URL (`https://…`, `ssh://…`, `file:///…`).
        url: String,
        /// The commit (cargo's `rev`).
        rev: Option<String>,
    },
    /// The SDK crate's folder (`plugin-sdk/` in an aigw checkout).
    Path(PathBuf),
}

impl Default for SdkSource {
    /// The SDK release that goes with this aigw: the same version.
    fn default() -> Self {
        SdkSource::Version(env!("CARGO_PKG_VERSION").to_string())
    }
}

impl SdkSource {
    /// The source named by `plugin new`'s flags; none of them means the default
    /// (the SDK version equal to this aigw's).
    pub fn from_flags(
        version: Option<&str>,
        git: Option<&str>,
        rev: Option<&str>,
        path: Option<&Path>,
    ) -> Result<SdkSource, String> {
        let given: Vec<&str> = [
            version.map(|_| "--sdk-version"),
            git.map(|_| "--sdk-git"),
            path.map(|_| "--sdk-path"),
        ]
        .into_iter()
        .flatten()
        .collect();
        if given.len() > 1 {
            return Err(format!(
                "{} cannot be used together: the SDK comes from one source (--sdk-version VER, --sdk-git URL [--sdk-rev REV] or --sdk-path PATH)",
                given.join(" and ")
            ));
        }
        if rev.is_some() && git.is_none() {
            return Err(
                "--sdk-rev needs --sdk-git: it names a revision of that repository (--sdk-git URL --sdk-rev REV)"
                    .to_string(),
            );
        }
        let non_empty = |flag: &str, value: &str| {
            let value = value.trim();
            if value.is_empty() {
                Err(format!("{flag}: must not be empty"))
            } else {
                Ok(value.to_string())
            }
        };
        if let Some(v) = version {
            return non_empty("--sdk-version", v).map(SdkSource::Version);
        }
        if let Some(url) = git {
            let url = non_empty("--sdk-git", url)?;
            if !url.contains("://") {
                return Err(format!(
                    "--sdk-git {url}: not a URL that cargo accepts; use https://…, ssh://… or file:///absolute/path (for a folder on this machine, --sdk-path also works)"
                ));
            }
            let rev = rev.map(|r| non_empty("--sdk-rev", r)).transpose()?;
            return Ok(SdkSource::Git { url, rev });
        }
        if let Some(p) = path {
            return Ok(SdkSource::Path(p.to_path_buf()));
        }
        Ok(SdkSource::unflagged())
    }

    /// Without a flag: the SDK of the aigw checkout this binary runs from (an `aigw` in
    /// `CHECKOUT/target/…`), found at run time; otherwise the SDK release of this aigw's
    /// version from crates.io.
    pub fn unflagged() -> SdkSource {
        std::env::current_exe()
            .ok()
            .and_then(|exe| SdkSource::beside(&exe))
            .unwrap_or_default()
    }

    /// `DIR/plugin-sdk` for the nearest folder DIR above `exe` that holds the SDK crate.
    fn beside(exe: &Path) -> Option<SdkSource> {
        let exe = std::fs::canonicalize(exe).ok()?;
        exe.ancestors().skip(1).find_map(|dir| {
            let sdk = dir.join("plugin-sdk");
            let manifest = std::fs::read_to_string(sdk.join("Cargo.toml")).ok()?;
            manifest
                .lines()
                .any(|l| l.trim() == format!("name = \"{SDK_PACKAGE}\""))
                .then_some(SdkSource::Path(sdk))
        })
    }

    /// The value of `aigw-plugin-sdk` in the crate's `[dependencies]` and in its
    /// `[dev-dependencies]` (the same source with the `testing` feature), plus a
    /// line for people saying where it comes from. A path is checked and made
    /// absolute here.
    fn dependency(&self) -> Result<(String, String, String), String> {
        const TESTING: &str = "features = [\"testing\"]";
        match self {
            SdkSource::Version(v) => {
                let v = toml_string(v);
                Ok((
                    v.clone(),
                    format!("{{ version = {v}, {TESTING} }}"),
                    format!("{SDK_PACKAGE} {v} from crates.io"),
                ))
            }
            SdkSource::Git { url, rev } => {
                let mut fields = format!("git = {}", toml_string(url));
                if let Some(rev) = rev {
                    fields.push_str(&format!(", rev = {}", toml_string(rev)));
                }
                Ok((
                    format!("{{ {fields} }}"),
                    format!("{{ {fields}, {TESTING} }}"),
                    format!(
                        "{SDK_PACKAGE} from {url}{}",
                        rev.as_deref()
                            .map(|r| format!(" at {r}"))
                            .unwrap_or_default()
                    ),
                ))
            }
            SdkSource::Path(p) => {
                let sdk = check_sdk_dir(p)?;
                let text = toml_string(&sdk.to_string_lossy().replace('\\', "/"));
                Ok((
                    format!("{{ path = {text} }}"),
                    format!("{{ path = {text}, {TESTING} }}"),
                    format!("{SDK_PACKAGE} from {}", sdk.display()),
                ))
            }
        }
    }
}

/// `--sdk-path`: the folder must hold the SDK package's Cargo.toml. Returns it
/// made absolute, so the scaffold works wherever it is moved.
fn check_sdk_dir(dir: &Path) -> Result<PathBuf, String> {
    const HINT: &str = "pass the path of plugin-sdk/ in an aigw checkout";
    let sdk = std::fs::canonicalize(dir).map_err(|e| {
        format!(
            "--sdk-path {}: cannot find the aigw plugin SDK ({e}); {HINT}",
            dir.display()
        )
    })?;
    let manifest = sdk.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest).map_err(|_| {
        let inside = sdk.join("plugin-sdk");
        if inside.join("Cargo.toml").is_file() {
            format!(
                "--sdk-path {}: no Cargo.toml there; did you mean {}?",
                sdk.display(),
                inside.display()
            )
        } else {
            format!("--sdk-path {}: no Cargo.toml there; {HINT}", sdk.display())
        }
    })?;
    let name = toml::from_str::<toml::Table>(&text).ok().and_then(|t| {
        t.get("package")
            .and_then(|p| p.get("name"))
            .and_then(|n| n.as_str())
            .map(str::to_string)
    });
    if name.as_deref() != Some(SDK_PACKAGE) {
        let inside = sdk.join("plugin-sdk");
        let hint = if inside.join("Cargo.toml").is_file() {
            format!("did you mean {}?", inside.display())
        } else {
            HINT.to_string()
        };
        return Err(format!(
            "--sdk-path {}: {} is not the {SDK_PACKAGE} package; {hint}",
            sdk.display(),
            manifest.display()
        ));
    }
    Ok(sdk)
}

/// `text` as a TOML basic string, quotes included.
fn toml_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Writes a new filter crate `name` into `dir` (default `./name`), depending
/// on the SDK from `sdk`.
pub fn new_filter(name: &str, dir: Option<&Path>, sdk: &SdkSource) -> Result<String, String> {
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
    let (sdk_dep, sdk_dev_dep, sdk_said) = sdk.dependency()?;
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
aigw-plugin-sdk = {sdk_dep}
serde = {{ version = "1", features = ["derive"] }}
serde_json = "1"

[dev-dependencies]
aigw-plugin-sdk = {sdk_dev_dep}

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
        "created filter '{name}' in {dir}\n  sdk:     {sdk_said}\n  test:    cd {dir} && cargo test\n  install: aigw plugin build {dir} --config aigw.toml\n  use:     add \"{name}\" to a gateway's pipeline",
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
        let msg = new_filter("my-filter", Some(&dir), &SdkSource::default()).unwrap();
        assert!(msg.contains("my-filter"));
        let cargo = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
        assert!(cargo.contains("name = \"my-filter\""));
        assert!(cargo.contains("crate-type = [\"cdylib\", \"rlib\"]"));
        let lib = std::fs::read_to_string(dir.join("src/lib.rs")).unwrap();
        assert!(lib.contains("x-my-filter") && !lib.contains("{{name}}"));
        let again = new_filter("my-filter", Some(&dir), &SdkSource::default()).unwrap_err();
        assert!(again.contains("not empty"), "{again}");
        let no_sdk = new_filter(
            "x",
            Some(&tmp.path().join("g")),
            &SdkSource::Path(tmp.path().to_path_buf()),
        )
        .unwrap_err();
        assert!(no_sdk.contains("--sdk-path"), "{no_sdk}");
        assert!(
            !tmp.path().join("g").exists(),
            "a refused scaffold leaves no folder"
        );
    }

    /// The checkout's SDK crate (a test-only path: the binary bakes in none).
    fn checkout_sdk() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../plugin-sdk")
            .canonicalize()
            .unwrap()
    }

    /// Scaffolds `f` into a fresh temp dir; returns its Cargo.toml, parsed.
    fn scaffold(sdk: &SdkSource) -> (String, toml::Table) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("f");
        new_filter("f", Some(&dir), sdk).unwrap();
        let text = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
        let table: toml::Table = toml::from_str(&text).unwrap();
        (text, table)
    }

    /// `[dependencies]` and `[dev-dependencies]` entries of the SDK.
    fn sdk_entries(table: &toml::Table) -> (toml::Value, toml::Value) {
        (
            table["dependencies"]["aigw-plugin-sdk"].clone(),
            table["dev-dependencies"]["aigw-plugin-sdk"].clone(),
        )
    }

    #[test]
    fn away_from_a_checkout_the_default_is_the_sdk_version_of_this_aigw() {
        let version = env!("CARGO_PKG_VERSION");
        assert_eq!(
            SdkSource::default(),
            SdkSource::Version(version.to_string())
        );
        // This test binary runs from the checkout's target/: its SDK, by path.
        let checkout_sdk = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../plugin-sdk")
            .canonicalize()
            .unwrap();
        assert_eq!(
            SdkSource::from_flags(None, None, None, None).unwrap(),
            SdkSource::Path(checkout_sdk)
        );
        let (text, table) = scaffold(&SdkSource::default());
        assert!(
            text.contains(&format!("aigw-plugin-sdk = \"{version}\"\n")),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "aigw-plugin-sdk = {{ version = \"{version}\", features = [\"testing\"] }}\n"
            )),
            "{text}"
        );
        let (dep, dev) = sdk_entries(&table);
        assert_eq!(dep.as_str(), Some(version));
        assert_eq!(dev["version"].as_str(), Some(version));
        assert!(!text.contains("path ="), "no path baked in:\n{text}");
    }

    #[test]
    fn sdk_version_writes_a_crates_io_dependency() {
        let sdk = SdkSource::from_flags(Some("0.3.1"), None, None, None).unwrap();
        assert_eq!(sdk, SdkSource::Version("0.3.1".into()));
        let (text, table) = scaffold(&sdk);
        assert!(text.contains("aigw-plugin-sdk = \"0.3.1\"\n"), "{text}");
        assert!(
            text.contains("aigw-plugin-sdk = { version = \"0.3.1\", features = [\"testing\"] }\n"),
            "{text}"
        );
        let (_, dev) = sdk_entries(&table);
        assert_eq!(dev["features"][0].as_str(), Some("testing"));
        let empty = SdkSource::from_flags(Some(" "), None, None, None).unwrap_err();
        assert!(empty.contains("--sdk-version"), "{empty}");
    }

    #[test]
    fn sdk_git_writes_a_git_dependency_with_or_without_a_rev() {
        let url = "https://github.com/aigw/aigw";
        let sdk = SdkSource::from_flags(None, Some(url), Some("abc123"), None).unwrap();
        assert_eq!(
            sdk,
            SdkSource::Git {
                url: url.into(),
                rev: Some("abc123".into())
            }
        );
        let (text, table) = scaffold(&sdk);
        assert!(
            text.contains(
                "aigw-plugin-sdk = { git = \"https://github.com/aigw/aigw\", rev = \"abc123\" }\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("aigw-plugin-sdk = { git = \"https://github.com/aigw/aigw\", rev = \"abc123\", features = [\"testing\"] }\n"),
            "{text}"
        );
        let (dep, dev) = sdk_entries(&table);
        assert_eq!(dep["git"].as_str(), Some(url));
        assert_eq!(dev["git"].as_str(), Some(url));
        assert_eq!(dev["rev"].as_str(), Some("abc123"));

        let sdk = SdkSource::from_flags(None, Some("file:///src/aigw"), None, None).unwrap();
        let (text, _) = scaffold(&sdk);
        assert!(
            text.contains("aigw-plugin-sdk = { git = \"file:///src/aigw\" }\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "aigw-plugin-sdk = { git = \"file:///src/aigw\", features = [\"testing\"] }\n"
            ),
            "{text}"
        );

        let not_url = SdkSource::from_flags(None, Some("/src/aigw"), None, None).unwrap_err();
        assert!(not_url.contains("--sdk-git"), "{not_url}");
    }

    #[test]
    fn sdk_path_writes_the_absolute_path_of_the_sdk() {
        let sdk_dir = checkout_sdk();
        // A relative spelling is made absolute.
        let relative = Path::new(env!("CARGO_MANIFEST_DIR")).join("../host/../plugin-sdk");
        let sdk = SdkSource::from_flags(None, None, None, Some(&relative)).unwrap();
        let (text, table) = scaffold(&sdk);
        let shown = sdk_dir.to_string_lossy().replace('\\', "/");
        let (dep, dev) = sdk_entries(&table);
        assert_eq!(dep["path"].as_str(), Some(shown.as_str()), "{text}");
        assert_eq!(dev["path"].as_str(), Some(shown.as_str()), "{text}");
        assert_eq!(dev["features"][0].as_str(), Some("testing"), "{text}");
        assert!(!text.contains(".."), "{text}");

        // The checkout root instead of its plugin-sdk/ gets a pointer.
        let root = sdk_dir.parent().unwrap();
        let err = new_filter(
            "f",
            Some(&tempfile::tempdir().unwrap().path().join("f")),
            &SdkSource::Path(root.to_path_buf()),
        )
        .unwrap_err();
        assert!(
            err.contains("--sdk-path") && err.contains("did you mean"),
            "{err}"
        );
    }

    #[test]
    fn two_sdk_sources_are_an_error_naming_both_flags() {
        let p = Path::new("/x");
        for (flags, a, b) in [
            (
                SdkSource::from_flags(Some("1"), Some("https://h/r"), None, None),
                "--sdk-version",
                "--sdk-git",
            ),
            (
                SdkSource::from_flags(Some("1"), None, None, Some(p)),
                "--sdk-version",
                "--sdk-path",
            ),
            (
                SdkSource::from_flags(None, Some("https://h/r"), Some("v1"), Some(p)),
                "--sdk-git",
                "--sdk-path",
            ),
        ] {
            let err = flags.unwrap_err();
            assert!(err.contains(a) && err.contains(b), "{err}");
        }
        let all = SdkSource::from_flags(Some("1"), Some("https://h/r"), None, Some(p)).unwrap_err();
        for flag in ["--sdk-version", "--sdk-git", "--sdk-path"] {
            assert!(all.contains(flag), "{all}");
        }
        let rev_alone = SdkSource::from_flags(None, None, Some("v1"), None).unwrap_err();
        assert!(
            rev_alone.contains("--sdk-rev") && rev_alone.contains("--sdk-git"),
            "{rev_alone}"
        );
        let rev_with_path = SdkSource::from_flags(None, None, Some("v1"), Some(p)).unwrap_err();
        assert!(rev_with_path.contains("--sdk-rev"), "{rev_with_path}");
    }

    #[test]
    fn without_a_flag_a_binary_in_a_checkout_uses_that_checkouts_sdk() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().canonicalize().unwrap();
        std::fs::create_dir_all(root.join("plugin-sdk")).unwrap();
        std::fs::write(
            root.join("plugin-sdk/Cargo.toml"),
            "[package]\nname = \"aigw-plugin-sdk\"\n",
        )
        .unwrap();
        std::fs::create_dir_all(root.join("target/release")).unwrap();
        std::fs::write(root.join("target/release/aigw"), b"").unwrap();
        assert_eq!(
            SdkSource::beside(&root.join("target/release/aigw")),
            Some(SdkSource::Path(root.join("plugin-sdk")))
        );
        // An installed binary, away from any checkout: the crates.io release.
        let elsewhere = tempfile::tempdir().unwrap();
        std::fs::write(elsewhere.path().join("aigw"), b"").unwrap();
        assert_eq!(SdkSource::beside(&elsewhere.path().join("aigw")), None);
        // A folder named plugin-sdk that is not the SDK does not count.
        std::fs::write(
            root.join("plugin-sdk/Cargo.toml"),
            "[package]\nname = \"other\"\n",
        )
        .unwrap();
        assert_eq!(SdkSource::beside(&root.join("target/release/aigw")), None);
    }

    #[test]
    fn the_command_line_reaches_the_sdk_source() {
        use crate::cli::{Cli, Command, PluginCommand};
        use clap::Parser;
        let source = |args: &[&str]| -> Result<SdkSource, String> {
            let cli = Cli::try_parse_from(["aigw", "plugin", "new", "f"].iter().chain(args.iter()))
                .map_err(|e| e.to_string())?;
            match cli.command {
                Command::Plugin(PluginCommand::New { sdk, .. }) => sdk.source(),
                other => Err(format!("parsed as {other:?}")),
            }
        };
        assert_eq!(source(&[]).unwrap(), SdkSource::unflagged());
        assert_eq!(
            source(&["--sdk-version", "0.2"]).unwrap(),
            SdkSource::Version("0.2".into())
        );
        assert_eq!(
            source(&["--sdk-git", "https://h/r", "--sdk-rev", "abc"]).unwrap(),
            SdkSource::Git {
                url: "https://h/r".into(),
                rev: Some("abc".into())
            }
        );
        assert_eq!(
            source(&["--sdk-path", "/a/b"]).unwrap(),
            SdkSource::Path("/a/b".into())
        );
        // `--sdk`, the flag's old name, still works.
        assert_eq!(
            source(&["--sdk", "/a/b"]).unwrap(),
            SdkSource::Path("/a/b".into())
        );
        let both = source(&["--sdk-git", "https://h/r", "--sdk-path", "/a/b"]).unwrap_err();
        assert!(
            both.contains("--sdk-git") && both.contains("--sdk-path"),
            "{both}"
        );
    }
}
