//! A filter written in Python (tests/filters/python-filter), built to a component with
//! componentize-py. The runner (`main.rs`) skips it when componentize-py is not installed.

use crate::harness::*;
use hyper::StatusCode;

/// `componentize-py` from `AIGW_COMPONENTIZE_PY`, the repo's `.venv`, or PATH.
pub fn componentize_py() -> Option<std::path::PathBuf> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let candidates = [
        std::env::var_os("AIGW_COMPONENTIZE_PY").map(std::path::PathBuf::from),
        Some(root.join(".venv/bin/componentize-py")),
    ];
    for c in candidates.into_iter().flatten() {
        if c.is_file() {
            return Some(c);
        }
    }
    std::process::Command::new("componentize-py")
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|_| "componentize-py".into())
}

/// A filter written in Python (tests/filters/python-filter/app.py), built to a
/// component with componentize-py, loads and runs like a Rust one.
pub async fn a_filter_written_in_python_runs_in_the_pipeline() {
    let tool = componentize_py().expect("the runner checked for componentize-py");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = tempfile::tempdir().unwrap();
    let wasm = out.path().join("python-filter.wasm");
    let bin_dir = tool
        .parent()
        .map(|p| p.to_path_buf())
        .filter(|p| !p.as_os_str().is_empty());
    let path = match bin_dir {
        Some(d) => format!(
            "{}:{}",
            d.display(),
            std::env::var("PATH").unwrap_or_default()
        ),
        None => std::env::var("PATH").unwrap_or_default(),
    };
    let built = std::process::Command::new("bash")
        .arg(root.join("tests/filters/python-filter/build.sh"))
        .arg(&wasm)
        .env("PATH", path)
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "build.sh failed: {}",
        String::from_utf8_lossy(&built.stderr)
    );
    let bytes = std::fs::read(&wasm).unwrap();

    let mock = Mock::start().await;
    let cfg = format!(
        "{}[gateways.gw]\npipeline = [\"python-filter\"]\n[gateways.gw.filters.python-filter]\ntag = \"blue\"\n",
        mock.providers_toml()
    );
    let gw = Gateway::start(&cfg, &[("python-filter", &bytes)]);
    let url = gw.url("/v1/acct/gw/openai/chat/completions");
    let r = send(&url, &[], &chat("hello from python", false)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(
        r.header("x-python-filter"),
        Some("seen"),
        "response hook ran"
    );
    let seen = mock.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0]["headers"]["x-python-filter"], "blue",
        "request hook edited the upstream headers with the configured tag"
    );
    let blocked = send(&url, &[("x-block-me", "1")], &chat("no", false)).await;
    assert_eq!(blocked.status, StatusCode::FORBIDDEN);
    assert_eq!(
        blocked.json()["error"]["message"],
        "blocked by python filter"
    );
    assert_eq!(
        mock.requests().len(),
        1,
        "a blocked request never reaches the provider"
    );
    let metrics = send_req(request(hyper::Method::GET, &gw.url("/metrics"), &[], ""))
        .await
        .text();
    assert!(
        metrics.contains(
            "aigw_filter_counter_total{filter=\"python-filter\",name=\"python_calls\"} 2"
        ),
        "{metrics}"
    );
    // The filter validates its table like any other: a wrong type is refused by `aigw check`.
    let (ok, text) = check(
        &format!(
            "{}[gateways.gw]\npipeline = [\"python-filter\"]\n[gateways.gw.filters.python-filter]\ntag = 5\n",
            mock.providers_toml()
        ),
        &[("python-filter", &bytes)],
    );
    assert!(!ok);
    assert!(text.contains("tag"), "{text}");
}
