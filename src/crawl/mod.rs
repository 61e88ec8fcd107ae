//! Site audit: crawl a site and report what is wrong across its pages.
//!
//! - [`settings`]: what a crawl is asked to do, checked.
//! - [`urls`]: URL normalisation, scope and patterns.
//! - [`frontier`]: every URL discovered, interned, and the queue to fetch.
//! - [`sitemap`]: sitemap and sitemap-index documents.
//! - [`journal`]: a line a URL, kept as the crawl goes, to resume it.
//! - [`site`]: what was found of each URL, compactly.
//! - [`audit`]: the checks across pages.
//! - [`crawler`]: the driver: fetches through the fetcher, analyses with the
//!   SEO engine, feeds the frontier and the site.
//! - [`report`]: the site report: JSON, CSV and HTML.
//!
//! Nothing here knows of sockets or the HTTP API: the crawler is handed a
//! fetcher and a way to run the analysis.

pub mod audit;
pub mod crawler;
pub mod frontier;
pub mod journal;
pub mod report;
pub mod settings;
pub mod site;
pub mod sitemap;
pub mod urls;

pub use crawler::{crawl, CrawlProgress, Crawled};
pub use report::{Issue, Report, SiteReport};
pub use settings::CrawlSettings;
