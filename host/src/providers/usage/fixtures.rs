//! The accounting corpus: one answer per provider and API (JSON, SSE, AWS event stream), each
//! written from the provider's API reference, with the tokens (every kind) and the cost it
//! must be billed. Expected costs are computed here by hand from the providers' published
//! prices, not from the gateway's catalog, so a wrong catalog entry or a wrong reading fails.
//! Every answer must give the same usage however its bytes are cut (a property test), and
//! the corpus total must equal the sum of the expected costs to the micro-dollar.

use super::tests::event_frame;
use super::{Usage, UsageReader};
use crate::providers::pricing::{Price, PriceTable};
use proptest::prelude::*;

/// One recorded answer.
struct Fixture {
    name: &'static str,
    provider: &'static str,
    model: &'static str,
    content_type: &'static str,
    body: Vec<u8>,
    usage: Usage,
    /// USD; `None` when the answer must stay unpriced.
    cost: Option<f64>,
}

fn usage(input: u32, output: u32) -> Usage {
    Usage {
        tokens_in: Some(input),
        tokens_out: Some(output),
        ..Usage::default()
    }
}

/// SSE text from `data:` payloads (and optional `event:` names), as providers send it.
fn sse(events: &[(Option<&str>, &str)]) -> Vec<u8> {
    let mut out = String::new();
    for (event, data) in events {
        if let Some(e) = event {
            out.push_str(&format!("event: {e}\n"));
        }
        out.push_str(&format!("data: {data}\n\n"));
    }
    out.into_bytes()
}

/// USD from token counts and USD-per-million rates.
fn usd(parts: &[(f64, f64)]) -> f64 {
    parts.iter().map(|(n, rate)| n * rate).sum::<f64>() / 1e6
}

fn corpus() -> Vec<Fixture> {
    let bedrock_usage = r#"{"inputTokens":30,"outputTokens":10,"totalTokens":45,"cacheReadInputTokens":5,"cacheWriteInputTokens":0}"#;
    let bedrock_expected = Usage {
        tokens_in: Some(35),
        tokens_out: Some(10),
        tokens_cached: Some(5),
        tokens_cache_write: Some(0),
        ..Usage::default()
    };
    // Bedrock has no shipped prices; the test adds Claude 3 Haiku's ($0.25 / $1.25, cache
    // read $0.03) as a `[[prices]]` entry would.
    let bedrock_cost = usd(&[(30.0, 0.25), (5.0, 0.03), (10.0, 1.25)]);
    let mut bedrock_stream = Vec::new();
    bedrock_stream.extend(event_frame("messageStart", r#"{"role":"assistant"}"#));
    bedrock_stream.extend(event_frame(
        "contentBlockDelta",
        r#"{"contentBlockIndex":0,"delta":{"text":"Paris."}}"#,
    ));
    bedrock_stream.extend(event_frame("messageStop", r#"{"stopReason":"end_turn"}"#));
    bedrock_stream.extend(event_frame(
        "metadata",
        &format!(r#"{{"usage":{bedrock_usage},"metrics":{{"latencyMs":212}}}}"#),
    ));
    vec![
        Fixture {
            name: "openai chat json, cached prompt",
            provider: "openai",
            model: "gpt-4o-mini",
            content_type: "application/json",
            body: br#"{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-4o-mini-2024-07-18",
              "choices":[{"index":0,"message":{"role":"assistant","content":"Hello"},"finish_reason":"stop"}],
              "usage":{"prompt_tokens":1200,"completion_tokens":300,"total_tokens":1500,
              "prompt_tokens_details":{"cached_tokens":1024,"audio_tokens":0},
              "completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0}}}"#
                .to_vec(),
            usage: Usage {
                tokens_cached: Some(1024),
                tokens_reasoning: Some(0),
                tokens_audio: Some(0),
                ..usage(1200, 300)
            },
            cost: Some(usd(&[(176.0, 0.15), (1024.0, 0.075), (300.0, 0.6)])),
        },
        Fixture {
            name: "openai chat json with audio output (audio rates unknown: unpriced)",
            provider: "openai",
            model: "gpt-4o-mini",
            content_type: "application/json",
            body: br#"{"id":"chatcmpl-2","object":"chat.completion","created":1,"model":"gpt-4o-mini",
              "choices":[{"index":0,"message":{"role":"assistant","content":null,"audio":{"id":"audio_1","data":"AAAA","transcript":"Hi"}},"finish_reason":"stop"}],
              "usage":{"prompt_tokens":20,"completion_tokens":60,"total_tokens":80,
              "prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},
              "completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":48}}}"#
                .to_vec(),
            usage: Usage {
                tokens_cached: Some(0),
                tokens_reasoning: Some(0),
                tokens_audio: Some(48),
                ..usage(20, 60)
            },
            cost: None,
        },
        Fixture {
            name: "openai chat stream with include_usage",
            provider: "openai",
            model: "gpt-4o-mini",
            content_type: "text/event-stream",
            body: sse(&[
                (None, r#"{"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"role":"assistant","content":""}}],"usage":null}"#),
                (None, r#"{"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"Hi \"usage\" there"}}],"usage":null}"#),
                (None, r#"{"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":null}"#),
                (None, r#"{"id":"c","object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":50,"completion_tokens":20,"total_tokens":70,"prompt_tokens_details":{"cached_tokens":0},"completion_tokens_details":{"reasoning_tokens":0}}}"#),
                (None, "[DONE]"),
            ]),
            usage: Usage {
                tokens_cached: Some(0),
                tokens_reasoning: Some(0),
                ..usage(50, 20)
            },
            cost: Some(usd(&[(50.0, 0.15), (20.0, 0.6)])),
        },
        Fixture {
            name: "openai responses json, cached and reasoning",
            provider: "openai",
            model: "o4-mini",
            content_type: "application/json",
            body: br#"{"id":"resp_1","object":"response","status":"completed","model":"o4-mini-2025-04-16",
              "output":[{"type":"reasoning","summary":[]},{"type":"message","role":"assistant","content":[{"type":"output_text","text":"ok"}]}],
              "usage":{"input_tokens":328,"input_tokens_details":{"cached_tokens":256},
              "output_tokens":52,"output_tokens_details":{"reasoning_tokens":32},"total_tokens":380}}"#
                .to_vec(),
            usage: Usage {
                tokens_cached: Some(256),
                tokens_reasoning: Some(32),
                ..usage(328, 52)
            },
            cost: Some(usd(&[(72.0, 1.1), (256.0, 0.275), (52.0, 4.4)])),
        },
        Fixture {
            name: "openai responses stream",
            provider: "openai",
            model: "gpt-4.1",
            content_type: "text/event-stream",
            body: sse(&[
                (Some("response.created"), r#"{"type":"response.created","sequence_number":0,"response":{"id":"resp_2","object":"response","status":"in_progress","usage":null}}"#),
                (Some("response.output_text.delta"), r#"{"type":"response.output_text.delta","sequence_number":1,"item_id":"msg_1","output_index":0,"content_index":0,"delta":"Hi"}"#),
                (Some("response.completed"), r#"{"type":"response.completed","sequence_number":2,"response":{"id":"resp_2","object":"response","status":"completed","usage":{"input_tokens":40,"input_tokens_details":{"cached_tokens":0},"output_tokens":12,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":52}}}"#),
            ]),
            usage: Usage {
                tokens_cached: Some(0),
                tokens_reasoning: Some(0),
                ..usage(40, 12)
            },
            cost: Some(usd(&[(40.0, 2.0), (12.0, 8.0)])),
        },
        Fixture {
            name: "openai embeddings",
            provider: "openai",
            model: "text-embedding-3-large",
            content_type: "application/json",
            body: br#"{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.1,-0.2]}],
              "model":"text-embedding-3-large","usage":{"prompt_tokens":8,"total_tokens":8}}"#
                .to_vec(),
            usage: Usage {
                tokens_in: Some(8),
                ..Usage::default()
            },
            cost: Some(usd(&[(8.0, 0.13)])),
        },
        Fixture {
            name: "openai image generation",
            provider: "openai",
            model: "gpt-image-1",
            content_type: "application/json",
            body: format!(
                r#"{{"created":1,"data":[{{"b64_json":"{}"}}],"output_format":"png","quality":"medium",
                "usage":{{"input_tokens":60,"input_tokens_details":{{"text_tokens":20,"image_tokens":40}},
                "output_tokens":1056,"total_tokens":1116}}}}"#,
                "QUFB".repeat(2 << 20)
            )
            .into_bytes(),
            usage: Usage {
                tokens_image_in: Some(40),
                ..usage(60, 1056)
            },
            cost: Some(usd(&[(20.0, 5.0), (40.0, 10.0), (1056.0, 40.0)])),
        },
        Fixture {
            name: "anthropic messages json, cache write and read",
            provider: "anthropic",
            model: "claude-sonnet-4-20250514",
            content_type: "application/json",
            body: br#"{"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-4-20250514",
              "content":[{"type":"text","text":"Hi"}],"stop_reason":"end_turn","stop_sequence":null,
              "usage":{"input_tokens":20,"cache_creation_input_tokens":1000,"cache_read_input_tokens":3000,
              "output_tokens":200,"service_tier":"standard"}}"#
                .to_vec(),
            usage: Usage {
                tokens_cached: Some(3000),
                tokens_cache_write: Some(1000),
                ..usage(4020, 200)
            },
            cost: Some(usd(&[(20.0, 3.0), (1000.0, 3.75), (3000.0, 0.3), (200.0, 15.0)])),
        },
        Fixture {
            name: "anthropic messages stream, cache read",
            provider: "anthropic",
            model: "claude-3-5-haiku-20241022",
            content_type: "text/event-stream",
            body: sse(&[
                (Some("message_start"), r#"{"type":"message_start","message":{"id":"msg_2","type":"message","role":"assistant","content":[],"model":"claude-3-5-haiku-20241022","usage":{"input_tokens":25,"cache_creation_input_tokens":0,"cache_read_input_tokens":100,"output_tokens":1}}}"#),
                (Some("content_block_start"), r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#),
                (Some("ping"), r#"{"type": "ping"}"#),
                (Some("content_block_delta"), r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}}"#),
                (Some("content_block_stop"), r#"{"type":"content_block_stop","index":0}"#),
                (Some("message_delta"), r#"{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":15}}"#),
                (Some("message_stop"), r#"{"type":"message_stop"}"#),
            ]),
            usage: Usage {
                tokens_cached: Some(100),
                tokens_cache_write: Some(0),
                ..usage(125, 15)
            },
            cost: Some(usd(&[(25.0, 0.8), (100.0, 0.08), (15.0, 4.0)])),
        },
        Fixture {
            name: "gemini generateContent json, thinking and cached",
            provider: "google-ai-studio",
            model: "gemini-2.5-flash",
            content_type: "application/json; charset=UTF-8",
            body: br#"{"candidates":[{"content":{"parts":[{"text":"Hi"}],"role":"model"},"finishReason":"STOP","index":0}],
              "usageMetadata":{"promptTokenCount":120,"candidatesTokenCount":40,"totalTokenCount":285,
              "cachedContentTokenCount":100,"thoughtsTokenCount":25,
              "promptTokensDetails":[{"modality":"TEXT","tokenCount":120}]},
              "modelVersion":"gemini-2.5-flash","responseId":"r1"}"#
                .to_vec(),
            usage: Usage {
                tokens_cached: Some(100),
                tokens_reasoning: Some(25),
                ..usage(120, 65)
            },
            cost: Some(usd(&[(20.0, 0.3), (100.0, 0.075), (65.0, 2.5)])),
        },
        Fixture {
            name: "gemini streamGenerateContent alt=sse",
            provider: "google-ai-studio",
            model: "gemini-2.0-flash",
            content_type: "text/event-stream",
            body: sse(&[
                (None, r#"{"candidates":[{"content":{"parts":[{"text":"Hel"}],"role":"model"},"index":0}],"usageMetadata":{"promptTokenCount":10,"candidatesTokenCount":2,"totalTokenCount":12},"modelVersion":"gemini-2.0-flash"}"#),
                (None, r#"{"candidates":[{"content":{"parts":[{"text":"lo"}],"role":"model"},"finishReason":"STOP","index":0}],"usageMetadata":{"promptTokenCount":10,"candidatesTokenCount":30,"totalTokenCount":40},"modelVersion":"gemini-2.0-flash"}"#),
            ]),
            usage: usage(10, 30),
            cost: Some(usd(&[(10.0, 0.1), (30.0, 0.4)])),
        },
        Fixture {
            name: "cohere v2 embed json",
            provider: "cohere",
            model: "embed-v4.0",
            content_type: "application/json",
            body: br#"{"id":"e1","embeddings":{"float":[[0.1,0.2],[0.3,0.4]]},"texts":["a","b"],
              "meta":{"api_version":{"version":"2"},"billed_units":{"input_tokens":12}}}"#
                .to_vec(),
            usage: Usage {
                tokens_out: None,
                ..usage(12, 0)
            },
            cost: Some(usd(&[(12.0, 0.12)])),
        },
        Fixture {
            name: "cohere v2 chat json",
            provider: "cohere",
            model: "command-r-plus",
            content_type: "application/json",
            body: br#"{"id":"c1","finish_reason":"COMPLETE","message":{"role":"assistant","content":[{"type":"text","text":"Hi"}]},
              "usage":{"billed_units":{"input_tokens":5,"output_tokens":418},"tokens":{"input_tokens":71,"output_tokens":420}}}"#
                .to_vec(),
            usage: usage(5, 418),
            cost: Some(usd(&[(5.0, 2.5), (418.0, 10.0)])),
        },
        Fixture {
            name: "cohere v2 chat stream",
            provider: "cohere",
            model: "command-a-03-2025",
            content_type: "text/event-stream",
            body: sse(&[
                (Some("message-start"), r#"{"id":"c2","type":"message-start","delta":{"message":{"role":"assistant","content":[]}}}"#),
                (Some("content-delta"), r#"{"type":"content-delta","index":0,"delta":{"message":{"content":{"text":"Hi"}}}}"#),
                (Some("message-end"), r#"{"type":"message-end","delta":{"finish_reason":"COMPLETE","usage":{"billed_units":{"input_tokens":7,"output_tokens":33},"tokens":{"input_tokens":201,"output_tokens":35}}}}"#),
            ]),
            usage: usage(7, 33),
            cost: Some(usd(&[(7.0, 2.5), (33.0, 10.0)])),
        },
        Fixture {
            name: "mistral chat stream, usage in its last chunk unasked",
            provider: "mistral",
            model: "mistral-small-latest",
            content_type: "text/event-stream",
            body: sse(&[
                (None, r#"{"id":"m","object":"chat.completion.chunk","model":"mistral-small-latest","choices":[{"index":0,"delta":{"role":"assistant","content":"Hi"},"finish_reason":null}]}"#),
                (None, r#"{"id":"m","object":"chat.completion.chunk","model":"mistral-small-latest","choices":[{"index":0,"delta":{"content":""},"finish_reason":"stop"}],"usage":{"prompt_tokens":14,"total_tokens":24,"completion_tokens":10}}"#),
                (None, "[DONE]"),
            ]),
            usage: usage(14, 10),
            cost: Some(usd(&[(14.0, 0.1), (10.0, 0.3)])),
        },
        Fixture {
            name: "bedrock converse json",
            provider: "aws-bedrock",
            model: "anthropic.claude-3-haiku-20240307-v1:0",
            content_type: "application/json",
            body: format!(
                r#"{{"output":{{"message":{{"role":"assistant","content":[{{"text":"Paris."}}]}}}},"stopReason":"end_turn","usage":{bedrock_usage},"metrics":{{"latencyMs":212}}}}"#
            )
            .into_bytes(),
            usage: bedrock_expected,
            cost: Some(bedrock_cost),
        },
        Fixture {
            name: "bedrock converse-stream event stream",
            provider: "aws-bedrock",
            model: "anthropic.claude-3-haiku-20240307-v1:0",
            content_type: "application/vnd.amazon.eventstream",
            body: bedrock_stream,
            usage: bedrock_expected,
            cost: Some(bedrock_cost),
        },
        Fixture {
            name: "workers ai json (no per-token price: unpriced)",
            provider: "workers-ai",
            model: "@cf/meta/llama-3.1-8b-instruct",
            content_type: "application/json",
            body: br#"{"result":{"response":"hi","usage":{"prompt_tokens":9,"completion_tokens":4,"total_tokens":13}},"success":true,"errors":[],"messages":[]}"#
                .to_vec(),
            usage: usage(9, 4),
            cost: None,
        },
    ]
}

/// The shipped catalog plus the Bedrock entry a user would add.
fn prices() -> PriceTable {
    let mut t = PriceTable::with_defaults();
    t.set(Price {
        provider: "aws-bedrock".into(),
        model: "anthropic.claude-3-haiku-20240307-v1:0".into(),
        input_per_million: 0.25,
        output_per_million: 1.25,
        cached_input_per_million: Some(0.03),
        cache_write_per_million: Some(0.3),
        image_input_per_million: None,
    });
    t
}

fn read(f: &Fixture, pieces: &[&[u8]]) -> Usage {
    let mut r = UsageReader::for_content_type(Some(f.content_type));
    for p in pieces {
        r.feed(p);
    }
    r.finish()
}

#[test]
fn every_fixture_is_read_and_billed_exactly() {
    let prices = prices();
    let (mut want_total, mut got_total) = (0.0, 0.0);
    for f in corpus() {
        let u = read(&f, &[&f.body]);
        assert_eq!(u, f.usage, "{}", f.name);
        let cost = prices.cost(f.provider, Some(f.model), &u);
        match (cost, f.cost) {
            (Some(got), Some(want)) => {
                assert!((got - want).abs() < 1e-12, "{}: {got} vs {want}", f.name);
                got_total += got;
                want_total += want;
            }
            (None, None) => {}
            other => panic!("{}: cost {other:?}", f.name),
        }
    }
    // The whole corpus, to the micro-dollar (and far below).
    assert!(
        (got_total - want_total).abs() < 1e-9,
        "{got_total} vs {want_total}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// However a transport cuts an answer's bytes, and whether its lines end in `\n` or `\r\n`,
    /// the usage read is the same.
    #[test]
    fn any_cut_of_any_fixture_gives_the_same_usage(
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..24),
        crlf in any::<bool>(),
    ) {
        for f in corpus() {
            let body = if crlf && f.content_type.starts_with("text/event-stream") {
                String::from_utf8_lossy(&f.body).replace('\n', "\r\n").into_bytes()
            } else {
                f.body.clone()
            };
            let mut at: Vec<usize> = cuts.iter().map(|i| i.index(body.len() + 1)).collect();
            at.push(0);
            at.push(body.len());
            at.sort_unstable();
            let pieces: Vec<&[u8]> = at.windows(2).map(|w| &body[w[0]..w[1]]).collect();
            prop_assert_eq!(read(&f, &pieces), f.usage, "{} cut at {:?}", f.name, at);
        }
    }
}
