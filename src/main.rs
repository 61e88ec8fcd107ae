//! The `pagelens` binary: parse the command line, run the chosen job.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;

use pagelens::api::App;
use pagelens::cli::{Cli, Command, ServeArgs};
use pagelens::reactor::Server;
use pagelens::signals::{raise_fd_limit, TerminationSignals};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("pagelens: {message}");
            ExitCode::FAILURE
        }
    }
}

fn serve(args: &ServeArgs) -> Result<(), String> {
    let config = args.config()?;
    if let Err(e) = raise_fd_limit() {
        eprintln!("pagelens: could not raise the open-file limit: {e}");
    }
    // Before any thread starts, so that all of them inherit the mask.
    let signals = TerminationSignals::block().map_err(|e| format!("cannot block signals: {e}"))?;
    let server = Server::start(config.clone(), Arc::new(App::new())).map_err(|e| e.to_string())?;
    println!(
        "pagelens listening on http://{} ({} reactors)",
        server.local_addr(),
        config.reactors
    );
    let _ = std::io::stdout().flush();

    let signal = signals
        .wait()
        .map_err(|e| format!("waiting for signals: {e}"))?;
    eprintln!(
        "pagelens: signal {signal}: draining connections (up to {:?}); send it again to stop at once",
        config.shutdown_timeout
    );
    let signals = Arc::new(signals);
    std::thread::spawn(move || {
        if signals.wait().is_ok() {
            eprintln!("pagelens: second signal: exiting now");
            std::process::exit(130);
        }
    });
    server.shutdown();
    server.join().map_err(|e| format!("reactor failed: {e}"))?;
    eprintln!("pagelens: stopped");
    Ok(())
}
