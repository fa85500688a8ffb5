//! The ground floor: HTTP pieces every other room stands on and that stand on nothing of the
//! gateway's own. The body type sent to clients ([`body`]), the errors the gateway answers itself
//! and their one mapping to a response ([`error`]), the pooled upstream client ([`upstream`]), and
//! token comparison. Routing, listeners and the request flow live upstairs (`server/`,
//! `pipeline/`).

pub mod body;
pub mod error;
pub mod secret;
pub mod upstream;

pub use secret::Secret;

use subtle::ConstantTimeEq;

/// Whether a presented token equals the expected one, taking the same time wherever the bytes
/// first differ (gateway and admin tokens).
pub fn constant_time_eq(presented: &[u8], expected: &[u8]) -> bool {
    presented.ct_eq(expected).into()
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn equal_only_when_every_byte_and_the_length_match() {
        assert!(constant_time_eq(b"secret-token", b"secret-token"));
        assert!(!constant_time_eq(b"secret-token", b"secret-tokex"));
        assert!(!constant_time_eq(b"secret", b"secret-token"));
        assert!(!constant_time_eq(b"", b"x"));
        assert!(constant_time_eq(b"", b""));
    }
}
