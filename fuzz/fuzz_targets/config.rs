//! The configuration file (`host/src/config`): any text gives a `Config` or
//! an error naming the file, never a panic.
#![no_main]

use aigw_fuzz::config::Config;
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|text: &str| {
    if let Err(e) = Config::parse(Path::new("/nonexistent/aigw.toml"), text) {
        assert!(e.to_string().contains("aigw.toml"));
    }
});
