//! Whether a server-sent-event stream has delivered its terminal event: OpenAI chat's
//! `data: [DONE]`, Anthropic's `event: message_stop`, the Responses API's
//! `event: response.completed` (or `response.failed` / `response.incomplete`, also final).
//!
//! A client may close its connection as soon as it has the terminal event (the sync OpenAI
//! Python SDK does), often before the provider's end of body arrives. Such a stream is complete,
//! not aborted: the body task keeps reading the provider to its end for the filters (cache,
//! logging) and logs the request as completed.
//!
//! Markers are matched only at the start of a line: a model's text inside a `data:` JSON line
//! cannot contain a raw newline, so it can never fake one.

/// Terminal markers, each as it appears right after a line break.
const MARKERS: &[&[u8]] = &[
    b"data: [DONE]",
    b"event: message_stop",
    b"event: response.completed",
    b"event: response.failed",
    b"event: response.incomplete",
];

/// Longest marker plus its line break: the bytes kept between chunks.
const KEEP: usize = 27;

/// Scans the bytes a client is sent, chunk by chunk, for a terminal event.
#[derive(Debug, Clone)]
pub struct StreamEnd {
    /// The last bytes of what was scanned (a marker may straddle chunks); starts as a line break
    /// so a marker at the very start of the stream counts.
    tail: Vec<u8>,
    seen: bool,
}

impl Default for StreamEnd {
    fn default() -> Self {
        StreamEnd {
            tail: vec![b'\n'],
            seen: false,
        }
    }
}

impl StreamEnd {
    /// Scans the next bytes sent to the client.
    pub fn feed(&mut self, bytes: &[u8]) {
        if self.seen || bytes.is_empty() {
            return;
        }
        let mut window = std::mem::take(&mut self.tail);
        window.extend_from_slice(bytes);
        self.seen = window.iter().enumerate().any(|(i, &b)| {
            (b == b'\n' || b == b'\r') && MARKERS.iter().any(|m| window[i + 1..].starts_with(m))
        });
        let keep = window.len().saturating_sub(KEEP);
        self.tail = window.split_off(keep);
    }

    /// Whether the terminal event has been sent.
    pub fn seen(&self) -> bool {
        self.seen
    }
}

#[cfg(test)]
mod tests {
    use super::StreamEnd;
    use proptest::prelude::*;

    fn scan(chunks: &[&[u8]]) -> bool {
        let mut s = StreamEnd::default();
        for c in chunks {
            s.feed(c);
        }
        s.seen()
    }

    #[test]
    fn each_protocols_terminal_event_is_seen() {
        assert!(scan(&[b"data: {\"x\":1}\n\ndata: [DONE]\n\n"]));
        assert!(scan(&[b"event: message_delta\ndata: {}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"]));
        assert!(scan(&[b"event: response.completed\ndata: {}\n\n"]));
        assert!(scan(&[b"event: response.incomplete\r\ndata: {}\r\n\r\n"]));
        assert!(scan(&[b"data: [DONE]\n\n"]), "at the very start");
    }

    #[test]
    fn text_that_only_looks_like_a_marker_is_not_an_end() {
        assert!(!scan(&[b"data: {\"content\":\"data: [DONE]\"}\n\n"]));
        assert!(!scan(&[
            b"data: {\"content\":\"\\nevent: message_stop\"}\n\n"
        ]));
        assert!(!scan(&[b"data: {\"x\":1}\n\n", b"data: {\"y\":2}\n\n"]));
    }

    proptest! {
        #[test]
        fn the_marker_is_found_however_the_stream_is_cut(cuts in proptest::collection::vec(0usize..200, 0..8)) {
            let stream = b"data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\ndata: {\"usage\":{}}\n\ndata: [DONE]\n\n";
            let mut points: Vec<usize> = cuts.into_iter().map(|c| c % stream.len()).collect();
            points.sort_unstable();
            points.dedup();
            let mut s = StreamEnd::default();
            let mut last = 0;
            for p in points {
                s.feed(&stream[last..p]);
                // Seen only once the whole marker was fed.
                prop_assert!(!s.seen() || p >= stream.len() - 2);
                last = p;
            }
            s.feed(&stream[last..]);
            prop_assert!(s.seen());
        }
    }
}
