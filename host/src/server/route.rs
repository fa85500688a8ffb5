//! Splitting a gateway URL path into its parts:
//! `/v1/{account}/{gateway}/{provider}/{provider path…}` and the universal
//! endpoint `/v1/{account}/{gateway}`. Pure string work with no crate
//! imports, so the fuzz crate includes this file as it is. Looking the parts
//! up (is there such a gateway, such a provider) is not this module's job.

/// The parts of `/v1/{account}/{gateway}/{provider}/{provider path…}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteParts<'a> {
    /// Account tag (non-empty, no `/`).
    pub account: &'a str,
    /// Gateway name (non-empty, no `/`).
    pub gateway: &'a str,
    /// Provider name (non-empty, no `/`).
    pub provider: &'a str,
    /// Provider path: empty, or everything from the `/` after the provider on.
    pub path: &'a str,
}

/// Why a path is not a gateway URL; the message quotes the path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError<'a> {
    /// Not under `/v1/`.
    #[error(
        "no route for '{path}': gateway URLs look like /v1/{{account}}/{{gateway}}/{{provider}}/{{provider path}}"
    )]
    NotGatewayUrl {
        /// The path asked for.
        path: &'a str,
    },
    /// The account or gateway segment is empty.
    #[error("no route for '{path}': expected /v1/{{account}}/{{gateway}}/{{provider}}/…")]
    MissingGateway {
        /// The path asked for.
        path: &'a str,
    },
    /// Account and gateway but no provider.
    #[error(
        "'{path}': name a provider (/v1/{account}/{gateway}/{{provider}}/…) or POST a list of steps to the universal endpoint /v1/{account}/{gateway}"
    )]
    MissingProvider {
        /// The path asked for.
        path: &'a str,
        /// Its account segment.
        account: &'a str,
        /// Its gateway segment.
        gateway: &'a str,
    },
}

/// Splits `/v1/{account}/{gateway}/{provider}/{rest…}`.
pub fn split_route(path: &str) -> Result<RouteParts<'_>, RouteError<'_>> {
    let Some(rest) = path.strip_prefix("/v1/") else {
        return Err(RouteError::NotGatewayUrl { path });
    };
    let mut parts = rest.splitn(4, '/');
    let account = parts.next().unwrap_or_default();
    let gateway = parts.next().unwrap_or_default();
    let provider = parts.next().unwrap_or_default();
    // The tail keeps the `/` that separates it from the provider.
    let provider_path = match parts.next() {
        Some(tail) => rest.get(rest.len() - tail.len() - 1..).unwrap_or_default(),
        None => "",
    };
    if account.is_empty() || gateway.is_empty() {
        return Err(RouteError::MissingGateway { path });
    }
    if provider.is_empty() {
        return Err(RouteError::MissingProvider {
            path,
            account,
            gateway,
        });
    }
    Ok(RouteParts {
        account,
        gateway,
        provider,
        path: provider_path,
    })
}

/// `/v1/{account}/{gateway}` (the universal endpoint, trailing `/`s allowed),
/// if that is the path.
pub fn universal(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix("/v1/")?.trim_end_matches('/');
    let (account, gateway) = rest.split_once('/')?;
    if account.is_empty() || gateway.is_empty() || gateway.contains('/') {
        return None;
    }
    Some((account, gateway))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parts_and_messages() {
        let r = split_route("/v1/acct/gw/openai/chat/completions").unwrap();
        assert_eq!(
            (r.account, r.gateway, r.provider, r.path),
            ("acct", "gw", "openai", "/chat/completions")
        );
        assert_eq!(split_route("/v1/a/g/p").unwrap().path, "");
        assert_eq!(split_route("/v1/a/g/p/").unwrap().path, "/");
        assert!(matches!(
            split_route("/nope"),
            Err(RouteError::NotGatewayUrl { .. })
        ));
        assert!(matches!(
            split_route("/v1//g/p"),
            Err(RouteError::MissingGateway { .. })
        ));
        let e = split_route("/v1/a/g").unwrap_err().to_string();
        assert!(
            e.contains("/v1/a/g/{provider}/") && e.contains("universal"),
            "{e}"
        );
    }

    /// A path segment as a client might send it: anything but `/`.
    fn segment() -> impl Strategy<Value = String> {
        "[^/]{1,12}"
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn arbitrary_paths_never_panic(path in any::<String>()) {
            let _ = split_route(&path).map_err(|e| e.to_string());
            let _ = universal(&path);
        }

        #[test]
        fn arbitrary_gateway_looking_paths_never_panic(rest in "[a-z/é]{0,24}") {
            let path = format!("/v1/{rest}");
            if let Ok(r) = split_route(&path) {
                prop_assert_eq!(
                    format!("/v1/{}/{}/{}{}", r.account, r.gateway, r.provider, r.path),
                    path.clone()
                );
            }
            let _ = universal(&path);
        }

        #[test]
        fn valid_paths_parse_back_to_their_parts(
            account in segment(),
            gateway in segment(),
            provider in segment(),
            tail in proptest::option::of("(/[^/]{0,8}){1,4}"),
        ) {
            let tail = tail.unwrap_or_default();
            let path = format!("/v1/{account}/{gateway}/{provider}{tail}");
            let r = split_route(&path).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(r.account, account.as_str());
            prop_assert_eq!(r.gateway, gateway.as_str());
            prop_assert_eq!(r.provider, provider.as_str());
            prop_assert_eq!(r.path, tail.as_str());
            prop_assert_eq!(universal(&path), None);
            let base = format!("/v1/{account}/{gateway}");
            prop_assert_eq!(universal(&base), Some((account.as_str(), gateway.as_str())));
            let slashed = format!("{base}/");
            prop_assert_eq!(universal(&slashed), Some((account.as_str(), gateway.as_str())));
        }
    }
}
