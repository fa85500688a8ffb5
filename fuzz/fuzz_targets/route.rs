//! Gateway URL paths (`host/src/server/route.rs`): never panics, and a path
//! that splits joins back to itself.
#![no_main]

use aigw_fuzz::route::{split_route, universal};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|path: &str| {
    match split_route(path) {
        Ok(r) => {
            assert!(!r.account.is_empty() && !r.gateway.is_empty() && !r.provider.is_empty());
            assert!(r.path.is_empty() || r.path.starts_with('/'));
            let joined = format!("/v1/{}/{}/{}{}", r.account, r.gateway, r.provider, r.path);
            assert_eq!(joined, path);
        }
        Err(e) => assert!(e.to_string().contains(path)),
    }
    if let Some((account, gateway)) = universal(path) {
        assert!(!account.contains('/') && !gateway.contains('/'));
        assert!(split_route(path).is_err());
    }
});
