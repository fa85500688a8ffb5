//! Chat request bodies: read and rewrite the text a model is sent.
//!
//! [`ChatRequest`] knows where text lives in the JSON bodies of
//! OpenAI chat completions (`messages[].content` as a string or an array of
//! `{"type": "text", "text": …}` parts, assistant `tool_calls[].function.arguments`),
//! OpenAI legacy completions (`prompt`, a string or an array of strings) and
//! Anthropic messages (`system` as a string or text blocks,
//! `messages[].content` as a string or blocks: `text`, the `content` of
//! `tool_result`, the string values of `tool_use` `input`), OpenAI Responses
//! (`instructions`; `input` as a string or items: message contents with
//! `input_text`/`output_text` parts, function calls' `arguments`, their `output`),
//! embeddings (`input`, a string or strings; token arrays are not text), Gemini
//! (`systemInstruction` and `contents[].parts[]`: `text`, `functionCall.args`,
//! `functionResponse.response`) and Bedrock Converse (untyped blocks: `text`,
//! `toolUse.input`, `toolResult.content` as blocks, `json`).
//! It does not know routes or providers: the caller decides which bodies to
//! treat as chats. Images, audio and other non-text parts are left alone.

use serde_json::Value;

/// A JSON request body with helpers for its model and its text pieces.
///
/// ```
/// use aigw_plugin_sdk::chat::ChatRequest;
/// let mut chat = ChatRequest::parse(br#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}"#).unwrap();
/// chat.for_each_text_mut(|_role, text| text.make_ascii_uppercase());
/// assert_eq!(chat.value()["messages"][0]["content"], "HI");
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct ChatRequest {
    body: Value,
}

/// The visitors the walkers call: role of the piece, then the piece.
type Visit<'a> = dyn FnMut(&str, &mut String) + 'a;
type VisitRef<'a> = dyn FnMut(&str, &str) + 'a;

impl ChatRequest {
    /// Parses a request body; it must be a JSON object.
    ///
    /// ```
    /// use aigw_plugin_sdk::chat::ChatRequest;
    /// assert!(ChatRequest::parse(br#"{"prompt":"hi"}"#).is_ok());
    /// assert!(ChatRequest::parse(b"[1, 2]").is_err());
    /// assert!(ChatRequest::parse(b"not json").is_err());
    /// ```
    pub fn parse(body: &[u8]) -> Result<ChatRequest, String> {
        let value: Value =
            serde_json::from_slice(body).map_err(|e| format!("request body is not JSON: {e}"))?;
        ChatRequest::from_value(value)
    }

    /// Wraps an already parsed body; it must be a JSON object.
    ///
    /// ```
    /// use aigw_plugin_sdk::chat::ChatRequest;
    /// assert!(ChatRequest::from_value(serde_json::json!({"model": "m"})).is_ok());
    /// assert!(ChatRequest::from_value(serde_json::json!("text")).is_err());
    /// ```
    pub fn from_value(body: Value) -> Result<ChatRequest, String> {
        if body.is_object() {
            Ok(ChatRequest { body })
        } else {
            Err("request body is not a JSON object".into())
        }
    }

    /// The body's `model`, when it is a string.
    ///
    /// ```
    /// use aigw_plugin_sdk::chat::ChatRequest;
    /// let chat = ChatRequest::parse(br#"{"model":"claude-3-5-haiku"}"#).unwrap();
    /// assert_eq!(chat.model(), Some("claude-3-5-haiku"));
    /// assert_eq!(ChatRequest::parse(b"{}").unwrap().model(), None);
    /// ```
    pub fn model(&self) -> Option<&str> {
        self.body.get("model").and_then(Value::as_str)
    }

    /// Sets (or adds) the body's `model`.
    ///
    /// ```
    /// use aigw_plugin_sdk::chat::ChatRequest;
    /// let mut chat = ChatRequest::parse(br#"{"model":"gpt-4o"}"#).unwrap();
    /// chat.set_model("gpt-4o-mini");
    /// assert_eq!(chat.model(), Some("gpt-4o-mini"));
    /// ```
    pub fn set_model(&mut self, model: &str) {
        if let Some(obj) = self.body.as_object_mut() {
            obj.insert("model".into(), Value::String(model.to_string()));
        }
    }

    /// Calls `f(role, text)` for every text piece, in body order: Anthropic
    /// `system` (role `"system"`), then each message (its `role`, `""` when
    /// missing), then legacy `prompt` (role `"user"`), then OpenAI Responses'
    /// `instructions` and `input` (embeddings' `input` too), then Gemini's
    /// `systemInstruction` and `contents`. Parts typed `text`, `input_text` or
    /// `output_text` and untyped parts (Gemini, Bedrock Converse) are read, with
    /// tool calls' arguments and tools' results.
    ///
    /// ```
    /// use aigw_plugin_sdk::chat::ChatRequest;
    /// let chat = ChatRequest::parse(br#"{"system":"be brief","messages":[
    ///     {"role":"user","content":[{"type":"text","text":"hello"},{"type":"image","source":{}}]}]}"#).unwrap();
    /// let mut seen = Vec::new();
    /// chat.for_each_text(|role, text| seen.push(format!("{role}: {text}")));
    /// assert_eq!(seen, ["system: be brief", "user: hello"]);
    /// ```
    pub fn for_each_text(&self, mut f: impl FnMut(&str, &str)) {
        walk_ref(&self.body, &mut f);
    }

    /// Calls `f(role, text)` for every text piece, letting it rewrite the
    /// piece in place. Same pieces and order as [`ChatRequest::for_each_text`].
    ///
    /// ```
    /// use aigw_plugin_sdk::chat::ChatRequest;
    /// let mut chat = ChatRequest::parse(br#"{"prompt":["a secret","another secret"]}"#).unwrap();
    /// chat.for_each_text_mut(|_, text| *text = text.replace("secret", "[REDACTED]"));
    /// assert_eq!(chat.value()["prompt"][1], "another [REDACTED]");
    /// ```
    pub fn for_each_text_mut(&mut self, mut f: impl FnMut(&str, &mut String)) {
        walk(&mut self.body, &mut f);
    }

    /// The whole body.
    ///
    /// ```
    /// use aigw_plugin_sdk::chat::ChatRequest;
    /// let chat = ChatRequest::parse(br#"{"stream":true}"#).unwrap();
    /// assert_eq!(chat.value()["stream"], true);
    /// ```
    pub fn value(&self) -> &Value {
        &self.body
    }

    /// The whole body, mutable (for fields these helpers do not cover).
    ///
    /// ```
    /// use aigw_plugin_sdk::chat::ChatRequest;
    /// let mut chat = ChatRequest::parse(b"{}").unwrap();
    /// chat.value_mut()["temperature"] = serde_json::json!(0.2);
    /// assert_eq!(chat.value()["temperature"], 0.2);
    /// ```
    pub fn value_mut(&mut self) -> &mut Value {
        &mut self.body
    }

    /// The body, serialized compactly (keys in sorted order).
    ///
    /// ```
    /// use aigw_plugin_sdk::chat::ChatRequest;
    /// let chat = ChatRequest::parse(br#"{ "model": "m", "messages": [] }"#).unwrap();
    /// assert_eq!(chat.to_bytes(), br#"{"messages":[],"model":"m"}"#);
    /// ```
    pub fn to_bytes(&self) -> Vec<u8> {
        self.body.to_string().into_bytes()
    }
}

/// Generates a walker over `&Value` and one over `&mut Value` from one body,
/// so reading and rewriting always visit the same pieces in the same order.
macro_rules! walkers {
    ($walk:ident, $content:ident, $strings:ident, $value:ty, $visit:ty, $get:ident, $pointer:ident) => {
        /// Every text piece of a body, in the order `for_each_text` documents.
        fn $walk(body: $value, f: &mut $visit) {
            if let Some(system) = body.$get("system") {
                $content(system, "system", f);
            }
            if let Some(Value::Array(messages)) = body.$get("messages") {
                for message in messages {
                    let role = message
                        .get("role")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string();
                    if let Some(c) = message.$get("content") {
                        $content(c, &role, f);
                    }
                    if let Some(Value::Array(calls)) = message.$get("tool_calls") {
                        for call in calls {
                            if let Some(Value::String(args)) = call.$pointer("/function/arguments")
                            {
                                f(&role, args);
                            }
                        }
                    }
                }
            }
            match body.$get("prompt") {
                Some(Value::String(s)) => f("user", s),
                Some(Value::Array(items)) => {
                    for item in items {
                        if let Value::String(s) = item {
                            f("user", s);
                        }
                    }
                }
                _ => {}
            }
            // OpenAI Responses: `instructions`, then `input` (a string, or items: messages,
            // function calls' arguments, their outputs); embeddings' `input` alike.
            if let Some(Value::String(s)) = body.$get("instructions") {
                f("system", s);
            }
            match body.$get("input") {
                Some(Value::String(s)) => f("user", s),
                Some(Value::Array(items)) => {
                    for item in items {
                        if let Value::String(s) = item {
                            f("user", s);
                            continue;
                        }
                        let role = item
                            .get("role")
                            .and_then(Value::as_str)
                            .unwrap_or("user")
                            .to_string();
                        if let Some(c) = item.$get("content") {
                            $content(c, &role, f);
                        }
                        if let Some(Value::String(args)) = item.$get("arguments") {
                            f("assistant", args);
                        }
                        if let Some(output) = item.$get("output") {
                            $content(output, "tool", f);
                        }
                    }
                }
                _ => {}
            }
            // Gemini: `systemInstruction` (either spelling), then `contents`.
            for key in ["systemInstruction", "system_instruction"] {
                if let Some(parts) = body.$pointer(&format!("/{key}/parts")) {
                    $content(parts, "system", f);
                }
            }
            if let Some(Value::Array(contents)) = body.$get("contents") {
                for c in contents {
                    let role = c
                        .get("role")
                        .and_then(Value::as_str)
                        .unwrap_or("user")
                        .to_string();
                    if let Some(parts) = c.$get("parts") {
                        $content(parts, &role, f);
                    }
                }
            }
        }

        /// A `content` (or `system`): a string, or an array of typed parts/blocks.
        fn $content(value: $value, role: &str, f: &mut $visit) {
            match value {
                Value::String(s) => f(role, s),
                Value::Array(parts) => {
                    for part in parts {
                        match part.get("type").and_then(Value::as_str) {
                            Some("text" | "input_text" | "output_text") => {
                                if let Some(Value::String(s)) = part.$get("text") {
                                    f(role, s);
                                }
                            }
                            // Untyped parts: Gemini's and Bedrock Converse's (`text`, a tool
                            // call's arguments, a tool's result).
                            None => {
                                if let Some(Value::String(s)) = part.$get("text") {
                                    f(role, s);
                                }
                                for at in [
                                    "/functionCall/args",
                                    "/functionResponse/response",
                                    "/toolUse/input",
                                    "/json",
                                ] {
                                    if let Some(v) = part.$pointer(at) {
                                        $strings(v, role, f);
                                    }
                                }
                                // A tool's result is blocks again: text and JSON are read,
                                // images' and documents' bytes are not.
                                if let Some(v) = part.$pointer("/toolResult/content") {
                                    $content(v, role, f);
                                }
                            }
                            Some("tool_result") => {
                                if let Some(c) = part.$get("content") {
                                    $content(c, role, f);
                                }
                            }
                            Some("tool_use") => {
                                if let Some(input) = part.$get("input") {
                                    $strings(input, role, f);
                                }
                            }
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }

        /// Every string value inside a JSON value (tool inputs).
        fn $strings(value: $value, role: &str, f: &mut $visit) {
            match value {
                Value::String(s) => f(role, s),
                Value::Array(items) => {
                    for v in items {
                        $strings(v, role, f);
                    }
                }
                Value::Object(map) => {
                    for (_, v) in map {
                        $strings(v, role, f);
                    }
                }
                _ => {}
            }
        }
    };
}

walkers!(
    walk,
    content,
    strings,
    &mut Value,
    Visit<'_>,
    get_mut,
    pointer_mut
);
walkers!(
    walk_ref,
    content_ref,
    strings_ref,
    &Value,
    VisitRef<'_>,
    get,
    pointer
);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The pieces `for_each_text` visits, checked against `for_each_text_mut`.
    fn pieces(body: Value) -> Vec<(String, String)> {
        let mut chat = ChatRequest::from_value(body).unwrap();
        let mut out = Vec::new();
        chat.for_each_text(|r, t| out.push((r.to_string(), t.to_string())));
        let mut out_mut = Vec::new();
        chat.for_each_text_mut(|r, t| out_mut.push((r.to_string(), t.clone())));
        assert_eq!(out, out_mut);
        out
    }

    fn pair(r: &str, t: &str) -> (String, String) {
        (r.to_string(), t.to_string())
    }

    #[test]
    fn openai_string_and_part_contents() {
        let got = pieces(json!({"model": "gpt-4o", "messages": [
            {"role": "system", "content": "sys"},
            {"role": "user", "content": [
                {"type": "text", "text": "one"},
                {"type": "image_url", "image_url": {"url": "data:..."}},
                {"type": "text", "text": "two"}]},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{\"a\":1}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "result"}]}));
        assert_eq!(
            got,
            [
                pair("system", "sys"),
                pair("user", "one"),
                pair("user", "two"),
                pair("assistant", "{\"a\":1}"),
                pair("tool", "result"),
            ]
        );
    }

    #[test]
    fn responses_gemini_bedrock_and_embeddings_bodies() {
        let got = pieces(
            json!({"model": "gpt-4o", "instructions": "be brief", "input": [
            "plain",
            {"role": "user", "content": [{"type": "input_text", "text": "mail a@b.co"},
                {"type": "input_image", "image_url": "data:..."}]},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "ok"}]},
            {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{\"to\":\"x\"}"},
            {"type": "function_call_output", "call_id": "c", "output": "done"}]}),
        );
        assert_eq!(
            got,
            [
                pair("system", "be brief"),
                pair("user", "plain"),
                pair("user", "mail a@b.co"),
                pair("assistant", "ok"),
                pair("assistant", "{\"to\":\"x\"}"),
                pair("tool", "done"),
            ]
        );
        let got = pieces(
            json!({"systemInstruction": {"parts": [{"text": "sys"}]}, "contents": [
            {"role": "user", "parts": [{"text": "q"}, {"inlineData": {"data": "AAAA"}}]},
            {"role": "model", "parts": [{"functionCall": {"name": "f", "args": {"city": "Paris"}}}]},
            {"role": "user", "parts": [{"functionResponse": {"name": "f", "response": {"t": "20C"}}}]}]}),
        );
        assert_eq!(
            got,
            [
                pair("system", "sys"),
                pair("user", "q"),
                pair("model", "Paris"),
                pair("user", "20C"),
            ]
        );
        // Bedrock Converse: untyped content blocks.
        let got = pieces(json!({"system": [{"text": "s"}], "messages": [
            {"role": "user", "content": [{"text": "hi"}]},
            {"role": "assistant", "content": [{"toolUse": {"toolUseId": "t", "name": "n", "input": {"q": "x"}}}]},
            {"role": "user", "content": [{"toolResult": {"toolUseId": "t", "content": [{"text": "r"},
                {"json": {"k": "j"}},
                {"image": {"format": "png", "source": {"bytes": "iVBORw0KGgoAAAANSUhEUgAAAAEAAAAB"}}}]}}]}]}));
        assert_eq!(
            got,
            [
                pair("system", "s"),
                pair("user", "hi"),
                pair("assistant", "x"),
                pair("user", "r"),
                pair("user", "j"),
            ]
        );
        let got = pieces(json!({"model": "text-embedding-3-small", "input": ["one", "two"]}));
        assert_eq!(got, [pair("user", "one"), pair("user", "two")]);
        // Token arrays are not text.
        assert!(pieces(json!({"input": [[1, 2, 3]]})).is_empty());
    }

    #[test]
    fn anthropic_system_blocks_and_tool_blocks() {
        let got = pieces(
            json!({"model": "claude", "system": [{"type": "text", "text": "s1"}],
            "messages": [
                {"role": "user", "content": "q"},
                {"role": "assistant", "content": [
                    {"type": "text", "text": "a"},
                    {"type": "tool_use", "id": "t", "name": "n", "input": {"to": "x", "n": 2, "tags": ["y"]}}]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "t", "content": [{"type": "text", "text": "r"}]},
                    {"type": "tool_result", "tool_use_id": "t", "content": "r2"}]}]}),
        );
        assert_eq!(
            got,
            [
                pair("system", "s1"),
                pair("user", "q"),
                pair("assistant", "a"),
                pair("assistant", "y"),
                pair("assistant", "x"),
                pair("user", "r"),
                pair("user", "r2"),
            ]
        );
    }

    #[test]
    fn legacy_prompt_string_and_list() {
        assert_eq!(pieces(json!({"prompt": "p"})), [pair("user", "p")]);
        assert_eq!(
            pieces(json!({"prompt": ["a", 1, "b"]})),
            [pair("user", "a"), pair("user", "b")]
        );
        // An embeddings (or Responses) `input` is text sent to a provider too.
        assert_eq!(
            pieces(json!({"input": "embed me"})),
            [pair("user", "embed me")]
        );
    }

    #[test]
    fn rewriting_keeps_everything_else() {
        let mut chat = ChatRequest::parse(
            br#"{"model":"m","temperature":0.5,"messages":[{"role":"user","content":[{"type":"text","text":"hi"},{"type":"image_url","image_url":{"url":"u"}}]}]}"#,
        )
        .unwrap();
        chat.for_each_text_mut(|_, t| t.push('!'));
        chat.set_model("n");
        let back: Value = serde_json::from_slice(&chat.to_bytes()).unwrap();
        assert_eq!(
            back,
            json!({"model":"n","temperature":0.5,"messages":[{"role":"user","content":[
                {"type":"text","text":"hi!"},{"type":"image_url","image_url":{"url":"u"}}]}]})
        );
    }
}
