//! OpenAI embeddings ↔ Cohere v2 embed (`POST /v2/embed`), for the compat endpoint.
//!
//! The request's `input` (a string or a list of strings) becomes `texts`; `dimensions` becomes
//! `output_dimension`; `input_type` (Cohere's own field, which OpenAI's API does not have) is
//! passed through and defaults to `search_document`. Cohere is always asked for floats; when
//! the client asked for `encoding_format: "base64"` (the OpenAI SDKs do by default) each vector
//! goes back as OpenAI encodes it, little-endian float32 in base64. Usage comes from Cohere's
//! `meta.billed_units.input_tokens`.

use base64::Engine as _;
use serde_json::{Value, json};

/// The Cohere v2 embed request for an OpenAI embeddings request to `model`.
pub fn embed_request(openai: &Value, model: &str) -> Result<Value, String> {
    let texts: Vec<Value> = match openai.get("input") {
        Some(Value::String(s)) => vec![Value::String(s.clone())],
        Some(Value::Array(items)) if items.iter().all(Value::is_string) && !items.is_empty() => {
            items.clone()
        }
        Some(Value::Array(_)) => {
            return Err(
                "input: Cohere embeds text only; token arrays need OpenAI's tokenizer (send strings)"
                    .into(),
            );
        }
        _ => return Err("input: expected a string or a non-empty list of strings".into()),
    };
    let mut out = json!({
        "model": model,
        "texts": texts,
        "input_type": openai.get("input_type").cloned().unwrap_or(json!("search_document")),
        "embedding_types": ["float"],
    });
    if let Some(d) = openai.get("dimensions") {
        out["output_dimension"] = d.clone();
    }
    Ok(out)
}

/// Whether the client asked for base64 vectors.
pub fn wants_base64(openai: &Value) -> bool {
    openai.get("encoding_format").and_then(Value::as_str) == Some("base64")
}

/// Cohere's embed answer in OpenAI's shape; `None` when it is not one.
pub fn embed_response(cohere: &Value, model: &str, base64: bool) -> Option<Value> {
    let vectors = cohere.pointer("/embeddings/float")?.as_array()?;
    let data: Vec<Value> = vectors
        .iter()
        .enumerate()
        .map(|(index, v)| {
            let embedding = if base64 {
                let mut bytes = Vec::with_capacity(v.as_array().map_or(0, Vec::len) * 4);
                for x in v.as_array().into_iter().flatten() {
                    bytes.extend_from_slice(&(x.as_f64().unwrap_or(0.0) as f32).to_le_bytes());
                }
                Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                v.clone()
            };
            json!({"object": "embedding", "index": index, "embedding": embedding})
        })
        .collect();
    let tokens = cohere
        .pointer("/meta/billed_units/input_tokens")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    Some(json!({
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_translate_and_token_arrays_are_refused() {
        let r = embed_request(
            &json!({"model": "cohere/embed-v4.0", "input": "hi", "dimensions": 256}),
            "embed-v4.0",
        )
        .unwrap();
        assert_eq!(r["texts"], json!(["hi"]));
        assert_eq!(r["input_type"], "search_document");
        assert_eq!(r["output_dimension"], 256);
        assert_eq!(r["embedding_types"], json!(["float"]));
        let r = embed_request(
            &json!({"input": ["a", "b"], "input_type": "search_query"}),
            "m",
        )
        .unwrap();
        assert_eq!(r["texts"], json!(["a", "b"]));
        assert_eq!(r["input_type"], "search_query");
        assert!(embed_request(&json!({"input": [1, 2, 3]}), "m").is_err());
        assert!(embed_request(&json!({"input": []}), "m").is_err());
        assert!(embed_request(&json!({}), "m").is_err());
    }

    #[test]
    fn answers_translate_as_floats_or_openai_base64() {
        let cohere = json!({"id": "x", "embeddings": {"float": [[0.5, -1.0], [2.0, 0.25]]},
            "texts": ["a", "b"], "meta": {"billed_units": {"input_tokens": 7}}});
        let floats = embed_response(&cohere, "embed-v4.0", false).unwrap();
        assert_eq!(floats["data"][1]["embedding"], json!([2.0, 0.25]));
        assert_eq!(floats["data"][1]["index"], 1);
        assert_eq!(floats["usage"]["prompt_tokens"], 7);
        let b64 = embed_response(&cohere, "embed-v4.0", true).unwrap();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64["data"][0]["embedding"].as_str().unwrap())
            .unwrap();
        let back: Vec<f32> = bytes
            .chunks(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        assert_eq!(back, vec![0.5, -1.0]);
        assert!(embed_response(&json!({"message": "bad"}), "m", false).is_none());
    }
}
