//! OpenAI chat completion chunks as the stream translators write them (Anthropic, Gemini and
//! Bedrock answers into OpenAI's stream shape).

use serde_json::{Value, json};

/// Writes one stream's chunks: its id, model and creation time on each.
#[derive(Debug, Clone)]
pub struct ChunkWriter {
    pub id: String,
    pub model: String,
    pub created: u64,
}

impl ChunkWriter {
    /// A writer for a stream answering for `model` (its id `chatcmpl-aigw` until the provider
    /// gives one).
    pub fn new(model: &str, created: u64) -> Self {
        ChunkWriter {
            id: "chatcmpl-aigw".into(),
            model: model.to_string(),
            created,
        }
    }

    /// One `data:` event with a delta for choice 0 (and its finish reason, or null).
    pub fn delta(&self, delta: Value, finish: Value) -> String {
        let c = json!({"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                       "model": self.model, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
        format!("data: {c}\n\n")
    }

    /// The end of a stream: the finish reason, the usage chunk when the client asked for it
    /// (`stream_options.include_usage`), then `[DONE]`.
    pub fn end(&self, finish: Value, usage: Option<Value>) -> String {
        let mut out = self.delta(json!({}), finish);
        if let Some(usage) = usage {
            let c = json!({"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                           "model": self.model, "choices": [], "usage": usage});
            out.push_str(&format!("data: {c}\n\n"));
        }
        out.push_str("data: [DONE]\n\n");
        out
    }
}

/// The JSON of each `data:` line of translated output (`[DONE]` left out), for tests.
#[cfg(test)]
pub fn data_values(out: &str) -> Vec<Value> {
    out.lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .filter_map(|d| serde_json::from_str(d).ok())
        .collect()
}
