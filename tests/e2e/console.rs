//! The console's forms as a browser posts them (urlencoded, with the page's CSRF token):
//! create a gateway, turn caching on, set a limit of 2 a minute, see the requests in the logs
//! view; forms without the token, or posted from another site, are refused.

use crate::harness::*;
use hyper::{Method, StatusCode};

const AUTH: (&str, &str) = ("authorization", "Bearer adm1n");

fn console_gateway(mock: &Mock) -> Gateway {
    let dir = prepare_with_server(
        "admin_listen = \"127.0.0.1:0\"\nadmin_token = \"adm1n\"\n",
        &format!(
            "{}[gateways.existing]\npipeline = [\"logging\"]\n",
            mock.providers_toml()
        ),
        &[],
    );
    Gateway::start_in(dir)
}

async fn get(gw: &Gateway, path: &str) -> Reply {
    send_req(request(Method::GET, &gw.admin_url(path), &[AUTH], "")).await
}

async fn post(gw: &Gateway, path: &str, form: &[(&str, &str)], extra: &[(&str, &str)]) -> Reply {
    let body: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    let mut headers = vec![AUTH, ("content-type", "application/x-www-form-urlencoded")];
    headers.extend_from_slice(extra);
    send_req(request(Method::POST, &gw.admin_url(path), &headers, &body)).await
}

fn csrf(page: &str) -> String {
    let marker = "name=csrf value=\"";
    let start = page.find(marker).map(|i| i + marker.len()).unwrap_or(0);
    page[start..].split('"').next().unwrap_or("").to_string()
}

async fn status_and_cache(gw: &Gateway, prompt: &str) -> (u16, Option<String>) {
    let r = send(
        &gw.url("/v1/acct/tutorial/openai/chat/completions"),
        &[],
        &chat(prompt, false),
    )
    .await;
    (
        r.status.as_u16(),
        r.header("cf-aig-cache-status").map(str::to_string),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tutorial_through_the_console() {
    let mock = Mock::start().await;
    let gw = console_gateway(&mock);
    let page = get(&gw, "/console").await;
    assert_eq!(page.status, StatusCode::OK);
    let text = page.text();
    assert!(
        text.contains("/v1/ACCOUNT/existing/openai"),
        "endpoint URLs to copy: {text}"
    );
    assert!(
        !text.contains("adm1n"),
        "the admin token is never in a page"
    );
    let token = csrf(&text);
    assert_eq!(token.len(), 64, "{text}");

    // Without the token, or from another site: refused, nothing created.
    let r = post(&gw, "/console/gateways", &[("id", "tutorial")], &[]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text());
    let r = post(
        &gw,
        "/console/gateways",
        &[("id", "tutorial"), ("csrf", &token)],
        &[("origin", "http://evil.example")],
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text());
    assert!(
        !std::fs::read_to_string(gw.config_file())
            .unwrap()
            .contains("tutorial")
    );

    // 1. Create by name (for account acct).
    let r = post(
        &gw,
        "/console/gateways",
        &[("id", "tutorial"), ("account", "acct"), ("csrf", &token)],
        &[],
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text());
    assert_eq!(r.header("location"), Some("/console/gateways/tutorial"));
    let settings = get(&gw, "/console/gateways/tutorial").await.text();
    assert!(settings.contains("id=settings"), "{settings}");

    // 2. Caching on with a TTL: the second identical request is a HIT.
    let form = [
        ("csrf", token.as_str()),
        ("collect_logs", "on"),
        ("cache", "on"),
        ("cache_ttl", "120"),
        ("rate_limiting_interval", "60"),
        ("rate_limiting_technique", "fixed"),
    ];
    let r = post(&gw, "/console/gateways/tutorial", &form, &[]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text());
    assert_eq!(
        status_and_cache(&gw, "same").await,
        (200, Some("MISS".into()))
    );
    assert_eq!(
        status_and_cache(&gw, "same").await,
        (200, Some("HIT".into()))
    );

    // 3. A limit of 2 a minute: one bucket for the gateway, so the next new prompts get 429
    // after two.
    let mut limited = form.to_vec();
    limited.extend([("rate", "on"), ("rate_limiting_limit", "2")]);
    let r = post(&gw, "/console/gateways/tutorial", &limited, &[]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text());
    let statuses = [
        status_and_cache(&gw, "a").await.0,
        status_and_cache(&gw, "b").await.0,
        status_and_cache(&gw, "c").await.0,
    ];
    assert_eq!(statuses, [200, 200, 429]);

    // A bad value is shown inline, naming the field; nothing changes.
    let mut bad = form.to_vec();
    bad.retain(|(k, _)| *k != "cache_ttl");
    bad.push(("cache_ttl", "soon"));
    let r = post(&gw, "/console/gateways/tutorial", &bad, &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.text()
            .contains("class=error id=error>cache_ttl: expected a whole number"),
        "{}",
        r.text()
    );

    // The pipeline form: a filter table the filter rejects is shown inline, not applied.
    let r = post(
        &gw,
        "/console/gateways/tutorial/pipeline",
        &[
            ("csrf", &token),
            ("pipeline", "logging\nrate-limit\ncache\nprompt-redaction"),
            ("table.prompt-redaction", "mode = \"shout\"\n"),
        ],
        &[],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.text().contains("prompt-redaction"), "{}", r.text());
    assert!(r.text().contains("class=error"), "{}", r.text());
    assert!(
        !std::fs::read_to_string(gw.config_file())
            .unwrap()
            .contains("shout")
    );

    // The logs view shows those requests.
    let mut dash = String::new();
    for _ in 0..100 {
        dash = get(&gw, "/dashboard?gateway=tutorial&range=24h")
            .await
            .text();
        if dash
            .matches("<tr class=log-row><td><a href=\"/dashboard/logs/tutorial/")
            .count()
            >= 5
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        dash.matches("<tr class=log-row><td><a href=\"/dashboard/logs/tutorial/")
            .count()
            >= 5,
        "{dash}"
    );
    assert!(dash.contains("<option selected>24h</option>"), "{dash}");

    // Delete from the gateways page.
    let r = post(
        &gw,
        "/console/gateways/tutorial/delete",
        &[("csrf", &token)],
        &[],
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text());
    assert_eq!(status_and_cache(&gw, "x").await.0, 404);
}
