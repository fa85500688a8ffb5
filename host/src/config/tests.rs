use super::*;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(Path::new("/etc/aigw/aigw.toml"), text)
}

#[test]
fn minimal_config_gets_defaults() {
    let c = parse("[gateways.gw]\npipeline = []\n").unwrap();
    assert_eq!(c.listen.to_string(), "127.0.0.1:8787");
    assert_eq!(c.plugins_dir, Path::new("/etc/aigw/plugins"));
    assert!(c.providers.contains_key("openai") && c.providers.contains_key("google-ai-studio"));
    assert_eq!(c.gateways["gw"].accounts, vec!["*".to_string()]);
}

#[test]
fn unknown_keys_are_named() {
    let e = parse("[server]\nlisten = \"127.0.0.1:1\"\nlisen = 2\n[gateways.g]\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("lisen") && e.contains("aigw.toml"), "{e}");
    let e = parse("[gateways.g]\npipline = []\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("pipline"), "{e}");
}

#[test]
fn filter_tables_split_host_keys() {
    let c = parse(
        "[gateways.g]\npipeline = [\"cache\"]\n[gateways.g.filters.cache]\nttl_s = 60\non_error = \"closed\"\ntimeout_ms = 20\n",
    )
    .unwrap();
    let s = &c.gateways["g"].filters["cache"];
    assert_eq!(s.on_error, Some(OnError::Closed));
    assert_eq!(s.timeout_ms, 20);
    assert_eq!(s.config_json, r#"{"ttl_s":60}"#);
}

#[test]
fn misspelt_host_keys_are_named_with_the_host_key_meant() {
    let table = |filter: &str, line: &str| {
        parse(&format!(
            "[gateways.g]\npipeline = [\"{filter}\"]\n[gateways.g.filters.{filter}]\n{line}\n"
        ))
        .unwrap()
    };
    let c = table(
        "rate-limit",
        "limit = 5\nperiod_s = 60\ncircuit_failure = 3",
    );
    assert_eq!(
        c.gateways["g"].filters["rate-limit"].host_key_typos,
        [
            "'circuit_failure' is not a host key; did you mean 'circuit_failures' (failed requests \
          in a row that open the filter's circuit)?"
        ]
    );
    for (line, meant) in [
        ("timeout = 50", "timeout_ms"),
        ("timout_ms = 50", "timeout_ms"),
        ("on-error = \"closed\"", "on_error"),
        ("On_Error = \"closed\"", "on_error"),
        ("max_memory = 64", "max_memory_mb"),
        ("max-memory-mb = 64", "max_memory_mb"),
        ("circuit_open = 1000", "circuit_open_ms"),
        ("circuit-open-ms = 1000", "circuit_open_ms"),
    ] {
        let c = table("cache", line);
        let s = &c.gateways["g"].filters["cache"];
        let key = line.split(' ').next().unwrap();
        assert!(
            s.host_key_typos.len() == 1
                && s.host_key_typos[0].contains(&format!("'{key}' is not a host key"))
                && s.host_key_typos[0].contains(&format!("did you mean '{meant}'")),
            "{line}: {:?}",
            s.host_key_typos
        );
        // Still handed to the filter: it may be a key of its own.
        assert!(s.config_json.contains(key), "{}", s.config_json);
    }
}

#[test]
fn filter_keys_near_no_host_key_still_reach_the_filter() {
    // The top-level keys of every built-in filter's table, and a few a filter may well use.
    let keys = [
        "ttl_s",
        "max_entry_bytes",
        "limit",
        "period_s",
        "key",
        "technique",
        "token_budget",
        "per_minute",
        "ttl",
        "max_attempts",
        "delay_ms",
        "backoff",
        "on_status",
        "on_connection_error",
        "on_timeout",
        "collect_logs",
        "collect_payload",
        "max_payload_bytes",
        "mode",
        "entities",
        "custom",
        "max_body_bytes",
        "rules",
        "fallback_on",
        "fallback_on_connection_error",
        "fallback_delay_ms",
        "unpriced",
        "max_output_tokens",
        "budget_wait_ms",
        "banned_word",
        "status",
        "header",
        "value",
        "until_ms",
        "error",
        "kv_on_error",
    ];
    for key in keys {
        let c = parse(&format!(
            "[gateways.g]\npipeline = [\"f\"]\n[gateways.g.filters.f]\n{key} = 1\ncircuit_failures = 2\n"
        ))
        .unwrap_or_else(|e| panic!("{key}: {e}"));
        let s = &c.gateways["g"].filters["f"];
        assert_eq!(s.circuit_failures, 2);
        assert_eq!(s.config_json, format!("{{\"{key}\":1}}"), "{key}");
        assert!(s.host_key_typos.is_empty(), "{key}: {:?}", s.host_key_typos);
    }
}

#[test]
fn bad_values_name_their_key() {
    let e =
        parse("[gateways.g]\npipeline = [\"x\"]\n[gateways.g.filters.x]\non_error = \"maybe\"\n")
            .unwrap_err()
            .to_string();
    assert!(e.contains("gateways.g.filters.x.on_error"), "{e}");
    let e = parse("[gateways.g]\npipeline = [\"x\"]\n[gateways.g.filters.y]\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("gateways.g.filters.y"), "{e}");
    let e = parse("[providers.mine]\n[gateways.g]\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("providers.mine.base_url"), "{e}");
    let e = parse("[server]\nlisten = \"nowhere\"\n[gateways.g]\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("server.listen"), "{e}");
    let e = parse("[gateways.g]\npipeline = [\"a\", \"a\"]\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("listed twice"), "{e}");
}

#[test]
fn provider_base_url_override() {
    let c =
        parse("[providers.openai]\nbase_url = \"http://127.0.0.1:9/v1/\"\n[gateways.g]\n").unwrap();
    assert_eq!(c.providers["openai"].base_url, "http://127.0.0.1:9/v1");
}

#[test]
fn syntax_errors_give_a_position_but_never_quote_the_line() {
    let e = parse("[server]\nadmin_token = \"sk-very-secret\" oops\n[gateways.g]\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("line 2"), "{e}");
    assert!(!e.contains("sk-very-secret"), "{e}");
}

#[test]
fn a_non_loopback_admin_listener_needs_a_token() {
    let e = parse("[server]\nadmin_listen = \"0.0.0.0:8788\"\n[gateways.g]\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("server.admin_token"), "{e}");
    assert!(
        parse("[server]\nadmin_listen = \"0.0.0.0:8788\"\nadmin_token = \"t\"\n[gateways.g]\n")
            .is_ok()
    );
    assert!(parse("[server]\nadmin_listen = \"127.0.0.1:8788\"\n[gateways.g]\n").is_ok());
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    /// Text built from TOML pieces this file uses (tables, keys, values,
    /// quotes, brackets) and arbitrary characters.
    fn tomlish() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just("[server]\n".to_string()),
            Just("[gateways.g]\n".to_string()),
            Just("[gateways.g.filters.cache]\n".to_string()),
            Just("[providers.openai]\n".to_string()),
            Just("[providers.mine]\n".to_string()),
            Just("[[prices]]\n".to_string()),
            Just("[server.log_retention]\n".to_string()),
            Just("[mock_provider]\n".to_string()),
            Just("[store]\n".to_string()),
            Just("[logs]\n".to_string()),
            prop_oneof![
                Just("listen"),
                Just("admin_listen"),
                Just("admin_token"),
                Just("on_missing_filter"),
                Just("max_body_bytes"),
                Just("pipeline"),
                Just("accounts"),
                Just("auth_token"),
                Just("base_url"),
                Just("auth_header"),
                Just("api_key"),
                Just("compat_path"),
                Just("request_timeout_ms"),
                Just("on_error"),
                Just("timeout_ms"),
                Just("max_memory_mb"),
                Just("circuit_failures"),
                Just("max_entries"),
                Just("input_per_million"),
                Just("provider"),
                Just("model"),
                Just("backend"),
                Just("url"),
                Just("kv_on_error"),
            ]
            .prop_map(|k| format!("{k} = ")),
            Just("\"127.0.0.1:1\"".to_string()),
            Just("\"0.0.0.0:8788\"".to_string()),
            Just("\"http://127.0.0.1:9/v1/\"".to_string()),
            Just("[\"cache\", \"logging\"]".to_string()),
            Just("{ env = \"AIGW_NO_SUCH_VAR\" }".to_string()),
            Just("\"closed\"".to_string()),
            Just("\"redis\"".to_string()),
            Just("\"redis://127.0.0.1:6379/0\"".to_string()),
            any::<i64>().prop_map(|n| n.to_string()),
            any::<f64>().prop_map(|n| n.to_string()),
            Just("\n".to_string()),
            Just("\"".to_string()),
            Just("'''".to_string()),
            Just("[".to_string()),
            Just("]".to_string()),
            Just("=".to_string()),
            Just(".".to_string()),
            "[^\\x00]{0,6}",
            any::<String>().prop_map(|s| s.chars().take(4).collect()),
        ];
        prop::collection::vec(piece, 0..24).prop_map(|p| p.concat())
    }

    /// A valid filter or gateway name.
    fn name() -> impl Strategy<Value = String> {
        "[a-z0-9_-]{1,10}"
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn arbitrary_text_is_an_error_not_a_panic(text in any::<String>()) {
            if let Err(e) = parse(&text) {
                prop_assert!(e.to_string().contains("aigw.toml"), "{}", e);
            }
        }

        #[test]
        fn tomlish_text_is_an_error_not_a_panic(text in tomlish()) {
            if let Err(e) = parse(&text) {
                let message = e.to_string();
                prop_assert!(message.contains("aigw.toml"), "{}", message);
            }
        }

        #[test]
        fn valid_configs_keep_their_values(
            port in 1u16..,
            max_body_bytes in 1usize..=1 << 40,
            gateways in prop::collection::btree_map(
                name(),
                (prop::collection::btree_set(name(), 0..4), 1u64..=60_000, any::<bool>()),
                1..4,
            ),
        ) {
            let mut text = format!(
                "[server]\nlisten = \"127.0.0.1:{port}\"\nmax_body_bytes = {max_body_bytes}\n"
            );
            for (gw, (pipeline, timeout_ms, closed)) in &gateways {
                let names: Vec<String> = pipeline.iter().map(|f| format!("{f:?}")).collect();
                text += &format!("[gateways.{gw}]\npipeline = [{}]\n", names.join(", "));
                for f in pipeline {
                    let on_error = if *closed { "closed" } else { "open" };
                    text += &format!(
                        "[gateways.{gw}.filters.{f}]\ntimeout_ms = {timeout_ms}\non_error = \"{on_error}\"\nmine = {f:?}\n"
                    );
                }
            }
            let c = parse(&text).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
            prop_assert_eq!(c.listen.port(), port);
            prop_assert_eq!(c.max_body_bytes, max_body_bytes);
            prop_assert_eq!(c.gateways.len(), gateways.len());
            for (gw, (pipeline, timeout_ms, closed)) in &gateways {
                let g = &c.gateways[gw];
                prop_assert_eq!(&g.pipeline, &pipeline.iter().cloned().collect::<Vec<_>>());
                for f in pipeline {
                    let s = &g.filters[f];
                    prop_assert_eq!(s.timeout_ms, *timeout_ms);
                    prop_assert_eq!(s.on_error == Some(OnError::Closed), *closed);
                    prop_assert_eq!(&s.config_json, &serde_json::json!({"mine": f}).to_string());
                }
            }
        }
    }
}
