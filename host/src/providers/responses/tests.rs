//! The Responses translation's unit tests.
use super::*;

#[test]
fn requests_translate_instructions_items_and_tools() {
    let req = json!({
        "model": "anthropic/claude-3-5-haiku", "instructions": "be terse", "max_output_tokens": 50,
        "stream": true,
        "tools": [{"type": "function", "name": "weather", "parameters": {"type": "object"}},
                  {"type": "web_search"}],
        "input": [
            {"role": "user", "content": [{"type": "input_text", "text": "weather?"}]},
            {"type": "function_call", "call_id": "c1", "name": "weather", "arguments": "{}"},
            {"type": "function_call", "call_id": "c2", "name": "weather", "arguments": "{\"x\":1}"},
            {"type": "function_call_output", "call_id": "c1", "output": "18C"},
            {"type": "function_call_output", "call_id": "c2", "output": "19C"},
            {"type": "reasoning", "summary": []},
            {"role": "developer", "content": "answer in French"},
        ],
    });
    let out = request_to_chat(&req, "claude-3-5-haiku").unwrap();
    let m = out["messages"].as_array().unwrap();
    assert_eq!(m[0], json!({"role": "system", "content": "be terse"}));
    assert_eq!(m[1], json!({"role": "user", "content": "weather?"}));
    assert_eq!(m[2]["tool_calls"].as_array().unwrap().len(), 2);
    assert_eq!(m[3]["tool_call_id"], "c1");
    assert_eq!(m[4]["content"], "19C");
    assert_eq!(m[5]["role"], "system");
    assert_eq!(out["max_tokens"], 50);
    assert_eq!(out["tools"].as_array().unwrap().len(), 1);
    assert_eq!(out["stream_options"]["include_usage"], true);
    let err = request_to_chat(
        &json!({"input": "hi", "previous_response_id": "resp_1"}),
        "m",
    )
    .unwrap_err();
    assert!(err.starts_with("previous_response_id"), "{err}");
}

#[test]
fn chat_answers_become_response_objects() {
    let resp = json!({"id": "c1", "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
        "role": "assistant", "content": "checking",
        "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": "{}"}}]}}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 4}});
    let out = chat_to_response(&resp, "m", 1);
    assert_eq!(out["object"], "response");
    assert_eq!(out["status"], "completed");
    assert_eq!(out["output"][0]["content"][0]["text"], "checking");
    assert_eq!(out["output"][1]["type"], "function_call");
    assert_eq!(out["output"][1]["call_id"], "call_1");
    assert_eq!(out["usage"]["total_tokens"], 14);
}

#[test]
fn streams_translate_to_responses_events_whatever_the_cuts() {
    let chunk = |delta: Value, finish: Value| {
        format!(
            "data: {}\n\n",
            json!({"id": "c1", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
        )
    };
    let stream = [
        chunk(json!({"role": "assistant", "content": ""}), Value::Null),
        chunk(json!({"content": "Hel"}), Value::Null),
        chunk(json!({"content": "lo"}), Value::Null),
        chunk(json!({"tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "weather", "arguments": ""}}]}), Value::Null),
        chunk(json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"city\":"}}]}), Value::Null),
        chunk(json!({"tool_calls": [{"index": 0, "function": {"arguments": "\"Paris\"}"}}]}), Value::Null),
        chunk(json!({}), json!("tool_calls")),
        format!("data: {}\n\n", json!({"id": "c1", "choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 7}})),
        "data: [DONE]\n\n".to_string(),
    ]
    .concat();
    let whole = StreamToResponses::new("m", 1).feed(stream.as_bytes());
    for cut in [1, 5, 17] {
        let mut t = StreamToResponses::new("m", 1);
        let pieces: String = stream.as_bytes().chunks(cut).map(|c| t.feed(c)).collect();
        assert_eq!(pieces, whole, "cut {cut}");
        assert!(t.finished());
    }
    let events: Vec<Value> = whole
        .split("\n\n")
        .filter_map(|e| e.lines().find_map(|l| l.strip_prefix("data: ")))
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let names: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.output_item.added",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.done",
            "response.output_item.done",
            "response.completed"
        ]
    );
    let seq: Vec<u64> = events
        .iter()
        .map(|e| e["sequence_number"].as_u64().unwrap())
        .collect();
    assert_eq!(seq, (0..15).collect::<Vec<u64>>());
    let done = events.last().unwrap();
    assert_eq!(
        done["response"]["output"][1]["arguments"],
        r#"{"city":"Paris"}"#
    );
    assert_eq!(done["response"]["usage"]["output_tokens"], 7);
}
