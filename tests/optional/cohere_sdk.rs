//! Cohere's v2 chat with real clients (`tests/sdk/cohere_sdk.py`): Cohere's own Python SDK on
//! the passthrough route, and the OpenAI and Anthropic SDKs at the compat endpoint with a
//! `cohere/…` model, translated to Cohere's native v2 chat and back. Every call is logged with
//! the billed tokens and priced.

use crate::harness::*;
use crate::python_sdk::run_script;

pub async fn cohere_chat_passes_through_and_translates_for_every_entry_point() {
    let mock = Mock::start().await;
    let cfg = format!(
        "[providers.cohere]\nbase_url = \"http://{}\"\n[gateways.gw]\npipeline = [\"logging\"]\n",
        mock.addr
    );
    let gw = Gateway::start(&cfg, &[]);
    let v = run_script("cohere_sdk.py", gw.url("/v1/acct/gw")).await;

    // Cohere's SDK parsed the mock's answers and stream events.
    assert_eq!(
        v["native"]["text"], "Cohere mock reply to: hello cohere sdk",
        "{v}"
    );
    assert_eq!(v["native"]["finish"], "COMPLETE", "{v}");
    assert!(v["native"]["billed_in"].as_f64().unwrap() > 0.0, "{v}");
    assert_eq!(
        v["native_stream"], "Cohere mock reply to: stream cohere sdk",
        "{v}"
    );
    for kind in ["message-start", "content-delta", "message-end"] {
        assert!(
            v["native_stream_kinds"]
                .as_array()
                .unwrap()
                .contains(&kind.into()),
            "{kind}: {v}"
        );
    }
    assert_eq!(v["native_tool"]["arguments"]["city"], "Paris", "{v}");
    assert_eq!(v["native_tool"]["finish"], "TOOL_CALL", "{v}");

    // Translated for the OpenAI SDK.
    assert_eq!(
        v["openai"]["text"], "Cohere mock reply to: hello through compat",
        "{v}"
    );
    assert_eq!(v["openai"]["finish"], "stop", "{v}");
    assert!(v["openai"]["prompt_tokens"].as_u64().unwrap() > 0, "{v}");
    assert_eq!(
        v["openai_stream"]["text"], "Cohere mock reply to: stream through compat",
        "{v}"
    );
    assert!(
        v["openai_stream"]["completion_tokens"].as_u64().unwrap() > 0,
        "{v}"
    );
    assert_eq!(v["openai_tool"]["name"], "get_weather", "{v}");
    assert_eq!(v["openai_tool"]["arguments"]["city"], "Paris", "{v}");
    assert_eq!(v["openai_tool"]["finish"], "tool_calls", "{v}");
    assert_eq!(v["openai_stream_tool"]["city"], "Paris", "{v}");
    assert_eq!(
        v["openai_after_tool"], "Cohere mock reply to: weather in Paris?",
        "{v}"
    );
    // Translated for the Anthropic SDK and the Responses API.
    assert_eq!(
        v["anthropic"]["text"], "Cohere mock reply to: hello from anthropic",
        "{v}"
    );
    assert_eq!(v["anthropic"]["stop"], "end_turn", "{v}");
    assert!(v["anthropic"]["output_tokens"].as_u64().unwrap() > 0, "{v}");
    assert_eq!(
        v["responses"]["text"], "Cohere mock reply to: hello from responses",
        "{v}"
    );
    assert_eq!(v["responses"]["status"], "completed", "{v}");

    // Every call reached Cohere's v2 chat, with the client's key, in Cohere's shape.
    let seen = mock.requests();
    assert_eq!(seen.len(), 10, "{seen:#?}");
    assert!(seen.iter().all(|r| r["path"] == "/v2/chat"), "{seen:#?}");
    assert!(
        seen.iter()
            .all(|r| r["headers"]["authorization"] == "Bearer co-client-key"),
        "{seen:#?}"
    );
    let after_tool = body_of(&seen[7]);
    assert_eq!(after_tool["model"], "command-a-03-2025", "{after_tool}");
    let turns = after_tool["messages"].as_array().unwrap();
    assert_eq!(turns[1]["tool_calls"][0]["function"]["name"], "get_weather");
    assert_eq!(turns[2]["role"], "tool");
    assert_eq!(turns[2]["content"], "18 degrees");

    // Logged with Cohere's billed tokens, and priced.
    let mut gw = gw;
    assert!(gw.stop());
    let entries = log_entries(&gw.data_dir());
    assert_eq!(entries.len(), 10, "{entries:#?}");
    for e in &entries {
        assert_eq!(e["provider"], "cohere", "{e}");
        assert!(e["tokens_in"].as_u64().unwrap() > 0, "{e}");
        assert!(e["tokens_out"].as_u64().unwrap() > 0, "{e}");
        assert!(e["cost"].as_f64().unwrap() > 0.0, "{e}");
    }
}
