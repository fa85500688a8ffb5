use super::*;
use aigw_plugin_sdk::testing::MockHost;
use aigw_plugin_sdk::{Headers, Response};
use serde_json::json;

fn req(id: &str, headers: &[(&str, &str)]) -> Request {
    Request {
        request_id: id.into(),
        provider: "openai".into(),
        client_ip: "10.0.0.1".into(),
        headers: Headers::from_pairs(headers.iter().copied()),
        ..Request::default()
    }
}

fn run(f: &mut ProviderRouting, r: &Request, model: &str) {
    f.on_request_headers(r);
    f.on_request_body(
        json!({ "model": model, "messages": [] })
            .to_string()
            .as_bytes(),
    );
}

fn routes() -> Vec<(String, Option<String>)> {
    MockHost::with(|m| m.routes.clone())
}

#[test]
fn model_glob_picks_the_first_matching_rule() {
    MockHost::reset();
    let mut f = ProviderRouting::configure(json!({"rules": [
        {"model": "gpt-4o*", "targets": [{"provider": "groq", "model": "llama"}]},
        {"model": "*", "targets": [{"provider": "mistral"}]},
    ]}))
    .unwrap();
    run(&mut f, &req("a", &[]), "gpt-4o-mini");
    assert_eq!(routes(), vec![("groq".into(), Some("llama".into()))]);
    let mut f = ProviderRouting::configure(json!({"rules": [
        {"model": "gpt-4o*", "targets": [{"provider": "groq"}]},
        {"model": "*", "targets": [{"provider": "mistral"}]},
    ]}))
    .unwrap();
    run(&mut f, &req("b", &[]), "claude-3");
    assert_eq!(routes()[1], ("mistral".into(), None));
    let annotations = MockHost::with(|m| m.annotations.clone());
    assert_eq!(annotations[0].0, "route");
    assert!(
        annotations[0].1.contains("rules[1] -> mistral"),
        "{annotations:?}"
    );
}

#[test]
fn no_rule_matches_means_no_route() {
    MockHost::reset();
    let mut f = ProviderRouting::configure(json!({"rules": [
        {"model": "gpt-4o", "targets": [{"provider": "groq"}]},
    ]}))
    .unwrap();
    run(&mut f, &req("a", &[]), "gpt-4o-mini");
    assert!(routes().is_empty());
    assert_eq!(
        f.on_response_headers(&Response {
            status: 503,
            ..Response::default()
        }),
        ResponseDecision::proceed(),
        "no matched rule, no fallback"
    );
}

#[test]
fn header_rule_with_value_glob() {
    MockHost::reset();
    let cfg = json!({"rules": [
        {"header": "X-Team", "value": "research*", "targets": [{"provider": "anthropic-compatible"}]},
    ]});
    let mut f = ProviderRouting::configure(cfg.clone()).unwrap();
    run(&mut f, &req("a", &[("x-team", "research-ml")]), "m");
    let mut f = ProviderRouting::configure(cfg.clone()).unwrap();
    run(&mut f, &req("b", &[("x-team", "sales")]), "m");
    let mut f = ProviderRouting::configure(cfg).unwrap();
    run(&mut f, &req("c", &[]), "m");
    assert_eq!(routes().len(), 1, "only the research team is routed");
}

#[test]
fn weighted_split_is_deterministic_per_sticky_key_and_near_the_weights() {
    MockHost::reset();
    let cfg = json!({"rules": [{
        "targets": [{"provider": "a", "weight": 80}, {"provider": "b", "weight": 20}],
        "sticky": "header:x-user",
    }]});
    let mut to_b = 0;
    for u in 0..1000 {
        let user = format!("user-{u}");
        let mut picks = Vec::new();
        for attempt in 0..3 {
            MockHost::reset();
            let mut f = ProviderRouting::configure(cfg.clone()).unwrap();
            run(
                &mut f,
                &req(&format!("{u}-{attempt}"), &[("x-user", &user)]),
                "m",
            );
            picks.push(routes()[0].0.clone());
        }
        assert!(
            picks.iter().all(|p| *p == picks[0]),
            "{user} moved: {picks:?}"
        );
        if picks[0] == "b" {
            to_b += 1;
        }
    }
    assert!(
        (140..=260).contains(&to_b),
        "b got {to_b} of 1000 users at weight 20%"
    );
}

#[test]
fn fallback_list_is_walked_in_order_then_gives_up() {
    MockHost::reset();
    let mut f = ProviderRouting::configure(json!({
        "fallback_delay_ms": 7,
        "rules": [{"model": "*", "fallback": [
            {"provider": "groq", "model": "llama"}, {"provider": "mistral"}]}]
    }))
    .unwrap();
    run(&mut f, &req("a", &[]), "gpt-4o");
    assert!(
        routes().is_empty(),
        "a fallback-only rule keeps the first target"
    );
    let fail = Response {
        status: 503,
        attempt: 1,
        ..Response::default()
    };
    assert_eq!(
        f.on_response_headers(&fail),
        ResponseDecision::Retry { delay_ms: 7 }
    );
    let down = Response {
        status: 502,
        attempt: 2,
        upstream_error: Some("refused".into()),
        local: true,
        ..Response::default()
    };
    assert_eq!(
        f.on_response_headers(&down),
        ResponseDecision::Retry { delay_ms: 7 }
    );
    assert_eq!(
        routes(),
        vec![
            ("groq".into(), Some("llama".into())),
            ("mistral".into(), None)
        ]
    );
    assert_eq!(
        f.on_response_headers(&fail),
        ResponseDecision::proceed(),
        "list exhausted"
    );
    let ok = Response {
        status: 200,
        ..Response::default()
    };
    assert_eq!(f.on_response_headers(&ok), ResponseDecision::proceed());
}

#[test]
fn success_and_other_statuses_do_not_fall_back() {
    MockHost::reset();
    let mut f = ProviderRouting::configure(json!({
        "fallback_on": [429],
        "rules": [{"fallback": [{"provider": "groq"}]}]
    }))
    .unwrap();
    run(&mut f, &req("a", &[]), "m");
    for status in [200, 400, 500] {
        let r = Response {
            status,
            ..Response::default()
        };
        assert_eq!(
            f.on_response_headers(&r),
            ResponseDecision::proceed(),
            "{status}"
        );
    }
    let r = Response {
        status: 429,
        ..Response::default()
    };
    assert!(matches!(
        f.on_response_headers(&r),
        ResponseDecision::Retry { .. }
    ));
}

#[test]
fn unknown_provider_from_the_host_is_skipped() {
    MockHost::reset();
    MockHost::with(|m| m.providers = vec!["groq".into()]);
    let mut f = ProviderRouting::configure(json!({
        "rules": [{"targets": [{"provider": "nope"}], "fallback": [{"provider": "nope"}, {"provider": "groq"}]}]
    }))
    .unwrap();
    run(&mut f, &req("a", &[]), "m");
    assert!(routes().is_empty());
    let r = Response {
        status: 500,
        ..Response::default()
    };
    assert!(matches!(
        f.on_response_headers(&r),
        ResponseDecision::Retry { .. }
    ));
    assert_eq!(routes(), vec![("groq".into(), None)]);
}

#[test]
fn config_errors_name_the_key() {
    let err = |v: serde_json::Value| ProviderRouting::configure(v).err().unwrap();
    assert!(err(json!({"rulez": []})).contains("rulez"));
    assert!(err(json!({"rules": [{"model": "x"}]})).contains("rules[0]: needs"));
    assert!(
        err(json!({"rules": [{"targets": [{"provider": ""}]}]}))
            .contains("rules[0].targets[0].provider")
    );
    assert!(
        err(json!({"rules": [{"targets": [{"provider": "a", "weight": -1}]}]}))
            .starts_with("rules[0].targets[0].weight")
    );
    assert!(
        err(json!({"rules": [{"value": "x", "targets": [{"provider": "a"}]}]}))
            .contains("rules[0].value")
    );
    assert!(
        err(json!({"rules": [{"sticky": "cookie", "targets": [{"provider": "a"}]}]}))
            .contains("rules[0].sticky")
    );
    assert!(err(json!({"fallback_on": [42]})).contains("fallback_on"));
    assert!(err(json!({"rules": [{"targets": [{"provider": "a", "weight": 0}, {"provider": "b", "weight": 0}]}]}))
        .contains("weight"));
}
