//! End-to-end tests that need a service or tool beyond Rust: Redis, PostgreSQL, Chromium, the
//! official Python SDKs, componentize-py. A test whose need is missing is reported as *ignored*
//! with the reason, never as passed, and the run ends with a summary of what was skipped and the
//! one command that installs it all (`scripts/test-deps.sh`). With `AIGW_REQUIRE_<NEED>` set (CI
//! sets them all) a missing need fails its tests instead.
//!
//! libtest cannot decide at run time that a test is ignored, so this binary has its own runner
//! (`libtest-mimic`), with the same command-line filters and output as libtest.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::type_complexity,
    clippy::print_stdout
)]

#[path = "../e2e/harness.rs"]
#[allow(dead_code)]
mod harness;

mod cohere_sdk;
mod dashboard;
mod live_sdk;
mod node_sdk;
mod python_filter;
mod python_sdk;
mod shared_stores;
mod stored_on_postgres;

use libtest_mimic::{Arguments, Failed, Trial};
use std::future::Future;

/// Something a test needs that `cargo test` does not bring.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Need {
    Redis,
    Postgres,
    PythonSdks,
    NodeSdk,
    Chromium,
    ComponentizePy,
    ClaudeCode,
    Codex,
}

impl Need {
    /// The variable that turns "skip without it" into "fail without it".
    fn require_var(self) -> &'static str {
        match self {
            Need::Redis => "AIGW_REQUIRE_REDIS",
            Need::Postgres => "AIGW_REQUIRE_POSTGRES",
            Need::PythonSdks => "AIGW_REQUIRE_PYTHON_SDK",
            Need::NodeSdk => "AIGW_REQUIRE_NODE_SDK",
            Need::Chromium => "AIGW_REQUIRE_CHROMIUM",
            Need::ComponentizePy => "AIGW_REQUIRE_COMPONENTIZE_PY",
            Need::ClaudeCode => "AIGW_REQUIRE_CLAUDE_CODE",
            Need::Codex => "AIGW_REQUIRE_CODEX",
        }
    }

    /// `Ok` when the need is met here, else why not.
    fn probe(self) -> Result<(), String> {
        match self {
            Need::Redis => std::process::Command::new("redis-server")
                .arg("--version")
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|_| ())
                .ok_or_else(|| "redis-server is not on PATH".into()),
            Need::Postgres => {
                let url = shared_stores::postgres_url();
                let mut config: postgres::Config = url
                    .parse()
                    .map_err(|e| format!("AIGW_TEST_POSTGRES_URL does not parse: {e}"))?;
                config.connect_timeout(std::time::Duration::from_secs(3));
                let place = url.split('@').next_back().unwrap_or("?").to_string();
                config
                    .connect(postgres::NoTls)
                    .map(|_| ())
                    .map_err(|e| format!("no PostgreSQL database at {place} ({e})"))
            }
            Need::PythonSdks => python_sdk::python().map(|_| ()).ok_or_else(|| {
                "no Python with the openai[realtime], anthropic, cloudflare, websocket-client, boto3, google-genai, cohere and cryptography packages (AIGW_PYTHON or .venv)".into()
            }),
            Need::NodeSdk => node_sdk::node().map(|_| ()).ok_or_else(|| {
                "no node with the Vercel AI SDK installed (npm ci in tests/sdk/node)".into()
            }),
            Need::Chromium => dashboard::chromium()
                .map(|_| ())
                .ok_or_else(|| "chromium is not installed".into()),
            Need::ComponentizePy => python_filter::componentize_py()
                .map(|_| ())
                .ok_or_else(|| "componentize-py is not installed".into()),
            Need::Codex => node_sdk::codex().map(|_| ()).ok_or_else(|| {
                "no Codex CLI (npm ci in tests/sdk/node installs @openai/codex)".into()
            }),
            Need::ClaudeCode => node_sdk::claude_code().map(|_| ()).ok_or_else(|| {
                "no Claude Code binary (npm ci in tests/sdk/node installs @anthropic-ai/claude-code)"
                    .into()
            }),
        }
    }
}

/// One test: its name, what it needs, and its body.
struct Test {
    name: &'static str,
    needs: &'static [Need],
    run: fn() -> std::pin::Pin<Box<dyn Future<Output = ()>>>,
}

macro_rules! test {
    ($module:ident :: $name:ident, $($need:expr),+) => {
        Test {
            name: concat!(stringify!($module), "::", stringify!($name)),
            needs: &[$($need),+],
            run: || Box::pin($module::$name()),
        }
    };
}

fn tests() -> Vec<Test> {
    vec![
        test!(
            shared_stores::two_replicas_share_exact_limits_and_one_cache_through_redis,
            Need::Redis
        ),
        test!(
            shared_stores::a_redis_outage_follows_the_policy_and_the_replicas_recover,
            Need::Redis
        ),
        test!(
            shared_stores::two_replicas_share_one_budget_through_redis,
            Need::Redis
        ),
        test!(
            shared_stores::two_replicas_logging_to_one_postgres_show_all_requests_on_either,
            Need::Postgres
        ),
        test!(
            stored_on_postgres::a_response_stored_by_one_replica_is_continued_on_the_other,
            Need::Postgres
        ),
        test!(
            shared_stores::two_writers_keep_exact_analytics_rollups_in_one_postgres,
            Need::Postgres
        ),
        test!(
            python_sdk::openai_python_sdk_gets_completions_and_streams,
            Need::PythonSdks
        ),
        test!(
            python_sdk::openai_and_anthropic_sdks_through_compat_and_passthrough,
            Need::PythonSdks
        ),
        test!(
            python_sdk::official_sdks_are_billed_exactly,
            Need::PythonSdks
        ),
        test!(
            python_sdk::official_sdks_work_with_a_virtual_key,
            Need::PythonSdks
        ),
        test!(
            python_sdk::cloudflare_sdk_manages_gateways_and_logs,
            Need::PythonSdks
        ),
        test!(
            python_sdk::official_sdks_see_guardrails_flags_blocks_and_cut_streams,
            Need::PythonSdks
        ),
        test!(
            python_sdk::anthropic_sdk_reaches_openai_models_through_messages,
            Need::PythonSdks
        ),
        test!(
            python_sdk::openai_responses_reach_anthropic_models_through_compat,
            Need::PythonSdks
        ),
        test!(
            python_sdk::openai_realtime_sessions_pass_through_and_are_billed_exactly,
            Need::PythonSdks
        ),
        test!(
            python_sdk::openai_embeddings_reach_gemini_and_cohere_through_compat,
            Need::PythonSdks
        ),
        test!(
            python_sdk::bedrock_for_boto3_and_the_openai_sdk_is_signed_by_the_gateway_and_billed,
            Need::PythonSdks
        ),
        test!(
            python_sdk::gemini_passes_through_for_google_genai_and_translates_for_the_openai_sdk,
            Need::PythonSdks
        ),
        test!(
            cohere_sdk::cohere_chat_passes_through_and_translates_for_every_entry_point,
            Need::PythonSdks
        ),
        test!(
            live_sdk::google_genai_live_sessions_pass_through_and_are_billed_exactly,
            Need::PythonSdks
        ),
        test!(
            node_sdk::vercel_ai_sdk_default_calls_work_and_are_billed_exactly,
            Need::NodeSdk
        ),
        test!(
            node_sdk::cloudflare_typescript_sdk_manages_gateways_and_logs,
            Need::NodeSdk
        ),
        test!(
            node_sdk::claude_code_runs_a_tool_turn_through_the_gateway,
            Need::ClaudeCode
        ),
        test!(
            node_sdk::codex_runs_a_tool_turn_through_the_gateway,
            Need::Codex
        ),
        test!(
            dashboard::the_dashboard_shows_what_the_api_reports,
            Need::Chromium
        ),
        test!(
            dashboard::the_tutorial_through_the_console_in_a_browser,
            Need::Chromium,
            Need::PythonSdks
        ),
        test!(
            python_filter::a_filter_written_in_python_runs_in_the_pipeline,
            Need::ComponentizePy
        ),
    ]
}

/// Runs one test body on its own two-thread runtime (what `#[tokio::test]` would do), turning a
/// panic into a failure with its message.
fn run(body: fn() -> std::pin::Pin<Box<dyn Future<Output = ()>>>) -> Result<(), Failed> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Failed::from(format!("cannot start a runtime: {e}")))?;
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| runtime.block_on(body()))).map_err(
        |panic| {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "the test panicked".into());
            Failed::from(message)
        },
    )
}

fn main() -> std::process::ExitCode {
    let args = Arguments::from_args();
    let mut probed: Vec<(Need, Result<(), String>)> = Vec::new();
    let mut skipped: Vec<(&'static str, String)> = Vec::new();
    let mut trials = Vec::new();
    for test in tests() {
        let mut missing = None;
        for need in test.needs {
            let result = match probed.iter().find(|(n, _)| n == need) {
                Some((_, r)) => r.clone(),
                None => {
                    let r = need.probe();
                    probed.push((*need, r.clone()));
                    r
                }
            };
            if let Err(why) = result {
                missing = Some((*need, why));
                break;
            }
        }
        let body = test.run;
        let trial = match missing {
            None => Trial::test(test.name, move || run(body)),
            Some((need, why)) if std::env::var_os(need.require_var()).is_some() => {
                let message = format!("{} is set but {why}", need.require_var());
                Trial::test(test.name, move || Err(Failed::from(message.clone())))
            }
            Some((_, why)) => {
                skipped.push((test.name, why.clone()));
                // Run anyway (`--include-ignored`), it fails: a skipped test never passes.
                Trial::test(test.name, move || {
                    Err(Failed::from(format!("skipped: {why}")))
                })
                .with_ignored_flag(true)
            }
        };
        trials.push(trial);
    }
    let conclusion = libtest_mimic::run(&args, trials);
    if !skipped.is_empty() && !args.list {
        println!(
            "\nSKIPPED (not run, not passed): {} test(s) whose services are missing here:",
            skipped.len()
        );
        for (name, why) in &skipped {
            println!("  {name}: {why}");
        }
        println!(
            "Install Redis, PostgreSQL, Chromium, the Python SDKs and componentize-py with\n  \
             sudo bash scripts/test-deps.sh\nthen run `cargo test --workspace` again (CI runs it through .ci/run).\n"
        );
    }
    conclusion.exit_code()
}
