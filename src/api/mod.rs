//! The HTTP API of `pagelens serve`: which path means what.
//!
//! [`App`] is the [`Service`] the reactors call. Handlers here run on a
//! reactor thread and answer at once; anything that could take time is
//! handed to another thread.

mod health;

use crate::http::request::Request;
use crate::http::response::Response;
use crate::http::router::{Match, Params, Router};
use crate::reactor::{Context, Reply, Service};

/// A request handler: the app, the request, its path parameters, the context.
type Handler = fn(&App, &Request<'_>, Params<'_>, &mut Context<'_>) -> Reply;

/// The pagelens HTTP API.
#[derive(Debug)]
pub struct App {
    router: Router<Handler>,
}

impl App {
    /// The API with all its routes.
    pub fn new() -> Self {
        let router = Router::new()
            .route("GET", "/livez", health::livez as Handler)
            .route("GET", "/readyz", health::readyz)
            .route("GET", "/health", health::health);
        App { router }
    }
}

impl Default for App {
    fn default() -> Self {
        Self::new()
    }
}

impl Service for App {
    fn call(&self, request: &Request<'_>, cx: &mut Context<'_>) -> Reply {
        match self.router.find(request.head.method, request.head.path) {
            Match::Found(handler, params) => handler(self, request, params, cx),
            Match::MethodNotAllowed(allow) => Reply::Now(
                Response::problem(405, "method-not-allowed", &format!("{} is not allowed here", request.head.method))
                    .header("Allow", allow),
            ),
            Match::NotFound => {
                Reply::Now(Response::problem(404, "not-found", &format!("no resource at {}", request.head.path)))
            }
        }
    }
}
