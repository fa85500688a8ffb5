//! Pieces every benchmark binary uses: starting a gateway process and
//! reading its address, and a median.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Starts `aigw serve --config config` and waits for the address it prints.
/// Its stdout keeps being drained so the process never blocks on the pipe.
pub fn spawn_gateway(config: &Path) -> (Child, SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_aigw"))
        .arg("serve")
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("gateway exited").unwrap();
        if let Some(a) = line.strip_prefix("aigw listening on http://") {
            break a.trim().parse().unwrap();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    (child, addr)
}

/// The median of some durations.
#[allow(dead_code, reason = "not every benchmark binary uses it")]
pub fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}
