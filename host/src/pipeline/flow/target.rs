//! Where an upstream attempt goes, and how a filter's routing choice
//! (`context.route`) moves it to another provider.

use crate::http::error::GatewayError;
use crate::http::upstream::UpstreamClient;
use crate::pipeline::Generation;
use crate::providers::ProviderSpec;
use crate::runtime::host::RouteChoice;
use bytes::Bytes;
use hyper::header::HeaderValue;
use hyper::{HeaderMap, Uri};

/// One attempt's destination and payload.
pub(super) struct Target {
    pub provider: ProviderSpec,
    pub uri: Uri,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub client: UpstreamClient,
    /// The provider path (after `/{provider}`) and query.
    pub path: String,
    pub query: Option<String>,
    /// The account of the URL (fills `{account}` in base URLs).
    pub account: String,
    /// The client sent the provider key itself (not a stored key).
    pub client_key: bool,
}

impl Target {
    /// Moves the target to `choice`. The client's own key is never sent to
    /// another provider: the target's stored key replaces it, and without one
    /// the request is refused.
    pub fn reroute(
        &mut self,
        generation: &Generation,
        fallback_client: &UpstreamClient,
        choice: RouteChoice,
    ) -> Result<(), GatewayError> {
        let Some(next) = generation.config.providers.get(&choice.provider).cloned() else {
            return Err(GatewayError::bad_gateway(format!(
                "a filter routed the request to unknown provider '{}'",
                choice.provider
            )));
        };
        // Gemini's and Bedrock's native APIs name the model in the path, not the body: a model
        // choice there would be billed as one model and run as another.
        let model_in_path = crate::providers::usage::model_from_path(&self.path).is_some();
        if model_in_path && choice.model.is_some() {
            return Err(GatewayError::bad_gateway(format!(
                "a filter chose a model for a request to '{}', whose API names the model in the path; route it to a provider without a model, or choose models on OpenAI-compatible requests",
                self.provider.name
            )));
        }
        if let Some(model) = &choice.model {
            self.body = with_model(&self.body, model)?;
        }
        if next.name == self.provider.name {
            return Ok(());
        }
        let same_kind = next.anthropic_messages == self.provider.anthropic_messages
            && (!model_in_path
                || (next.gemini_native == self.provider.gemini_native
                    && next.bedrock_converse == self.provider.bedrock_converse));
        if !same_kind {
            return Err(GatewayError::bad_gateway(format!(
                "a filter routed the request from '{}' to '{}', which speak different APIs; route between providers of one API (OpenAI-compatible or Anthropic Messages)",
                self.provider.name, next.name
            )));
        }
        if let (Some(from), Some(to)) = (&self.provider.compat_path, &next.compat_path)
            && self.path == *from
        {
            self.path = to.clone();
        }
        let uri = next
            .upstream_uri(&self.account, &self.path, self.query.as_deref())
            .map_err(GatewayError::bad_gateway)?;
        let had_key = self
            .headers
            .remove(self.provider.auth_header.name)
            .is_some();
        // A client's AWS signature (or session token) is for the provider it named only.
        for name in ["x-amz-date", "x-amz-security-token", "x-amz-content-sha256"] {
            self.headers.remove(name);
        }
        self.headers.remove(next.auth_header.name);
        match &next.api_key {
            Some(key) => {
                let mut value =
                    HeaderValue::from_str(&next.auth_header.value(&key.0)).map_err(|_| {
                        GatewayError::bad_gateway(format!(
                            "providers.{}.api_key is not a valid header value",
                            next.name
                        ))
                    })?;
                value.set_sensitive(true);
                self.headers.insert(next.auth_header.name, value);
            }
            // A provider the gateway signs for itself (stored AWS credentials) needs no key.
            None if had_key && self.client_key && next.aws.is_none() => {
                return Err(GatewayError::bad_gateway(format!(
                    "a filter routed the request from '{}' to '{}', which has no stored key: set [providers.{}] api_key (the client's key is only ever sent to the provider it named)",
                    self.provider.name, next.name, next.name
                )));
            }
            None => {}
        }
        self.client = generation
            .clients
            .get(&next.name)
            .cloned()
            .unwrap_or_else(|| fallback_client.clone());
        self.uri = uri;
        self.provider = next;
        self.client_key = false;
        Ok(())
    }
}

/// The JSON body with its top-level `model` set to `model`.
fn with_model(body: &[u8], model: &str) -> Result<Bytes, GatewayError> {
    let mut value: serde_json::Value = serde_json::from_slice(body).map_err(|_| {
        GatewayError::bad_request(
            "a filter chose a model, but the request body is not JSON".to_string(),
        )
    })?;
    let Some(obj) = value.as_object_mut() else {
        return Err(GatewayError::bad_request(
            "a filter chose a model, but the request body is not a JSON object".to_string(),
        ));
    };
    obj.insert("model".into(), serde_json::Value::String(model.to_string()));
    Ok(Bytes::from(value.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_is_replaced_and_other_fields_kept() {
        let b = with_model(br#"{"model":"a","messages":[]}"#, "b").unwrap();
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["model"], "b");
        assert!(v["messages"].is_array());
        assert!(with_model(b"[1]", "b").is_err());
        assert!(with_model(b"nope", "b").is_err());
    }
}
