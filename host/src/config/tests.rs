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
    assert_eq!(s.on_error, OnError::Closed);
    assert_eq!(s.timeout_ms, 20);
    assert_eq!(s.config_json, r#"{"ttl_s":60}"#);
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
