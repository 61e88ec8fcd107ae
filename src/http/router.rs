//! A small router: method plus path pattern (`/tasks/{id}`) to a handler.
//!
//! Matching splits the path once, walks the routes in order and allocates
//! nothing; only the `405` answer builds its `Allow` list.

/// Most `{param}` segments one pattern may have.
const MAX_PARAMS: usize = 4;

/// Most segments one pattern may have; a longer path matches no route.
const MAX_SEGMENTS: usize = 8;

#[derive(Debug)]
enum Segment {
    Literal(&'static str),
    Param(&'static str),
}

#[derive(Debug)]
struct Route<H> {
    method: &'static str,
    pattern: &'static str,
    segments: Vec<Segment>,
    handler: H,
}

/// Routes requests to handlers of type `H`.
#[derive(Debug)]
pub struct Router<H> {
    routes: Vec<Route<H>>,
}

/// Path parameters captured by a match.
#[derive(Debug, Clone, Copy)]
pub struct Params<'p> {
    items: [(&'static str, &'p str); MAX_PARAMS],
    len: usize,
}

impl<'p> Params<'p> {
    /// The value captured for `{name}`.
    pub fn get(&self, name: &str) -> Option<&'p str> {
        self.items[..self.len].iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
    }
}

/// The outcome of routing one request.
#[derive(Debug)]
pub enum Match<'r, 'p, H> {
    /// A route matched method and path: its handler, parameters and pattern.
    Found(&'r H, Params<'p>, &'static str),
    /// The path exists but not for this method; the value is the `Allow` list.
    MethodNotAllowed(String),
    /// No route has this path.
    NotFound,
}

impl<H> Default for Router<H> {
    fn default() -> Self {
        Router { routes: Vec::new() }
    }
}

impl<H> Router<H> {
    /// An empty router.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a route. `pattern` is a path whose `{name}` segments capture.
    ///
    /// # Panics
    /// On a pattern with more than four parameters or eight segments: a programming error
    /// caught the first time the router is built, never on a request.
    pub fn route(mut self, method: &'static str, pattern: &'static str, handler: H) -> Self {
        let segments: Vec<Segment> = pattern
            .split('/')
            .skip(1)
            .map(|s| match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                Some(name) => Segment::Param(name),
                None => Segment::Literal(s),
            })
            .collect();
        let params = segments.iter().filter(|s| matches!(s, Segment::Param(_))).count();
        assert!(params <= MAX_PARAMS, "route {pattern} has more than {MAX_PARAMS} parameters");
        assert!(segments.len() <= MAX_SEGMENTS, "route {pattern} has more than {MAX_SEGMENTS} segments");
        self.routes.push(Route { method, pattern, segments, handler });
        self
    }

    /// Finds the handler for `method` and `path`. `HEAD` is served by `GET` routes.
    pub fn find<'r, 'p>(&'r self, method: &str, path: &'p str) -> Match<'r, 'p, H> {
        let Some(parts) = split(path) else {
            return Match::NotFound;
        };
        let parts = parts.as_slice();
        let mut path_known = false;
        for route in &self.routes {
            let Some(params) = match_path(&route.segments, parts) else {
                continue;
            };
            if route.method == method || (method == "HEAD" && route.method == "GET") {
                return Match::Found(&route.handler, params, route.pattern);
            }
            path_known = true;
        }
        if !path_known {
            return Match::NotFound;
        }
        let mut allow: Vec<&str> = Vec::new();
        for route in self.routes.iter().filter(|r| match_path(&r.segments, parts).is_some()) {
            allow.push(route.method);
            if route.method == "GET" {
                allow.push("HEAD");
            }
        }
        allow.dedup();
        Match::MethodNotAllowed(allow.join(", "))
    }
}

/// The segments of `path` after its leading `/`; `None` past [`MAX_SEGMENTS`].
fn split(path: &str) -> Option<Parts<'_>> {
    let mut parts = Parts::default();
    for part in path.split('/').skip(1) {
        parts.push(part)?;
    }
    Some(parts)
}

/// A path's segments, kept on the stack.
#[derive(Default)]
struct Parts<'p> {
    items: [&'p str; MAX_SEGMENTS],
    len: usize,
}

impl<'p> Parts<'p> {
    fn push(&mut self, part: &'p str) -> Option<()> {
        *self.items.get_mut(self.len)? = part;
        self.len += 1;
        Some(())
    }

    fn as_slice(&self) -> &[&'p str] {
        &self.items[..self.len]
    }
}

fn match_path<'p>(segments: &[Segment], parts: &[&'p str]) -> Option<Params<'p>> {
    if segments.len() != parts.len() {
        return None;
    }
    let mut params = Params { items: [("", ""); MAX_PARAMS], len: 0 };
    for (segment, &part) in segments.iter().zip(parts) {
        match segment {
            Segment::Literal(lit) if *lit == part => {}
            Segment::Literal(_) => return None,
            Segment::Param(_) if part.is_empty() => return None,
            Segment::Param(name) => {
                params.items[params.len] = (name, part);
                params.len += 1;
            }
        }
    }
    Some(params)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router() -> Router<u8> {
        Router::new()
            .route("GET", "/livez", 1)
            .route("GET", "/analyze/status/{id}", 2)
            .route("DELETE", "/tasks/{id}", 3)
            .route("POST", "/tasks/{id}/revoke", 4)
            .route("GET", "/", 5)
    }

    #[test]
    fn matches_literals_and_params() {
        let r = router();
        assert!(matches!(r.find("GET", "/livez"), Match::Found(1, _, _)));
        assert!(matches!(r.find("HEAD", "/livez"), Match::Found(1, _, _)));
        assert!(matches!(r.find("GET", "/"), Match::Found(5, _, _)));
        match r.find("POST", "/tasks/abc/revoke") {
            Match::Found(4, params, pattern) => {
                assert_eq!(params.get("id"), Some("abc"));
                assert_eq!(pattern, "/tasks/{id}/revoke");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unknown_paths_and_wrong_methods() {
        let r = router();
        assert!(matches!(r.find("GET", "/nope"), Match::NotFound));
        assert!(matches!(r.find("GET", "/livez/"), Match::NotFound));
        assert!(matches!(r.find("GET", "/analyze/status/"), Match::NotFound));
        assert!(matches!(r.find("GET", "/analyze/status/a/b"), Match::NotFound));
        assert!(matches!(r.find("GET", &"/x".repeat(MAX_SEGMENTS + 1)), Match::NotFound));
        assert!(matches!(r.find("GET", ""), Match::NotFound));
        match r.find("POST", "/livez") {
            Match::MethodNotAllowed(allow) => assert_eq!(allow, "GET, HEAD"),
            other => panic!("{other:?}"),
        }
        match r.find("GET", "/tasks/x") {
            Match::MethodNotAllowed(allow) => assert_eq!(allow, "DELETE"),
            other => panic!("{other:?}"),
        }
    }
}
