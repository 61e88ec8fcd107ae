//! HTTP/1.1: the request codec (heads and chunked bodies), responses, the
//! cached `Date`, and the router. No sockets here.

pub mod chunked;
pub mod client;
pub mod date;
pub mod error;
pub mod request;
pub mod response;
pub mod router;
