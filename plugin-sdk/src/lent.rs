//! What the host lends the current hook call (0.2.0): the header sets and the request
//! body, as borrowed resources that live exactly as long as the call. The glue registers
//! them here for the length of the filter's hook; [`crate::Headers`] and the body helpers
//! reach them through this module, by call number, so a value kept past its call finds
//! nothing instead of a later call's data.
#![allow(unsafe_code)]

use crate::bindings::v2::{Body, Fields};
use std::cell::Cell;

#[derive(Clone, Copy)]
struct Current {
    call: u64,
    sets: [*const Fields; 2],
    body: *const Body,
    /// The body the glue read for the filter (its address and length), so a helper can
    /// tell the lent body from other bytes.
    read: (*const u8, usize),
}

const NONE: Current = Current {
    call: 0,
    sets: [std::ptr::null(); 2],
    body: std::ptr::null(),
    read: (std::ptr::null(), 0),
};

thread_local! {
    static CURRENT: Cell<Current> = const { Cell::new(NONE) };
    static CALLS: Cell<u64> = const { Cell::new(0) };
}

/// Clears the registration when the call ends, also by unwinding.
struct Reset;

impl Drop for Reset {
    fn drop(&mut self) {
        CURRENT.with(|c| c.set(NONE));
    }
}

/// Runs `f` with `sets` (request/response, or the summary's two) and `body` registered;
/// `f` gets the call's number.
pub(crate) fn lend<R>(
    sets: [Option<&Fields>; 2],
    body: Option<(&Body, &[u8])>,
    f: impl FnOnce(u64) -> R,
) -> R {
    let call = CALLS.with(|c| {
        let n = c.get().wrapping_add(1).max(1);
        c.set(n);
        n
    });
    let ptr = |s: Option<&Fields>| s.map_or(std::ptr::null(), |s| s as *const Fields);
    CURRENT.with(|c| {
        c.set(Current {
            call,
            sets: [ptr(sets[0]), ptr(sets[1])],
            body: body.map_or(std::ptr::null(), |(b, _)| b as *const Body),
            read: body.map_or((std::ptr::null(), 0), |(_, r)| (r.as_ptr(), r.len())),
        })
    });
    let _reset = Reset;
    f(call)
}

/// Calls `f` with header set `which` of call `call`, if that call is still running.
pub(crate) fn with_set<R>(call: u64, which: usize, f: impl FnOnce(&Fields) -> R) -> Option<R> {
    let current = CURRENT.with(Cell::get);
    let ptr = *current.sets.get(which)?;
    if current.call != call || ptr.is_null() {
        return None;
    }
    // SAFETY: `ptr` was registered by `lend` from a reference that outlives the closure
    // `lend` runs, and `lend` clears it (Reset) before that closure's borrow ends; a
    // matching call number means we are inside that closure on this thread.
    Some(f(unsafe { &*ptr }))
}

/// Calls `f` with the lent request body when `bytes` is the copy the glue read of it.
pub(crate) fn with_body<R>(bytes: &[u8], f: impl FnOnce(&Body) -> R) -> Option<R> {
    let current = CURRENT.with(Cell::get);
    if current.body.is_null() || current.read != (bytes.as_ptr(), bytes.len()) {
        return None;
    }
    // SAFETY: as in `with_set`: registered by `lend` for the length of the running call.
    Some(f(unsafe { &*current.body }))
}
