//! The dashboard in headless Chromium after real traffic: the numbers shown
//! match the analytics API, a log row opens its detail view, and a screenshot
//! is kept in `target/dashboard.png`. Needs Debian's `chromium` (installed by
//! `scripts/test-deps.sh`); without it the runner (`main.rs`) reports the test
//! as ignored, or failed when `AIGW_REQUIRE_CHROMIUM` is set.

use crate::harness::*;
use hyper::Method;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// Debian's Chromium, if installed.
pub fn chromium() -> Option<PathBuf> {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

fn headless(browser: &PathBuf, profile: &std::path::Path, args: &[&str]) -> String {
    let out = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn tile(dom: &str, id: &str) -> String {
    let marker = format!("id=\"{id}\">");
    let start = dom
        .find(&marker)
        .map(|i| i + marker.len())
        .unwrap_or_else(|| panic!("no tile {id} in the page"));
    dom[start..]
        .split('<')
        .next()
        .unwrap_or("")
        .trim()
        .to_string()
}

pub async fn the_dashboard_shows_what_the_api_reports() {
    let browser = chromium().expect("the runner checked for chromium");
    let mock = Mock::start().await;
    let dir = prepare_with_server(
        "admin_listen = \"127.0.0.1:0\"\n",
        &format!(
            "{}[gateways.gw]\npipeline = [\"logging\", \"cache\"]\n",
            mock.providers_toml()
        ),
        &[],
    );
    let gw = Gateway::start_in(dir);
    let url = gw.url("/v1/acct/gw/openai/chat/completions");
    send(&url, &[], &chat("dash one", false)).await;
    send(&url, &[], &chat("dash one", false)).await;
    send(&url, &[], &chat("dash two", false)).await;
    send(
        &url,
        &[("x-mock-status", "500")],
        &chat("dash three", false),
    )
    .await;
    let mut totals = serde_json::Value::Null;
    for _ in 0..60 {
        let report = send_req(request(
            Method::GET,
            &gw.admin_url("/api/gateways/gw/analytics"),
            &[],
            "",
        ))
        .await
        .json();
        totals = report["totals"].clone();
        if totals["requests"] == 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(totals["requests"], 4);

    let profile = tempfile::tempdir().unwrap();
    let dashboard = gw.admin_url("/dashboard?gateway=gw");
    let (b, p, d) = (
        browser.clone(),
        profile.path().to_path_buf(),
        dashboard.clone(),
    );
    let dom = tokio::task::spawn_blocking(move || headless(&b, &p, &["--dump-dom", &d]))
        .await
        .unwrap();
    assert!(dom.contains("<svg"), "no charts rendered");
    assert_eq!(tile(&dom, "requests"), totals["requests"].to_string());
    assert_eq!(tile(&dom, "errors"), totals["errors"].to_string());
    assert_eq!(tile(&dom, "tokens-in"), totals["tokens_in"].to_string());
    assert_eq!(tile(&dom, "tokens-out"), totals["tokens_out"].to_string());
    assert_eq!(
        tile(&dom, "cache-hit-rate"),
        format!("{:.1}%", 100.0 * totals["cache_hit_rate"].as_f64().unwrap())
    );
    assert_eq!(
        tile(&dom, "latency-p99"),
        totals["latency_ms"]["p99"].to_string()
    );
    assert_eq!(dom.matches("class=\"log-row\"").count(), 4);
    assert!(dom.contains("gpt-4o-mini"));

    // The logs table takes the same filters as the API.
    let failed_url = gw.admin_url("/dashboard?gateway=gw&success=false");
    let (b, p) = (browser.clone(), profile.path().to_path_buf());
    let failed =
        tokio::task::spawn_blocking(move || headless(&b, &p, &["--dump-dom", &failed_url]))
            .await
            .unwrap();
    assert_eq!(failed.matches("class=\"log-row\"").count(), 1);
    assert!(failed.contains("id=\"log-filters\""));

    // A log row opens its detail view.
    let href_start = dom.find("href=\"/dashboard/logs/").unwrap() + "href=\"".len();
    let href = dom[href_start..].split('"').next().unwrap().to_string();
    let id = href.rsplit('/').next().unwrap().to_string();
    let detail_url = gw.admin_url(&href);
    let (b, p) = (browser.clone(), profile.path().to_path_buf());
    let detail =
        tokio::task::spawn_blocking(move || headless(&b, &p, &["--dump-dom", &detail_url]))
            .await
            .unwrap();
    assert!(detail.contains(&format!("id=\"log-id\">{id}<")), "{detail}");
    assert!(detail.contains("request_body"));

    // Keep a screenshot as an artifact.
    let shot = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/dashboard.png");
    let (b, p, s) = (browser, profile.path().to_path_buf(), shot.clone());
    tokio::task::spawn_blocking(move || {
        headless(
            &b,
            &p,
            &[
                &format!("--screenshot={}", s.display()),
                "--window-size=1280,1700",
                &dashboard,
            ],
        )
    })
    .await
    .unwrap();
    let size = std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0);
    assert!(size > 10_000, "screenshot missing or empty ({size} bytes)");
}

/// Cloudflare's tutorial through the console in headless Chromium, driven over the DevTools
/// protocol (tests/sdk/console_browser.py): create a gateway on the gateways page, turn
/// caching on (the second identical request is a HIT), set a limit of 2 a minute (the third
/// request is a 429), and see the requests in the logs view.
pub async fn the_tutorial_through_the_console_in_a_browser() {
    let browser = chromium().expect("the runner checked for chromium");
    let python = crate::python_sdk::python().expect("the runner checked for Python");
    let mock = Mock::start().await;
    let dir = prepare_with_server(
        "admin_listen = \"127.0.0.1:0\"\n",
        &format!(
            "{}[gateways.existing]\npipeline = [\"logging\"]\n",
            mock.providers_toml()
        ),
        &[],
    );
    let gw = Gateway::start_in(dir);
    let admin = gw.admin_url("");
    let prefix = gw.url("/v1/acct");
    let profile = tempfile::tempdir().unwrap();
    let profile_dir = profile.path().to_path_buf();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/sdk/console_browser.py");
    let out = tokio::task::spawn_blocking(move || {
        Command::new("timeout")
            .arg("300")
            .arg(python)
            .arg(script)
            .arg(browser)
            .args([admin.as_str(), prefix.as_str()])
            .arg(profile_dir)
            .output()
    })
    .await
    .unwrap()
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "console browser script failed:\n{stdout}\n{}\n--- gateway log\n{}",
        String::from_utf8_lossy(&out.stderr),
        gw.logs()
    );
    let v: serde_json::Value =
        serde_json::from_str(stdout.trim().lines().last().unwrap_or("")).unwrap();
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["limited"], serde_json::json!([200, 200, 429]), "{v}");
    let file = std::fs::read_to_string(gw.config_file()).unwrap();
    assert!(file.contains("[gateways.tutorial.filters.cache]"), "{file}");
}
