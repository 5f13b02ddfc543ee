use clap::Parser;
use provisiond::{app::Application, config::Settings, diagnostics::cause_chain};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let settings = Settings::parse();
    tracing_subscriber::fmt()
        // Colours only on a terminal: a log written to a file stays plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .with_env_filter(EnvFilter::try_new(&settings.log).unwrap_or_else(|_| EnvFilter::new("info")))
        .init();
    let bind = settings.bind;
    let app = match Application::build(settings).await {
        Ok(app) => app,
        Err(e) => {
            tracing::error!("cannot start: {}", cause_chain(&e));
            eprintln!("provisiond: cannot start: {}", cause_chain(&e));
            return std::process::ExitCode::FAILURE;
        }
    };
    tracing::info!("serving on http://{}:{}", bind.ip(), app.port());
    match app.run_until_stopped().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("server failed: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
