//! A small router: method plus path pattern (`/tasks/{id}`) to a handler.
//!
//! Matching walks the routes in order, comparing each pattern against the
//! path in place (a literal is one prefix comparison), and allocates
//! nothing; only the `405` answer builds its `Allow` list.

/// Most `{param}` segments one pattern may have.
const MAX_PARAMS: usize = 4;

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
    /// Literal segments: the more, the more specific the route.
    literals: usize,
    handler: H,
}

/// Routes requests to handlers of type `H`.
#[derive(Debug)]
pub struct Router<H> {
    routes: Vec<Route<H>>,
}

/// Path parameters captured by a match: the route's segments and the
/// values found at its `{param}`s, in order. At 80 bytes it moves with a few
/// inline stores; at 136 it took a call to `memcpy` on every request.
#[derive(Debug, Clone, Copy)]
pub struct Params<'a> {
    segments: &'a [Segment],
    values: [&'a str; MAX_PARAMS],
}

impl<'a> Params<'a> {
    /// The value captured for `{name}`.
    pub fn get(&self, name: &str) -> Option<&'a str> {
        let mut names = self.segments.iter().filter_map(|s| match s {
            Segment::Param(n) => Some(*n),
            Segment::Literal(_) => None,
        });
        // A route has at most MAX_PARAMS params, so `i` is in bounds.
        names.position(|n| n == name).map(|i| self.values[i])
    }
}

/// The outcome of routing one request.
#[derive(Debug)]
pub enum Match<'a, H> {
    /// A route matched method and path: its handler, parameters and pattern.
    Found(&'a H, Params<'a>, &'static str),
    /// The path exists but not for this method: the `Allow` list, and the
    /// pattern the path matched (what its metrics are recorded under).
    MethodNotAllowed(String, &'static str),
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
    /// On a pattern with more than four parameters: a programming error
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
        let literals = segments.iter().filter(|s| matches!(s, Segment::Literal(_))).count();
        // Kept most specific first (stable among equals), so that the first
        // route a path matches is the most specific: `/tasks/active` owns
        // that path, not `/tasks/{id}`.
        let at = self.routes.partition_point(|r| r.literals >= literals);
        self.routes.insert(at, Route { method, pattern, segments, literals, handler });
        self
    }

    /// Every route's method and pattern, in the order added.
    pub fn routes(&self) -> Vec<(&'static str, &'static str)> {
        self.routes.iter().map(|r| (r.method, r.pattern)).collect()
    }

    /// Every route's pattern, each once, in the order added.
    pub fn patterns(&self) -> Vec<&'static str> {
        let mut patterns: Vec<&'static str> = Vec::new();
        for route in &self.routes {
            if !patterns.contains(&route.pattern) {
                patterns.push(route.pattern);
            }
        }
        patterns
    }

    /// Finds the handler for `method` and `path`. `HEAD` is served by `GET`
    /// routes. Only the most specific routes matching the path count: a
    /// literal segment beats a parameter.
    pub fn find<'a>(&'a self, method: &str, path: &'a str) -> Match<'a, H> {
        let mut values = [""; MAX_PARAMS];
        // (pattern, literals) of the first, most specific, route the path matched.
        let mut matched: Option<(&'static str, usize)> = None;
        for route in &self.routes {
            if matched.is_some_and(|(_, literals)| route.literals < literals) {
                break;
            }
            if !match_path(&route.segments, path, &mut values) {
                continue;
            }
            if route.method == method || (method == "HEAD" && route.method == "GET") {
                return Match::Found(&route.handler, Params { segments: &route.segments, values }, route.pattern);
            }
            matched.get_or_insert((route.pattern, route.literals));
        }
        let Some((pattern, literals)) = matched else {
            return Match::NotFound;
        };
        let mut allow: Vec<&str> = Vec::new();
        let same = self.routes.iter().filter(|r| r.literals == literals);
        for route in same.filter(|r| match_path(&r.segments, path, &mut values)) {
            allow.push(route.method);
            if route.method == "GET" {
                allow.push("HEAD");
            }
        }
        allow.sort_unstable();
        allow.dedup();
        Match::MethodNotAllowed(allow.join(", "), pattern)
    }
}

/// Whether `path` has exactly the segments of the pattern, each after a
/// `/`; the values of `{param}` segments (never empty) go to `values` in order.
fn match_path<'p>(segments: &[Segment], path: &'p str, values: &mut [&'p str; MAX_PARAMS]) -> bool {
    let mut rest = path;
    let mut captured = 0;
    for segment in segments {
        let Some(tail) = rest.strip_prefix('/') else {
            return false;
        };
        let after = match segment {
            Segment::Literal(lit) => match tail.strip_prefix(lit) {
                // A literal must fill its segment: `/livez` is not `/livezz`.
                Some(after) if after.is_empty() || after.starts_with('/') => after,
                _ => return false,
            },
            Segment::Param(_) => {
                let (part, after) = tail.split_at(tail.find('/').unwrap_or(tail.len()));
                if part.is_empty() {
                    return false;
                }
                // The route's constructor allows at most MAX_PARAMS params.
                values[captured] = part;
                captured += 1;
                after
            }
        };
        rest = after;
    }
    rest.is_empty()
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
            .route("GET", "/bulk/{id}/pages/{n}", 6)
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
        match r.find("GET", "/bulk/b1/pages/7") {
            Match::Found(6, params, _) => {
                assert_eq!((params.get("id"), params.get("n"), params.get("x")), (Some("b1"), Some("7"), None));
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
        assert!(matches!(r.find("GET", "/livezz"), Match::NotFound));
        assert!(matches!(r.find("GET", "/live"), Match::NotFound));
        assert!(matches!(r.find("GET", &"/x".repeat(100)), Match::NotFound));
        assert!(matches!(r.find("GET", "//"), Match::NotFound));
        assert!(matches!(r.find("GET", ""), Match::NotFound));
        match r.find("POST", "/livez") {
            Match::MethodNotAllowed(allow, pattern) => assert_eq!((allow.as_str(), pattern), ("GET, HEAD", "/livez")),
            other => panic!("{other:?}"),
        }
        match r.find("GET", "/tasks/x") {
            Match::MethodNotAllowed(allow, pattern) => assert_eq!((allow.as_str(), pattern), ("DELETE", "/tasks/{id}")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_literal_segment_owns_its_path_over_a_parameter() {
        // Added in either order, `/tasks/active` is its own resource.
        for r in [
            Router::new().route("DELETE", "/tasks/{id}", 1u8).route("GET", "/tasks/active", 2),
            Router::new().route("GET", "/tasks/active", 2u8).route("DELETE", "/tasks/{id}", 1),
        ] {
            assert!(matches!(r.find("GET", "/tasks/active"), Match::Found(2, _, "/tasks/active")));
            assert!(matches!(r.find("DELETE", "/tasks/abc"), Match::Found(1, _, "/tasks/{id}")));
            match r.find("DELETE", "/tasks/active") {
                Match::MethodNotAllowed(allow, pattern) => {
                    assert_eq!((allow.as_str(), pattern), ("GET, HEAD", "/tasks/active"))
                }
                other => panic!("{other:?}"),
            }
        }
    }
}
