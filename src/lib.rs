//! pagelens: a non-blocking SEO analysis service.
//!
//! - [`reactor`]: event loops on mio, connections, deadlines, mailboxes.
//! - [`http`]: the HTTP/1.1 codec (server and client), responses, router.
//! - [`fetch`]: the outbound client: pools, TLS, the SSRF guard, callbacks.
//! - [`seo`]: the analysis engine, bytes in, [`seo::Analysis`] out.
//! - [`api`]: what each path means.
//! - [`loadtest`]: the load generator of `pagelens loadtest`.
//! - [`cli`]: the command line.

#![warn(missing_docs, missing_debug_implementations, rust_2018_idioms)]

pub mod api;
pub mod auth;
pub mod cidr;
pub mod cli;
pub mod clock;
pub mod crawl;
pub mod fetch;
pub mod http;
pub mod jobs;
pub mod loadtest;
pub mod log;
pub mod metrics;
pub mod pool;
pub mod ratelimit;
pub mod reactor;
pub mod seo;
pub mod signals;
pub mod system;
pub mod tls;
