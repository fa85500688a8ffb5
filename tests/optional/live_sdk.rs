//! Google's google-genai Live client (`client.aio.live.connect`, `tests/sdk/gemini_live_sdk.py`)
//! through the gateway's `google-ai-studio` route against the mock's Live endpoint: the setup
//! and two text turns pass both ways, and the session's one log entry names the model the
//! setup chose and carries the usage the SDK saw, priced at that model's rates.

use crate::harness::*;
use crate::python_sdk::run_script;

pub async fn google_genai_live_sessions_pass_through_and_are_billed_exactly() {
    let mock = Mock::start().await;
    let cfg = format!(
        "[providers.google-ai-studio]\nbase_url = \"http://{}\"\n[gateways.gw]\npipeline = [\"logging\"]\n",
        mock.addr
    );
    let mut gw = Gateway::start(&cfg, &[]);
    let v = run_script("gemini_live_sdk.py", gw.url("/v1/acct/gw")).await;
    let turns = v["turns"].as_array().unwrap();
    assert_eq!(turns.len(), 2, "{v}");
    assert_eq!(
        turns[0]["text"], "Live mock reply to: hello live sdk",
        "{v}"
    );
    assert_eq!(turns[1]["text"], "Live mock reply to: and once more", "{v}");
    let handshake = mock
        .requests()
        .into_iter()
        .find(|r| {
            r["path"]
                .as_str()
                .unwrap()
                .ends_with(".BidiGenerateContent")
        })
        .unwrap();
    assert_eq!(handshake["headers"]["x-goog-api-key"], "goog-live-client");

    assert!(gw.stop());
    let entries = log_entries(&gw.data_dir());
    assert_eq!(entries.len(), 1, "{entries:#?}");
    let e = &entries[0];
    let sum =
        |k: &str| turns[0]["usage"][k].as_u64().unwrap() + turns[1]["usage"][k].as_u64().unwrap();
    assert_eq!(e["status"], 101, "{e}");
    assert_eq!(e["model"], "gemini-2.0-flash", "{e}");
    assert_eq!(e["tokens_in"], sum("prompt"), "{e}");
    assert_eq!(e["tokens_out"], sum("response"), "{e}");
    // gemini-2.0-flash: $0.10 in, $0.40 out per million.
    let want = (sum("prompt") as f64 * 0.1 + sum("response") as f64 * 0.4) / 1e6;
    let cost = e["cost"].as_f64().unwrap();
    assert!((cost - want).abs() < 1e-12, "cost {cost}, expected {want}");
}
