// The integration suite's modules, included by each engine's test crate
// (tests/tests.rs on epoll, tests/io_uring.rs on io_uring): one suite, two engines.

mod binary;
mod cache;
mod origin;
mod util;

mod clients;
mod cluster;
mod crawl;
mod durability;
mod engine;
mod events;
mod fetch;
mod history;
mod hostile;
mod http_basics;
mod keys;
mod lifecycle;
mod metrics;
mod openapi;
mod pipelining;
mod rejects;
mod seo;
mod tasks;
mod tls;
mod websocket;
