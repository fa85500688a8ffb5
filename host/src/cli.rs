//! Command line: `serve`, `check`, `mock-provider`, `plugin new|build`.

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
    /// Write and install your own filters.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Manage a running gateway's virtual keys (through its admin API).
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Work on a running gateway's request logs (through its admin API).
    #[command(subcommand)]
    Logs(LogsCommand),
    /// Run the built-in mock provider (OpenAI- and Anthropic-shaped) alone.
    MockProvider {
        /// Address to listen on (port 0 picks a free port).
        #[arg(long, default_value = "127.0.0.1:8790")]
        listen: SocketAddr,
        /// Keep no record of the requests (`/__mock/requests` stays empty): the upstream of
        /// a benchmark, where recording would be most of the mock's work.
        #[arg(long)]
        lean: bool,
    },
}

/// Where a running gateway's admin API is, for the commands that call it.
#[derive(Debug, clap::Args)]
pub struct AdminArgs {
    /// Admin API base URL (default: http:// + the config's `[server] admin_listen`).
    #[arg(long, env = "AIGW_ADMIN_URL")]
    pub admin: Option<String>,
    /// Admin token (default: the config's `[server] admin_token`).
    #[arg(long, env = "AIGW_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Configuration file the defaults are read from.
    #[arg(long, short, default_value = "aigw.toml", env = "AIGW_CONFIG")]
    pub config: PathBuf,
}

/// `aigw keys ...`.
#[derive(Debug, Subcommand)]
#[allow(
    clippy::large_enum_variant,
    reason = "parsed once per process; boxing would only complicate clap's derive"
)]
pub enum KeysCommand {
    /// Create a key; prints it with its secret, shown this once only.
    Create {
        /// A name for people (the app or person using it).
        #[arg(long)]
        name: String,
        /// Gateways it may use: `*` or names separated by commas.
        #[arg(long, default_value = "*")]
        gateways: String,
        /// Team id whose shared budget and limits also apply.
        #[arg(long)]
        team: Option<String>,
        /// Model globs it may call, separated by commas (`gpt-4o*,claude-*`).
        #[arg(long)]
        models: Option<String>,
        /// Providers it may call, separated by commas.
        #[arg(long)]
        providers: Option<String>,
        /// Dollar budget.
        #[arg(long)]
        budget_usd: Option<f64>,
        /// The budget's period: day, month or total.
        #[arg(long, default_value = "month")]
        budget_period: String,
        /// Requests per minute.
        #[arg(long)]
        rpm: Option<u64>,
        /// Tokens per minute.
        #[arg(long)]
        tpm: Option<u64>,
        /// Expiry: milliseconds since the epoch or RFC 3339.
        #[arg(long)]
        expires: Option<String>,
        /// Metadata `key=value`, repeatable.
        #[arg(long = "meta")]
        metadata: Vec<String>,
        /// The admin API.
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// List keys (never their secrets).
    List {
        /// Most keys to list.
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// The admin API.
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Show one key.
    Show {
        /// Key id (`key_…`).
        id: String,
        /// The admin API.
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Revoke a key: refused on every replica within a second.
    Revoke {
        /// Key id (`key_…`).
        id: String,
        /// The admin API.
        #[command(flatten)]
        admin: AdminArgs,
    },
}

/// `aigw logs ...`.
#[derive(Debug, Subcommand)]
pub enum LogsCommand {
    /// Recompute the cost of logged requests from their kept usage at the running
    /// gateway's current prices (after a price catalog or `[[prices]]` change).
    Recost {
        /// Gateway whose logs to recost.
        #[arg(long)]
        gateway: String,
        /// From this time: milliseconds since the epoch, RFC 3339, or a duration ago (`7d`).
        #[arg(long)]
        since: String,
        /// Until this time (default: now), in the same forms.
        #[arg(long)]
        until: Option<String>,
        /// The admin API.
        #[command(flatten)]
        admin: AdminArgs,
    },
}

/// `aigw plugin ...`.
#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Create a filter crate (Cargo.toml, src/lib.rs with an example and tests).
    New {
        /// Filter name: lower-case letters, digits, '-' and '_'.
        name: String,
        /// Folder to create (default: ./NAME).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Where the crate gets the SDK from.
        #[command(flatten)]
        sdk: SdkArgs,
    },
    /// Build a filter crate for wasm32-wasip2 and install it into plugins_dir.
    Build {
        /// The filter crate's folder or Cargo.toml.
        #[arg(default_value = ".")]
        path: PathBuf,
        /// Install into this folder instead of the config's plugins_dir.
        #[arg(long)]
        plugins_dir: Option<PathBuf>,
        /// Configuration file whose plugins_dir receives the filter.
        #[arg(long, short, default_value = "aigw.toml", env = "AIGW_CONFIG")]
        config: PathBuf,
    },
}

/// `aigw plugin new`'s choice of SDK dependency: at most one of `--sdk-version`,
/// `--sdk-git` (with an optional `--sdk-rev`) and `--sdk-path`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct SdkArgs {
    /// Depend on this version of aigw-plugin-sdk from crates.io. Without any --sdk flag: the
    /// SDK of the aigw checkout this binary runs from, else this aigw's own version.
    #[arg(long, value_name = "VER")]
    pub sdk_version: Option<String>,
    /// Depend on the SDK in this git repository (https://…, ssh://…, file:///…).
    #[arg(long, value_name = "URL")]
    pub sdk_git: Option<String>,
    /// With --sdk-git: the commit to use (default: the repository's default branch when first built).
    #[arg(long, value_name = "REV")]
    pub sdk_rev: Option<String>,
    /// Depend on the SDK crate in this folder (plugin-sdk/ of an aigw checkout), written as an
    /// absolute path.
    #[arg(long, value_name = "PATH", alias = "sdk")]
    pub sdk_path: Option<PathBuf>,
}

impl SdkArgs {
    /// The SDK source these flags name; an error names the conflicting flags.
    pub fn source(&self) -> Result<crate::plugin_cmd::SdkSource, String> {
        crate::plugin_cmd::SdkSource::from_flags(
            self.sdk_version.as_deref(),
            self.sdk_git.as_deref(),
            self.sdk_rev.as_deref(),
            self.sdk_path.as_deref(),
        )
    }
}
