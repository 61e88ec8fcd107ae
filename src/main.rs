//! The `pagelens` binary: parse the command line, run the chosen job.

use std::io::{Read, Write};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{CommandFactory, Parser};

use pagelens::api::robots::RobotsCache;
use pagelens::api::work::{alert_webhook, callback_sender, fetched_page, handlers, html_only, Pages};
use pagelens::api::App;
use pagelens::auth::Keys;
use pagelens::cli::{AnalyzeArgs, Cli, Command, CrawlArgs, KeysCommand, LoadtestArgs, LogFormat, ServeArgs, StoreSpec};
use pagelens::crawl::report::ReportView;
use pagelens::fetch::{FetchRequest, Fetcher};
use pagelens::jobs::Engine;
use pagelens::loadtest;
use pagelens::metrics::{collectors, Metrics};
use pagelens::reactor::Server;
use pagelens::seo;
use pagelens::signals::{raise_fd_limit, Signals};
use pagelens::tls::Certificates;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve(&args),
        Command::Analyze(args) => analyze(&args),
        Command::Crawl(args) => crawl(&args),
        Command::Loadtest(args) => return loadtest(&args),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "pagelens", &mut std::io::stdout());
            Ok(())
        }
        // A closed pipe (`| head`) is a normal way to stop reading.
        Command::Keys(command) => keys(command),
        Command::Manpage => match clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout()) {
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(format!("writing the man page: {e}")),
            _ => Ok(()),
        },
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
    pagelens::log::use_json(args.log_format == LogFormat::Json);
    if let Err(e) = raise_fd_limit() {
        pagelens::warn!("could not raise the open-file limit: {e}");
    }
    // Before any thread starts, so that all of them inherit the mask.
    let signals = Signals::block().map_err(|e| format!("cannot block signals: {e}"))?;
    let (store, shared) = args.open_store()?;
    if config.fetch.guard.is_loosened() {
        let guard = &config.fetch.guard;
        let opened = if guard.allow_private {
            "ALL private, loopback and link-local addresses".to_string()
        } else {
            guard.allow.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
        };
        pagelens::warn!("the SSRF guard is open for {opened}; clients can make this server fetch them. Use only locally or in tests.");
    }
    let fetcher = Arc::new(Fetcher::start(config.fetch.clone()).map_err(|e| format!("cannot start the fetcher: {e}"))?);
    let mut pages = Pages::new(Arc::clone(&fetcher));
    if let Some(cache) = &config.cache {
        pages = pages.with_cache(Arc::clone(cache));
    }
    let engine = Engine::start(config.engine.clone(), Arc::clone(&store), handlers(&pages))
        .map_err(|e| format!("cannot start the worker pool: {e}"))?;
    engine.set_callbacks(callback_sender(&fetcher, config.api.callback_secret.clone()));
    if let Some((queue, shared)) = shared {
        engine.share(queue, shared).map_err(|e| format!("cannot start the shared queue's threads: {e}"))?;
    }
    if let Some(cache) = &config.cache {
        cache.keep_in(&engine);
    }
    let recovered = engine.recover().map_err(|e| format!("--store: cannot read the tasks: {e}"))?;
    let mut app = App::new(Arc::clone(&engine), pages, config.api.clone())
        .map_err(|e| format!("cannot start the intake thread: {e}"))?;
    let mut metrics = None;
    if !args.no_metrics {
        let hub = Metrics::start().map_err(|e| format!("cannot start the metrics thread: {e}"))?;
        hub.enable_alerts(config.alerts);
        hub.add_collector(collectors::engine(Arc::clone(&engine)));
        hub.add_collector(collectors::fetch(Arc::clone(&fetcher)));
        if let Some(url) = &config.alert_webhook {
            hub.on_alert_change(alert_webhook(&fetcher, url.clone(), config.api.callback_secret.clone()));
        }
        hub.add_snapshot_part(collectors::engine_snapshot(Arc::clone(&engine)));
        if let Some(cache) = &config.cache {
            hub.add_collector(pagelens::api::cache::collector(Arc::clone(cache)));
        }
        if let Some(log) = &config.server.access_log {
            hub.add_collector(collectors::access_log(Arc::clone(log)));
        }
        if let Some(limiter) = app.rate_limiter() {
            hub.add_collector(collectors::rate_limits(Arc::clone(limiter)));
        }
        app = app.with_metrics(Arc::clone(&hub));
        metrics = Some(hub);
    }
    let sink = metrics.as_ref().map(|m| m.sink());
    let server = Server::start_with_metrics(config.server.clone(), Arc::new(app), sink).map_err(|e| e.to_string())?;
    if let Some(hub) = &metrics {
        hub.add_collector(collectors::server(Arc::clone(server.state())));
        hub.add_snapshot_part(collectors::server_snapshot(Arc::clone(server.state())));
    }
    let figures = store.figures();
    let listening = match (server.tls_addr(), server.local_addr()) {
        (Some(tls), plain) if tls == plain => format!("https://{tls}"),
        (Some(tls), plain) => format!("http://{plain} and https://{tls}"),
        (None, plain) => format!("http://{plain}"),
    };
    let (io_engine, why) = server.engine();
    if config.server.io_engine == pagelens::reactor::IoEngine::IoUring
        && io_engine != pagelens::reactor::Running::IoUring
    {
        pagelens::warn!("--io-engine io_uring: {why}");
    }
    println!(
        "pagelens listening on {listening} ({} reactors, {io_engine}: {why}; {} workers; tasks in {}{}; recovered {} queued, {} interrupted, {} callbacks owed)",
        config.server.reactors,
        config.engine.workers,
        figures.backend,
        figures.path.map(|p| format!(" {p}")).unwrap_or_default(),
        recovered.queued,
        recovered.requeued,
        recovered.callbacks,
    );
    let _ = std::io::stdout().flush();
    match (&config.api.keys, &args.api_keys) {
        (Some(keys), Some(path)) => {
            pagelens::info!(
                "API keys from {}: {} keys; /livez and /readyz stay open",
                path.display(),
                keys.describe().len()
            )
        }
        _ => pagelens::info!("no --api-keys: every route is open to whoever can reach the server"),
    }

    let signal = loop {
        match signals.wait().map_err(|e| format!("waiting for signals: {e}"))? {
            libc::SIGHUP => reload(config.certificates.as_deref(), config.api.keys.as_deref()),
            signal => break signal,
        }
    };
    let signals = Arc::new(signals);
    let (certificates, api_keys) = (config.certificates.clone(), config.api.keys.clone());
    std::thread::spawn(move || loop {
        match signals.wait() {
            Ok(libc::SIGHUP) => reload(certificates.as_deref(), api_keys.as_deref()),
            Ok(_) => {
                pagelens::warn!("second signal: exiting now");
                std::process::exit(130);
            }
            Err(_) => return,
        }
    });
    if !args.drain_grace.is_zero() {
        pagelens::info!(
            "signal {signal}: /readyz answers 503 for {:?} before the listeners close; send it again to stop at once",
            args.drain_grace
        );
        server.announce_drain();
        std::thread::sleep(args.drain_grace);
    }
    pagelens::info!(
        "signal {signal}: draining connections (up to {:?}); send it again to stop at once",
        config.server.shutdown_timeout
    );
    // Queued tasks stay queued (in the store) for the next start; running
    // ones get what is left of the shutdown timeout.
    engine.stop_taking();
    let began = std::time::Instant::now();
    server.shutdown();
    server.join().map_err(|e| format!("reactor failed: {e}"))?;
    let left = engine.shutdown(config.server.shutdown_timeout.saturating_sub(began.elapsed()));
    match args.store {
        StoreSpec::Memory => pagelens::warn!(
            "stopped; dropping {} queued and {} running tasks (--store memory keeps nothing)",
            left.queued,
            left.running
        ),
        StoreSpec::Sqlite(_) => pagelens::info!(
            "stopped; {} queued and {} interrupted tasks stay in the store for the next start",
            left.queued,
            left.running
        ),
        StoreSpec::Redis(_) => pagelens::info!(
            "stopped; {} queued and {} interrupted tasks stay in Redis, taken over by another instance after --reclaim-after",
            left.queued,
            left.running
        ),
    }
    Ok(())
}

/// SIGHUP: reads the TLS certificate and key, and the API keys, again.
/// New handshakes get the new pair, open connections keep theirs; a bad
/// file keeps what was loaded before.
fn reload(certificates: Option<&Certificates>, keys: Option<&Keys>) {
    match certificates.map(Certificates::reload) {
        None => {}
        Some(Ok(())) => pagelens::info!("SIGHUP: TLS certificate and key reloaded"),
        Some(Err(e)) => pagelens::warn!("SIGHUP: still serving the previous certificate: {e}"),
    }
    match keys.map(Keys::reload) {
        None => {}
        Some(Ok(n)) => pagelens::info!("SIGHUP: API keys reloaded ({n} keys)"),
        Some(Err(e)) => pagelens::warn!("SIGHUP: keeping the previous API keys: {e}"),
    }
    if certificates.is_none() && keys.is_none() {
        pagelens::info!("SIGHUP: nothing to reload (no --tls-cert, no --api-keys)");
    }
}

/// `pagelens keys add | list`.
fn keys(command: KeysCommand) -> Result<(), String> {
    match command {
        KeysCommand::Add { name, scopes, rate_limit, daily_quota, file } => {
            let (key, mut entry) = pagelens::auth::generate(&name, &scopes)?;
            entry.rate_limit = rate_limit.map(|r| format!("{r}/s"));
            entry.daily_quota = daily_quota;
            pagelens::auth::KeyFile::append(&file, &entry)?;
            println!("{key}");
            eprintln!("key {name:?} added to {}: this is the only time it is shown", file.display());
            Ok(())
        }
        KeysCommand::List { file } => {
            for line in Keys::load(&file)?.describe() {
                println!("{line}");
            }
            Ok(())
        }
    }
}

fn analyze(args: &AnalyzeArgs) -> Result<(), String> {
    let options = seo::Options {
        url: args.url.clone(),
        include_links: !args.no_links,
        include_images: !args.no_images,
        ..seo::Options::default()
    };
    let (bytes, options, fetch) = if args.page.starts_with("http://") || args.page.starts_with("https://") {
        fetch_page(args, options)?
    } else {
        (read_page(args)?, options, None)
    };
    let mut analysis = seo::analyze(&bytes, &options).map_err(|e| format!("{}: {e}", args.page))?;
    analysis.fetch = fetch;
    let json = if args.pretty { serde_json::to_string_pretty(&analysis) } else { serde_json::to_string(&analysis) };
    let json = json.map_err(|e| format!("cannot encode the analysis: {e}"))?;
    let mut stdout = std::io::stdout().lock();
    // A closed pipe (`| head`) is a normal way to stop reading.
    match writeln!(stdout, "{json}") {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(format!("writing the analysis: {e}")),
        _ => Ok(()),
    }
}

/// `pagelens crawl`: the crawl on this thread, a progress line on a terminal.
fn crawl(args: &CrawlArgs) -> Result<(), String> {
    use std::io::IsTerminal;
    let checked = args.settings().check().map_err(|(field, why)| format!("--{}: {why}", field.replace('_', "-")))?;
    let mut config = args.fetch.config()?;
    // The crawl paces itself; the fetcher's own per-origin bucket must not be the slower.
    config.per_origin_rate =
        if checked.settings.rate > 0.0 { checked.settings.rate.max(config.per_origin_rate) } else { 1e9 };
    let fetcher = Fetcher::start(config).map_err(|e| format!("cannot start the fetcher: {e}"))?;
    let cancel = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let terminal = std::io::stderr().is_terminal();
    let mut progress = |p: &pagelens::crawl::CrawlProgress| {
        if terminal {
            eprint!(
                "\r{} fetched, {} queued, {} errors, {} discovered, {:.1} pages/s   ",
                p.fetched, p.queued, p.errors, p.discovered, p.pages_per_second
            );
        }
    };
    let mut journal = pagelens::crawl::journal::NoJournal;
    let crawled = pagelens::crawl::crawl(checked, &fetcher, &cancel, &mut journal, &mut progress)
        .map_err(|e| format!("{}: {} ({})", args.url, e.detail, e.code))?;
    if terminal {
        eprintln!();
    }
    let report = crawled.report();
    let Some(dir) = &args.out else {
        // A closed pipe (`| head`) is a normal way to stop reading.
        return match serde_json::to_writer_pretty(std::io::stdout().lock(), &report) {
            Err(e) if !e.is_io() => Err(format!("cannot encode the report: {e}")),
            _ => Ok(()),
        };
    };
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    // Each written as it is made: a large site's report is never held twice.
    type Writer = fn(&ReportView<'_>, &mut std::io::BufWriter<std::fs::File>) -> std::io::Result<()>;
    let files: [(&str, Writer); 4] = [
        ("report.json", |r, out| serde_json::to_writer_pretty(out, r).map_err(std::io::Error::other)),
        ("issues.csv", |r, out| pagelens::crawl::report::write_issues_csv(r, out)),
        ("pages.csv", |r, out| pagelens::crawl::report::write_pages_csv(r, out)),
        ("report.html", |r, out| pagelens::crawl::report::write_html(r, out)),
    ];
    for (name, write) in files {
        let path = dir.join(name);
        let written = std::fs::File::create(&path).and_then(|file| {
            let mut out = std::io::BufWriter::new(file);
            write(&report, &mut out)?;
            out.flush()
        });
        written.map_err(|e| format!("{}: {e}", path.display()))?;
    }
    let (s, audit) = (&crawled.audit.summary, &crawled.audit);
    println!(
        "{}: {} pages fetched ({} HTML), {} external links checked, {} errors",
        s.start, s.pages_fetched, s.html_pages, s.external_checked, s.errors
    );
    for issue in &audit.issues {
        println!("{:>6} {:<28} {:?}: {}", issue.pages.len(), issue.id, issue.severity, issue.about);
    }
    for note in &audit.notes {
        println!("note: {note}");
    }
    println!("reports written to {}", dir.display());
    Ok(())
}

/// Fetches the page at `args.page`, under the same guard as the service.
fn fetch_page(args: &AnalyzeArgs, options: seo::Options) -> Result<Page, String> {
    let url = url::Url::parse(&args.page).map_err(|e| format!("{}: {e}", args.page))?;
    let config = args.fetch.config()?;
    let max = config.max_response_bytes;
    let fetcher = Fetcher::start(config).map_err(|e| format!("cannot start the fetcher: {e}"))?;
    let response = fetcher.fetch_and_wait(FetchRequest::get(url));
    let response = response.and_then(html_only).map_err(|e| format!("{}: {e}", args.page))?;
    let (tx, rx) = std::sync::mpsc::channel();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let robots = Arc::new(RobotsCache::default());
    robots.get(&fetcher, &response.final_url, deadline, Box::new(move |url, source| drop(tx.send((url, source)))));
    let robots_txt = rx.recv().map_err(|_| "the fetcher stopped".to_string())?;
    let (html, mut options, fetch) = fetched_page(response, options, max).map_err(|e| format!("{}: {e}", args.page))?;
    options.robots_txt = Some(robots_txt);
    Ok((html, options, Some(fetch)))
}

/// A page's bytes, the options to analyse it with, and how it was fetched.
type Page = (Vec<u8>, seo::Options, Option<serde_json::Value>);

fn read_page(args: &AnalyzeArgs) -> Result<Vec<u8>, String> {
    let limit = args.max_page_bytes as u64 + 1;
    let mut bytes = Vec::new();
    let read = if args.page == "-" {
        std::io::stdin().take(limit).read_to_end(&mut bytes)
    } else {
        std::fs::File::open(&args.page).and_then(|f| f.take(limit).read_to_end(&mut bytes))
    };
    read.map_err(|e| {
        // `pagelens analyze example.com`: a host name, not a file.
        let host_like = !args.page.contains('/') && args.page.contains('.') && !args.page.ends_with(".html");
        if e.kind() == std::io::ErrorKind::NotFound && host_like {
            format!("{}: no such file; to fetch the page, give its URL: https://{}/", args.page, args.page)
        } else {
            format!("{}: {e}", args.page)
        }
    })?;
    if bytes.len() > args.max_page_bytes {
        return Err(format!("{}: larger than --max-page-bytes ({} bytes)", args.page, args.max_page_bytes));
    }
    Ok(bytes)
}

/// `pagelens loadtest`: exit 0 when every request was answered, 1 when it
/// could not run, 3 when requests failed or no rate met the SLO.
fn loadtest(args: &LoadtestArgs) -> ExitCode {
    match run_loadtest(args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(3),
        Err(message) => {
            eprintln!("pagelens loadtest: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run_loadtest(args: &LoadtestArgs) -> Result<bool, String> {
    let config = args.config()?;
    // Ctrl-C (or SIGTERM) ends the run early; what was measured is reported.
    let signals = Signals::block().map_err(|e| format!("cannot block signals: {e}"))?;
    let stop = Arc::clone(&config.stop);
    std::thread::spawn(move || {
        if signals.wait().is_ok() {
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    });
    if args.find_max {
        let slo = args.slo_p99.ok_or("--find-max needs --slo-p99")?;
        eprintln!("finding the highest rate with p99 <= {:?} and no errors ({:?} a step)", slo, config.duration);
        let (steps, best) = loadtest::find_max(&config, slo, args.max_steps)?;
        let every_step_passed = steps.last().is_some_and(|s| s.pass);
        match best {
            Some(rate) if every_step_passed => println!(
                "no knee found within {} steps: {rate:.0} req/s, the highest rate tried, still met p99 <= {slo:?} without errors (raise --max-steps or --rate)",
                steps.len()
            ),
            Some(rate) => println!("knee: {rate:.0} req/s sustained with p99 <= {slo:?} and no errors"),
            None => println!(
                "no rate tried met p99 <= {slo:?} without errors (lowest tried: {:.0} req/s)",
                steps.last().map_or(0.0, |s| s.rate)
            ),
        }
        if let Some(path) = &args.json {
            let json = serde_json::json!({
                "slo_p99_ms": slo.as_secs_f64() * 1000.0,
                "knee_rate": best,
                "steps": steps.iter().map(|s| serde_json::json!({"rate": s.rate, "pass": s.pass, "report": s.report.json()})).collect::<Vec<_>>(),
            });
            write_file(path, serde_json::to_string_pretty(&json).unwrap_or_default().as_bytes())?;
        }
        return Ok(best.is_some());
    }
    let report = loadtest::run(&config)?;
    print!("{}", report.text(args.latency));
    if let Some(path) = &args.json {
        write_file(path, serde_json::to_string_pretty(&report.json()).unwrap_or_default().as_bytes())?;
    }
    if let Some(path) = &args.hgrm {
        write_file(path, loadtest::report::hgrm(&report.stats.corrected).as_bytes())?;
    }
    if !report.connected {
        return Err(format!("{} is unreachable: no connection succeeded", report.url));
    }
    // Every response an error status is a failed run, like transport errors.
    Ok(report.stats.errors.total() == 0 && !report.all_failed())
}

fn write_file(path: &std::path::Path, bytes: &[u8]) -> Result<(), String> {
    std::fs::write(path, bytes).map_err(|e| format!("{}: {e}", path.display()))
}
