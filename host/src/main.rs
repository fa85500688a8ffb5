//! The `aigw` binary: parses the command line and hands over to the library.

use aigw::cli::{Cli, Command, LogsCommand, PluginCommand};
use clap::Parser;
use std::io::Write as _;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    aigw::telemetry::init_tracing();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve { config } => aigw::app::serve(&config).await,
            Command::Check { config } => aigw::app::check(&config).await.map(|report| {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{report}\n{}: OK", config.display());
            }),
            Command::MockProvider { listen, lean } => run_mock(listen, lean).await,
            Command::Logs(LogsCommand::Recost {
                gateway,
                since,
                until,
                admin,
            }) => aigw::admin_client::recost(&gateway, &since, until.as_deref(), admin)
                .await
                .map(say),
            Command::Keys(cmd) => aigw::admin_client::keys(cmd).await.map(say),
            Command::Plugin(PluginCommand::New { name, dir, sdk }) => sdk
                .source()
                .and_then(|sdk| aigw::plugin_cmd::new_filter(&name, dir.as_deref(), &sdk))
                .map(say),
            Command::Plugin(PluginCommand::Build {
                path,
                plugins_dir,
                config,
            }) => aigw::plugin_cmd::plugins_dir(&config, plugins_dir.as_deref())
                .and_then(|dir| aigw::plugin_cmd::build(&path, &dir))
                .map(say),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn say(text: String) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}");
}

async fn run_mock(listen: std::net::SocketAddr, lean: bool) -> Result<(), String> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("--listen {listen}: cannot bind: {e}"))?;
    let bound = listener.local_addr().map_err(|e| e.to_string())?;
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "mock provider listening on http://{bound}");
        let _ = out.flush();
    }
    let state = std::sync::Arc::new(if lean {
        aigw::mock::MockState::lean()
    } else {
        aigw::mock::MockState::default()
    });
    tokio::select! {
        _ = aigw::mock::serve(listener, state) => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    Ok(())
}
