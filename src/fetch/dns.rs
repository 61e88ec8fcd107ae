//! Name resolution off the event loop: `getaddrinfo` blocks, so it runs on
//! a few threads of its own, and answers are cached for a short while.

use std::collections::HashMap;
use std::net::{IpAddr, ToSocketAddrs};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::error::FetchError;

/// Lookups waiting for a resolver thread; more are refused as busy.
const QUEUE: usize = 1024;
/// Most names cached; the cache is cleared when full (names are few in practice).
const CACHE_MAX: usize = 4096;

/// The addresses of a name.
pub type Addrs = Arc<[IpAddr]>;

/// Told the outcome of a lookup, on a resolver thread.
pub type Reply = Box<dyn FnOnce(Result<Addrs, FetchError>) + Send>;

type Cache = Arc<Mutex<HashMap<String, (Instant, Addrs)>>>;

/// A small pool of resolver threads with a cache.
#[derive(Debug)]
pub struct Resolver {
    jobs: SyncSender<(String, Reply)>,
    cache: Cache,
    ttl: Duration,
}

impl Resolver {
    /// Starts `threads` resolver threads; answers are kept for `ttl`.
    pub fn start(threads: usize, ttl: Duration) -> std::io::Result<Resolver> {
        let (jobs, rx) = sync_channel::<(String, Reply)>(QUEUE);
        let rx = Arc::new(Mutex::new(rx));
        let cache: Cache = Arc::default();
        for i in 0..threads.max(1) {
            let rx = Arc::clone(&rx);
            let cache = Arc::clone(&cache);
            std::thread::Builder::new().name(format!("pagelens-dns-{i}")).spawn(move || serve(&rx, &cache))?;
        }
        Ok(Resolver { jobs, cache, ttl })
    }

    /// The cached addresses of `host`, if fresh.
    pub fn cached(&self, host: &str) -> Option<Addrs> {
        let cache = self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        cache.get(host).filter(|(at, _)| at.elapsed() < self.ttl).map(|(_, addrs)| Arc::clone(addrs))
    }

    /// Looks `host` up on a resolver thread; `reply` is called there.
    pub fn resolve(&self, host: String, reply: Reply) {
        match self.jobs.try_send((host, reply)) {
            Ok(()) => {}
            Err(TrySendError::Full((_, reply)) | TrySendError::Disconnected((_, reply))) => {
                reply(Err(FetchError::new(503, "dns-busy", "too many name lookups waiting", true)))
            }
        }
    }
}

fn serve(rx: &Mutex<Receiver<(String, Reply)>>, cache: &Cache) {
    loop {
        let job = rx.lock().unwrap_or_else(std::sync::PoisonError::into_inner).recv();
        let Ok((host, reply)) = job else { return };
        let result = lookup(&host);
        if let Ok(addrs) = &result {
            let mut cache = cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if cache.len() >= CACHE_MAX {
                cache.clear();
            }
            cache.insert(host, (Instant::now(), Arc::clone(addrs)));
        }
        reply(result);
    }
}

fn lookup(host: &str) -> Result<Addrs, FetchError> {
    let failed = |detail: String| FetchError::new(502, "dns-failed", detail, false);
    let addrs = (host, 0).to_socket_addrs().map_err(|e| failed(format!("cannot resolve {host}: {e}")))?;
    let mut ips: Vec<IpAddr> = addrs.map(|a| a.ip()).collect();
    ips.dedup();
    if ips.is_empty() {
        return Err(failed(format!("{host} has no addresses")));
    }
    Ok(ips.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_caches_and_fails_clearly() {
        let resolver = Resolver::start(1, Duration::from_secs(30)).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let tx2 = tx.clone();
        resolver.resolve("localhost".into(), Box::new(move |r| tx.send(r).unwrap()));
        let addrs = rx.recv().unwrap().unwrap();
        assert!(addrs.iter().any(|ip| ip.is_loopback()));
        assert!(resolver.cached("localhost").is_some());
        resolver.resolve("no-such-host.invalid".into(), Box::new(move |r| tx2.send(r).unwrap()));
        assert_eq!(rx.recv().unwrap().unwrap_err().code, "dns-failed");
        assert!(resolver.cached("no-such-host.invalid").is_none());
    }
}
