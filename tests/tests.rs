//! The integration tests: one binary, so CI links once.

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
