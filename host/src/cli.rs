//! Command line: `serve`, `check`, `mock-provider`.

use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;

/// aigw: a self-hosted AI gateway whose policies are WebAssembly filters.
#[derive(Debug, Parser)]
#[command(name = "aigw", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway.
    Serve {
        /// Configuration file.
        #[arg(long, short, default_value = "aigw.toml", env = "AIGW_CONFIG")]
        config: PathBuf,
    },
    /// Validate a configuration and its filters, then exit (non-zero on error).
    Check {
        /// Configuration file.
        #[arg(long, short, default_value = "aigw.toml", env = "AIGW_CONFIG")]
        config: PathBuf,
    },
    /// Run the built-in mock provider (OpenAI- and Anthropic-shaped) alone.
    MockProvider {
        /// Address to listen on (port 0 picks a free port).
        #[arg(long, default_value = "127.0.0.1:8790")]
        listen: SocketAddr,
    },
}
