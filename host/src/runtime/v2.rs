//! The host side of `aigw:filter@0.2.0`: the `fields` and `body` resources a hook call
//! lends its filter, and the adapter between 0.2.0's hooks and the 0.1.0 types the
//! pipeline works with. A 0.2.0 filter's answers come back as 0.1.0 answers (its header
//! edits, made on the resource, as the `header-edits` of a `continue`), so the pipeline
//! treats both versions alike.

use super::bindings::types as v1;
use super::bindings::v2::aigw::filter0_2_0::types as wit;
use super::host::HostState;
use bytes::Bytes;
use wasmtime::component::Resource;

/// A header set lent to one hook call: the pipeline's view, moved in for the call and back
/// after it unchanged, and this filter's edits, recorded beside it (reads see them). The
/// pipeline applies the edits only when the filter answers `continue`, as with 0.1.0's
/// returned edits: a call that fails or answers otherwise leaves the headers as they were.
pub struct Fields {
    list: Vec<v1::Header>,
    edits: v1::HeaderEdits,
    writable: bool,
}

impl Fields {
    /// Lends `list`; `writable` for the head hooks, not for the summary's.
    pub fn new(list: Vec<v1::Header>, writable: bool) -> Self {
        Fields {
            list,
            edits: v1::HeaderEdits {
                set: Vec::new(),
                remove: Vec::new(),
            },
            writable,
        }
    }

    /// The list as lent, and the edits (each name at most once, so the order they are
    /// applied in does not matter).
    pub fn into_parts(self) -> (Vec<v1::Header>, v1::HeaderEdits) {
        (self.list, self.edits)
    }

    fn check(&self, name: &str) -> Result<String, String> {
        if !self.writable {
            return Err("these headers are read-only (the summary's)".to_string());
        }
        let lower = name.to_ascii_lowercase();
        if hyper::header::HeaderName::from_bytes(lower.as_bytes()).is_err() {
            return Err(format!("invalid header name '{name}'"));
        }
        if !self.edited(&lower)
            && self.edits.set.len() + self.edits.remove.len()
                >= crate::pipeline::headers::MAX_HEADER_EDITS
        {
            return Err(format!(
                "more than {} header edits",
                crate::pipeline::headers::MAX_HEADER_EDITS
            ));
        }
        Ok(lower)
    }

    /// Whether this call set or removed `lower`.
    fn edited(&self, lower: &str) -> bool {
        self.edits.set.iter().any(|h| h.name == lower)
            || self.edits.remove.iter().any(|n| n == lower)
    }

    fn forget(&mut self, lower: &str) {
        self.edits.set.retain(|h| h.name != lower);
        self.edits.remove.retain(|n| n != lower);
    }

    fn set(&mut self, name: &str, value: String) -> Result<(), String> {
        let lower = self.check(name)?;
        if hyper::header::HeaderValue::from_str(&value).is_err() {
            return Err(format!("invalid value for header '{name}'"));
        }
        let bytes: usize = self
            .edits
            .set
            .iter()
            .filter(|h| h.name != lower)
            .map(|h| h.name.len() + h.value.len())
            .sum::<usize>()
            + lower.len()
            + value.len();
        if bytes > crate::pipeline::headers::MAX_FILTER_HEADER_BYTES {
            return Err(format!(
                "{bytes} bytes of headers, over the limit of {}",
                crate::pipeline::headers::MAX_FILTER_HEADER_BYTES
            ));
        }
        self.forget(&lower);
        self.edits.set.push(v1::Header { name: lower, value });
        Ok(())
    }

    /// Removes `name`; a name no header can have is already absent (as 0.1.0's edits
    /// treated it).
    fn remove(&mut self, name: &str) -> Result<(), String> {
        if self.writable && hyper::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
            return Ok(());
        }
        let lower = self.check(name)?;
        self.forget(&lower);
        self.edits.remove.push(lower);
        Ok(())
    }

    /// The values of `name` as this call sees them: the lent ones, unless it set or removed
    /// the name.
    fn values(&self, name: &str) -> Vec<&v1::Header> {
        let lower = name.to_ascii_lowercase();
        if self.edited(&lower) {
            return self.edits.set.iter().filter(|h| h.name == lower).collect();
        }
        self.list.iter().filter(|h| h.name == lower).collect()
    }

    /// Every header as this call sees them: the lent ones it did not edit, then the ones it
    /// set (where the pipeline's view puts them).
    fn entries(&self) -> Vec<v1::Header> {
        self.list
            .iter()
            .filter(|h| !self.edited(&h.name))
            .chain(self.edits.set.iter())
            .cloned()
            .collect()
    }
}

/// The request body lent to one `on-request-body` call.
pub struct Body {
    bytes: Bytes,
}

impl Body {
    /// Lends `bytes` (a reference count, not a copy).
    pub fn new(bytes: Bytes) -> Self {
        Body { bytes }
    }
}

/// The top-level `model` of a JSON object body, when it is a string (the last one, when a
/// body names it twice, as providers read it).
pub fn model_of(body: &[u8]) -> Option<String> {
    match serde_json::from_slice::<serde_json::Value>(body).ok()? {
        serde_json::Value::Object(mut o) => match o.remove("model")? {
            serde_json::Value::String(s) => Some(s),
            _ => None,
        },
        _ => None,
    }
}

/// Hex SHA-256 over each prefix and a zero byte, then the body in canonical JSON (keys
/// sorted, no whitespace), or as it is when it is not JSON or holds a float of magnitude
/// 2^53 or more (which may stand for several integers).
pub fn canonical_sha256(prefix: &[String], body: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for part in prefix {
        h.update(part.as_bytes());
        h.update([0u8]);
    }
    match serde_json::from_slice::<serde_json::Value>(body) {
        // serde_json's map is ordered by key (no preserve_order) and parses floats exactly
        // (float_roundtrip), so distinct values keep distinct text.
        Ok(v) if !has_inexact_number(&v) => h.update(v.to_string().as_bytes()),
        _ => h.update(body),
    }
    hex::encode(h.finalize())
}

/// Whether `v` holds a float of magnitude 2^53 or more. Recursion is bounded by serde_json's
/// nesting limit.
fn has_inexact_number(v: &serde_json::Value) -> bool {
    use serde_json::Value;
    const EXACT_FLOAT_LIMIT: f64 = 9_007_199_254_740_992.0;
    match v {
        Value::Number(n) => n.is_f64() && n.as_f64().is_some_and(|f| f.abs() >= EXACT_FLOAT_LIMIT),
        Value::Array(items) => items.iter().any(has_inexact_number),
        Value::Object(map) => map.values().any(has_inexact_number),
        _ => false,
    }
}

impl wit::Host for HostState {}

impl super::bindings::v2::aigw::filter0_2_0::request_local::Host for HostState {
    fn set(&mut self, key: String, value: String) -> wasmtime::Result<bool> {
        Ok(self.set_local(key, value))
    }

    fn get(&mut self, key: String) -> wasmtime::Result<Option<String>> {
        Ok(self.local(&key))
    }
}

impl wit::HostFields for HostState {
    fn get(&mut self, this: Resource<Fields>, name: String) -> wasmtime::Result<Option<String>> {
        let f = self.table().get(&this)?;
        Ok(f.values(&name).first().map(|h| h.value.clone()))
    }

    fn get_all(&mut self, this: Resource<Fields>, name: String) -> wasmtime::Result<Vec<String>> {
        let f = self.table().get(&this)?;
        Ok(f.values(&name).iter().map(|h| h.value.clone()).collect())
    }

    fn has(&mut self, this: Resource<Fields>, name: String) -> wasmtime::Result<bool> {
        let f = self.table().get(&this)?;
        Ok(!f.values(&name).is_empty())
    }

    fn entries(&mut self, this: Resource<Fields>) -> wasmtime::Result<Vec<v1::Header>> {
        Ok(self.table().get(&this)?.entries())
    }

    fn set(
        &mut self,
        this: Resource<Fields>,
        name: String,
        value: String,
    ) -> wasmtime::Result<Result<(), String>> {
        Ok(self.table().get_mut(&this)?.set(&name, value))
    }

    fn remove(
        &mut self,
        this: Resource<Fields>,
        name: String,
    ) -> wasmtime::Result<Result<(), String>> {
        Ok(self.table().get_mut(&this)?.remove(&name))
    }

    fn drop(&mut self, this: Resource<Fields>) -> wasmtime::Result<()> {
        // Lent, not given: the host takes the set back after the call. A filter never
        // owns one, so this is not called for the host's own handles.
        let _ = self.table().delete(this);
        Ok(())
    }
}

impl wit::HostBody for HostState {
    fn size(&mut self, this: Resource<Body>) -> wasmtime::Result<u64> {
        Ok(self.table().get(&this)?.bytes.len() as u64)
    }

    fn read(&mut self, this: Resource<Body>) -> wasmtime::Result<Vec<u8>> {
        Ok(self.table().get(&this)?.bytes.to_vec())
    }

    fn read_range(
        &mut self,
        this: Resource<Body>,
        offset: u64,
        len: u32,
    ) -> wasmtime::Result<Vec<u8>> {
        let bytes = &self.table().get(&this)?.bytes;
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(bytes.len());
        let end = start.saturating_add(len as usize).min(bytes.len());
        Ok(bytes[start..end].to_vec())
    }

    fn model(&mut self, this: Resource<Body>) -> wasmtime::Result<Option<String>> {
        let bytes = &self.table().get(&this)?.bytes;
        Ok(model_of(bytes))
    }

    fn canonical_sha256(
        &mut self,
        this: Resource<Body>,
        prefix: Vec<String>,
    ) -> wasmtime::Result<String> {
        let bytes = &self.table().get(&this)?.bytes;
        Ok(canonical_sha256(&prefix, bytes))
    }

    fn drop(&mut self, this: Resource<Body>) -> wasmtime::Result<()> {
        let _ = self.table().delete(this);
        Ok(())
    }
}

/// 0.2.0's `filter-info` in the host's terms.
pub fn hooks(h: wit::Hooks) -> v1::Hooks {
    let mut out = v1::Hooks::empty();
    for (a, b) in [
        (wit::Hooks::REQUEST_HEADERS, v1::Hooks::REQUEST_HEADERS),
        (wit::Hooks::REQUEST_BODY, v1::Hooks::REQUEST_BODY),
        (wit::Hooks::RESPONSE_HEADERS, v1::Hooks::RESPONSE_HEADERS),
        (wit::Hooks::RESPONSE_BODY, v1::Hooks::RESPONSE_BODY),
        (wit::Hooks::DONE, v1::Hooks::DONE),
    ] {
        if h.contains(a) {
            out |= b;
        }
    }
    out
}

/// The 0.1.0 request head without its headers.
pub fn request_head(h: &v1::RequestHead) -> wit::RequestHead {
    wit::RequestHead {
        request_id: h.request_id.clone(),
        method: h.method.clone(),
        account: h.account.clone(),
        gateway: h.gateway.clone(),
        provider: h.provider.clone(),
        path: h.path.clone(),
        query: h.query.clone(),
        client_ip: h.client_ip.clone(),
    }
}

/// The 0.1.0 response head without its headers.
pub fn response_head(h: &v1::ResponseHead) -> wit::ResponseHead {
    wit::ResponseHead {
        status: h.status,
        attempt: h.attempt,
        upstream_error: h.upstream_error.clone(),
        local: h.local,
    }
}

/// The 0.1.0 summary without its header lists.
pub fn summary(s: &v1::Summary) -> wit::Summary {
    wit::Summary {
        request_id: s.request_id.clone(),
        created_at_ms: s.created_at_ms,
        account: s.account.clone(),
        gateway: s.gateway.clone(),
        provider: s.provider.clone(),
        method: s.method.clone(),
        path: s.path.clone(),
        model: s.model.clone(),
        status: s.status,
        outcome: s.outcome,
        success: s.success,
        cached: s.cached,
        streamed: s.streamed,
        tokens_in: s.tokens_in,
        tokens_out: s.tokens_out,
        tokens_cached: s.tokens_cached,
        tokens_reasoning: s.tokens_reasoning,
        cost: s.cost,
        duration_ms: s.duration_ms,
        attempts: s.attempts,
        request_bytes: s.request_bytes,
        response_bytes: s.response_bytes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(n: &str, v: &str) -> v1::Header {
        v1::Header {
            name: n.into(),
            value: v.into(),
        }
    }

    #[test]
    fn edits_keep_the_last_operation_per_name_and_the_lent_view_comes_back_unchanged() {
        let mut f = Fields::new(vec![h("a", "1"), h("b", "2"), h("b", "3")], true);
        f.set("X-New", "v".into()).unwrap();
        f.remove("b").unwrap();
        f.set("b", "4".into()).unwrap();
        f.remove("x-new").unwrap();
        let values = |f: &Fields, n: &str| {
            f.values(n)
                .iter()
                .map(|h| h.value.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(values(&f, "B"), ["4"]);
        assert!(values(&f, "x-new").is_empty());
        assert_eq!(values(&f, "a"), ["1"]);
        let seen = f.entries();
        let (lent, edits) = f.into_parts();
        // The lent view comes back as it went in: a failed call leaves it untouched.
        assert_eq!(lent.len(), 3);
        assert_eq!(lent[2].value, "3");
        assert_eq!(edits.set.len(), 1);
        assert_eq!(edits.remove, ["x-new"]);
        // On `continue` the pipeline applies the edits to its map and view: the view is
        // then what the filter saw.
        let mut view = lent;
        let mut map = hyper::HeaderMap::new();
        crate::pipeline::headers::apply(&edits, &mut map, &mut view).unwrap();
        let pairs = |l: &[v1::Header]| {
            l.iter()
                .map(|h| (h.name.clone(), h.value.clone()))
                .collect::<Vec<_>>()
        };
        assert_eq!(pairs(&view), pairs(&seen));
        assert_eq!(map.get("b").unwrap(), "4");
    }

    #[test]
    fn bad_names_values_and_read_only_sets_are_refused_by_name() {
        let mut f = Fields::new(vec![], true);
        assert!(
            f.set("bad name", "v".into())
                .unwrap_err()
                .contains("bad name")
        );
        assert!(f.set("x", "a\nb".into()).unwrap_err().contains("'x'"));
        // As 0.1.0's edits did, removing a name no header can have changes nothing.
        assert!(f.remove("bad name").is_ok());
        assert!(f.into_parts().1.remove.is_empty());
        let mut ro = Fields::new(vec![h("a", "1")], false);
        assert!(ro.remove("a").unwrap_err().contains("read-only"));
        let (list, edits) = ro.into_parts();
        assert_eq!((list.len(), list[0].value.as_str()), (1, "1"));
        assert!(edits.set.is_empty() && edits.remove.is_empty());
    }

    /// The SDK's own fallback (plugin-sdk/src/body.rs) pins the same vector: a filter's
    /// cache keys do not depend on where the hash was taken.
    #[test]
    fn the_digest_matches_the_sdks() {
        let p = ["openai".to_string(), "/chat/completions".to_string()];
        assert_eq!(
            canonical_sha256(&p, br#"{"z":1.5,"a":{"y":[true,null],"b":"x"}}"#),
            "064cd12521639019de010d1657f9fa29afb6d24feb95d771bf897ca77b0d0239"
        );
    }

    #[test]
    fn the_model_is_the_top_level_string_of_an_object() {
        assert_eq!(
            model_of(br#"{"model":"a","model":"b"}"#).as_deref(),
            Some("b")
        );
        assert_eq!(model_of(br#"["gpt-4o"]"#), None);
        assert_eq!(model_of(br#"{"model":4}"#), None);
        assert_eq!(model_of(br#"{"x":{"model":"deep"}}"#), None);
    }

    #[test]
    fn canonical_hash_ignores_key_order_and_space_but_not_values() {
        let p = vec!["openai".to_string(), "/chat".to_string()];
        let a = canonical_sha256(&p, br#"{"b":1, "a":[1, 2]}"#);
        assert_eq!(a, canonical_sha256(&p, br#"{"a":[1,2],"b":1}"#));
        assert_ne!(a, canonical_sha256(&p, br#"{"a":[1,2],"b":2}"#));
        assert_ne!(
            a,
            canonical_sha256(&["openai".to_string()], br#"{"a":[1,2],"b":1}"#)
        );
        assert_ne!(
            canonical_sha256(&p, br#"{"seed":100000000000000000000}"#),
            canonical_sha256(&p, br#"{"seed":100000000000000000001}"#)
        );
    }
}
