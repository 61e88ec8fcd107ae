//! Request bodies of the analysis endpoints: parsed and checked off the
//! reactors (a 10 MB JSON body is not parsed on a reactor).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use url::Url;

use super::cache::Directives;
use super::json_string::{lift, string_of, Lift, StringError};
use crate::fetch::{FetchError, Guard};
use crate::jobs::{Payload, TaskError, TaskInput, TaskOptions, TaskSpec};
use crate::pool::Priority;
use crate::seo;

/// The handler that analyses pages; a batch of pages is run by the same one.
pub const ANALYZE: &str = "analyze";
/// The kind of a batch of page analyses.
pub const BULK: &str = "bulk";

/// What the request body is, from its `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// `application/json`.
    Json,
    /// `text/html`: the page itself.
    Html,
}

impl BodyKind {
    /// The kind for a `Content-Type` value; `None` for an unsupported one.
    /// A missing header is taken as JSON.
    pub fn from_content_type(value: Option<&[u8]>) -> Option<BodyKind> {
        let Some(value) = value else { return Some(BodyKind::Json) };
        let essence = value.split(|&b| b == b';').next().unwrap_or_default();
        let essence = String::from_utf8_lossy(essence).trim().to_ascii_lowercase();
        match essence.as_str() {
            "application/json" | "" => Some(BodyKind::Json),
            "text/html" | "application/xhtml+xml" => Some(BodyKind::Html),
            _ => None,
        }
    }
}

/// Where a page comes from.
#[derive(Debug, Clone)]
pub enum Source {
    /// The client sent it.
    Html(Vec<u8>),
    /// It is fetched from here.
    Url(Url),
}

/// One page to analyse.
#[derive(Debug, Clone)]
pub struct PageInput {
    /// The page, or where to fetch it.
    pub source: Source,
    /// What is known about it.
    pub options: seo::Options,
    /// What the client's `Cache-Control` asked of the result cache.
    pub cache: Directives,
}

/// A checked analysis request.
#[derive(Debug)]
pub struct AnalyzeRequest {
    /// The page.
    pub page: PageInput,
    /// Requested priority.
    pub priority: Priority,
    /// Requested timeout.
    pub timeout: Option<Duration>,
    /// Where to post the final status.
    pub callback: Option<Url>,
}

/// A checked batch request.
#[derive(Debug)]
pub struct BulkRequest {
    /// The pages.
    pub items: Vec<PageInput>,
    /// Requested priority.
    pub priority: Priority,
    /// Requested timeout for the whole batch.
    pub timeout: Option<Duration>,
    /// Where to post the final status.
    pub callback: Option<Url>,
}

/// Limits the checks apply.
#[derive(Debug, Clone, Copy)]
pub struct InputLimits {
    /// Longest timeout a client may ask for.
    pub max_timeout: Duration,
    /// Most items in a batch.
    pub max_bulk_items: usize,
}

/// A field that may be left out but not sent as `null`: the API's schema
/// has no nulls, and a `null` that silently meant "absent" hid mistakes.
fn present<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// The page, when `json_string::lift` did not take it out first: the JSON
/// text of its value, decoded by `json_string::string_of`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Fields<'a> {
    #[serde(default, borrow, deserialize_with = "present")]
    html: Option<&'a RawValue>,
    #[serde(default, deserialize_with = "present")]
    url: Option<String>,
    #[serde(default, deserialize_with = "present")]
    page_url: Option<String>,
    #[serde(default, deserialize_with = "present")]
    priority: Option<String>,
    #[serde(default, deserialize_with = "present")]
    timeout_ms: Option<serde_json::Number>,
    #[serde(default, deserialize_with = "present")]
    callback_url: Option<String>,
    #[serde(default, deserialize_with = "present")]
    include_links: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    include_images: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BulkFields<'a> {
    #[serde(borrow)]
    items: Vec<ItemFields<'a>>,
    #[serde(default, deserialize_with = "present")]
    priority: Option<String>,
    #[serde(default, deserialize_with = "present")]
    timeout_ms: Option<serde_json::Number>,
    #[serde(default, deserialize_with = "present")]
    callback_url: Option<String>,
    #[serde(default, deserialize_with = "present")]
    include_links: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    include_images: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ItemFields<'a> {
    #[serde(default, borrow, deserialize_with = "present")]
    html: Option<&'a RawValue>,
    #[serde(default, deserialize_with = "present")]
    url: Option<String>,
    #[serde(default, deserialize_with = "present")]
    page_url: Option<String>,
}

/// A page as task data: where it is and what to include, beside its bytes.
#[derive(Debug, Serialize, Deserialize)]
struct PageArgs {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    page_url: Option<String>,
    /// A sent page's own `Content-Type` (its charset is the page's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    content_type: Option<String>,
    /// Sent as a JSON string: Unicode text.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    unicode: bool,
    include_links: bool,
    include_images: bool,
    /// The client's cache directives (a URL's analysis).
    #[serde(default)]
    cache: Directives,
}

impl PageInput {
    /// The page as a task's payload.
    pub fn into_payload(self) -> Payload {
        let PageInput { source, options, cache } = self;
        let (url, body) = match source {
            Source::Html(html) => (None, html),
            Source::Url(url) => (Some(url.to_string()), Vec::new()),
        };
        let args = PageArgs {
            url,
            page_url: options.url.map(String::from),
            content_type: options.content_type,
            unicode: options.unicode,
            include_links: options.include_links,
            include_images: options.include_images,
            cache,
        };
        // A struct of strings and booleans: serialising cannot fail.
        Payload { args: serde_json::to_value(args).unwrap_or_default(), body }
    }

    /// The page a stored payload describes; an error for damaged data.
    pub fn from_payload(payload: Payload) -> Result<PageInput, TaskError> {
        let damaged = |e: String| TaskError::new(500, "damaged-task", format!("the stored task is damaged: {e}"));
        let args: PageArgs = serde_json::from_value(payload.args).map_err(|e| damaged(e.to_string()))?;
        let parse = |u: String| Url::parse(&u).map_err(|e| damaged(format!("{u:?}: {e}")));
        let source = match args.url {
            Some(url) => Source::Url(parse(url)?),
            None => Source::Html(payload.body),
        };
        let url = args.page_url.map(parse).transpose()?;
        let mut options = options(url, (Some(args.include_links), Some(args.include_images)));
        options.content_type = args.content_type;
        options.unicode = args.unicode;
        Ok(PageInput { source, options, cache: args.cache })
    }
}

/// A task's options: an idempotency `key` is kept per API key (`owner`).
pub(super) fn task_options(
    priority: Priority,
    timeout: Option<Duration>,
    callback: Option<Url>,
    key: Option<String>,
    owner: Option<String>,
) -> TaskOptions {
    // Each API key has idempotency keys of its own: another key's same
    // key must neither find nor collide with its task.
    let key = match &owner {
        Some(owner) => key.map(|k| format!("{owner}\u{0}{k}")),
        None => key,
    };
    TaskOptions {
        priority,
        timeout_ms: timeout.map(|t| t.as_millis().min(u128::from(u64::MAX)) as u64),
        callback_url: callback.map(String::from),
        idempotency_key: key,
        owner,
    }
}

impl AnalyzeRequest {
    /// The task that runs this request, under the client's idempotency `key`.
    pub fn into_spec(self, key: Option<String>, owner: Option<String>) -> TaskSpec {
        let options = task_options(self.priority, self.timeout, self.callback, key, owner);
        TaskSpec { kind: ANALYZE.into(), input: TaskInput::One(self.page.into_payload()), options }
    }
}

impl BulkRequest {
    /// The batch task that runs this request, under the client's idempotency `key`.
    pub fn into_spec(self, key: Option<String>, owner: Option<String>) -> TaskSpec {
        let options = task_options(self.priority, self.timeout, self.callback, key, owner);
        let items = self.items.into_iter().map(PageInput::into_payload).collect();
        TaskSpec { kind: BULK.into(), input: TaskInput::Batch(items), options }
    }
}

fn unprocessable(code: &str, detail: impl Into<String>) -> TaskError {
    TaskError::new(422, code, detail)
}

/// Parses a request body as `T`, naming the field at fault in an error
/// (`url: invalid type: integer...`, `items[3].html: ...`).
fn from_json<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, TaskError> {
    let mut json = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut json).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if !inner.is_data() {
            return TaskError::new(400, "malformed-json", format!("the body is not valid JSON: {inner}"));
        }
        // Valid JSON of the wrong shape (unknown field, wrong type).
        match path.as_str() {
            "." | "" => unprocessable("invalid-field", inner.to_string()),
            _ => unprocessable("invalid-field", format!("{path}: {inner}")),
        }
    })?;
    json.end().map_err(|e| TaskError::new(400, "malformed-json", format!("the body is not valid JSON: {e}")))?;
    Ok(value)
}

/// A request's `priority`, checked.
pub(super) fn priority(name: Option<&str>) -> Result<Priority, TaskError> {
    match name {
        None | Some("normal") => Ok(Priority::Normal),
        Some("high") => Ok(Priority::High),
        Some("low") => Ok(Priority::Low),
        Some(other) => {
            Err(unprocessable("bad-priority", format!("priority must be high, normal or low, not {other:?}")))
        }
    }
}

/// A request's `timeout_ms`, checked against the longest allowed.
pub(super) fn timeout(ms: Option<&serde_json::Number>, limits: InputLimits) -> Result<Option<Duration>, TaskError> {
    let Some(ms) = ms else { return Ok(None) };
    let max = limits.max_timeout.as_millis();
    match ms.as_u64() {
        Some(ms) if ms > 0 && u128::from(ms) <= max => Ok(Some(Duration::from_millis(ms))),
        _ => Err(unprocessable("bad-timeout", format!("timeout_ms must be a whole number from 1 to {max}, not {ms}"))),
    }
}

impl From<FetchError> for TaskError {
    fn from(e: FetchError) -> Self {
        // A fetch stopped because its task was cancelled or timed out.
        if e.code == "cancelled" {
            return TaskError::cancelled();
        }
        TaskError::new(e.status, e.code, e.detail)
    }
}

/// A URL the fetcher will be asked to reach: parsed, and checked by the
/// guard as far as it can be before resolving (scheme, credentials, port).
fn fetchable(field: &str, value: &str, guard: &Guard) -> Result<Url, TaskError> {
    let url = Url::parse(value).map_err(|e| unprocessable("bad-url", format!("{field} {value:?}: {e}")))?;
    guard.check_url(&url).map_err(|e| TaskError::new(e.status, e.code, format!("{field}: {}", e.detail)))?;
    Ok(url)
}

/// A request's `callback_url`, checked by the guard.
pub(super) fn callback(value: Option<&str>, guard: &Guard) -> Result<Option<Url>, TaskError> {
    value.map(|v| fetchable("callback_url", v, guard)).transpose()
}

/// A page's JSON string, or why it is not one (`field` names it).
fn html_of(field: &str, decoded: Result<Vec<u8>, StringError>) -> Result<Vec<u8>, TaskError> {
    decoded.map_err(|e| match e {
        StringError::NotAString(_) => unprocessable("invalid-field", format!("{field}: {}", e.detail())),
        StringError::Malformed(_) => {
            TaskError::new(400, "malformed-json", format!("the body is not valid JSON: {field}: {}", e.detail()))
        }
    })
}

/// Whether a page is nothing but whitespace.
fn blank(page: &[u8]) -> bool {
    // Stops at the first visible ASCII byte: a page is not scanned to be let through.
    page.iter().all(|b| b.is_ascii_whitespace() || !b.is_ascii()) && String::from_utf8_lossy(page).trim().is_empty()
}

/// The page of a JSON request (or batch item): `html` decoded, or `url`.
fn page(
    html: Option<Vec<u8>>,
    url: Option<String>,
    page_url: Option<String>,
    include: (Option<bool>, Option<bool>),
    guard: &Guard,
) -> Result<PageInput, TaskError> {
    let page_url = match page_url {
        Some(u) => Some(Url::parse(&u).map_err(|e| unprocessable("bad-page-url", format!("page_url {u:?}: {e}")))?),
        None => None,
    };
    let (source, options) = match (html, url) {
        (Some(html), None) if blank(&html) => return Err(unprocessable("empty-page", "html is empty")),
        (Some(html), None) => {
            // JSON text is Unicode, whatever `<meta charset>` the page declares.
            let options = seo::Options { unicode: true, ..options(page_url, include) };
            (Source::Html(html), options)
        }
        (None, Some(_)) if page_url.is_some() => {
            return Err(unprocessable("conflicting-input", "page_url goes with html; a fetched page's URL is its own"))
        }
        (None, Some(url)) => (Source::Url(fetchable("url", &url, guard)?), options(None, include)),
        (None, None) => return Err(unprocessable("missing-input", "give either html or url")),
        (Some(_), Some(_)) => return Err(unprocessable("conflicting-input", "give either html or url, not both")),
    };
    Ok(PageInput { source, options, cache: Directives::default() })
}

/// What to analyse of a page at `url`: `include` is (links, images), each
/// on unless asked off.
fn options(url: Option<Url>, (include_links, include_images): (Option<bool>, Option<bool>)) -> seo::Options {
    seo::Options {
        url,
        include_links: include_links.unwrap_or(true),
        include_images: include_images.unwrap_or(true),
        ..seo::Options::default()
    }
}

/// Parses and checks the body of `POST /analyze` and `/analyze/async`. The
/// body is taken by value: a raw page becomes the input without a copy, and
/// the request's `content_type` is the page's (its charset decodes it).
pub fn parse_analyze(
    kind: BodyKind,
    body: Vec<u8>,
    content_type: Option<String>,
    limits: InputLimits,
    guard: &Guard,
) -> Result<AnalyzeRequest, TaskError> {
    if kind == BodyKind::Html {
        if blank(&body) {
            return Err(unprocessable("empty-page", "the request body is empty"));
        }
        let options = seo::Options { content_type, ..options(None, (None, None)) };
        let page = PageInput { source: Source::Html(body), options, cache: Directives::default() };
        return Ok(AnalyzeRequest { page, priority: Priority::Normal, timeout: None, callback: None });
    }
    // The page's string is decoded in the body's own buffer; serde_json
    // parses what is left (see `json_string`).
    let (lifted, rest) = match lift(body, "html") {
        Lift::Found { value, rest } => (Some(html_of("html", value)?), rest),
        Lift::NotFound(body) => (None, body),
    };
    let fields: Fields<'_> = from_json(&rest)?;
    let callback = callback(fields.callback_url.as_deref(), guard)?;
    let priority = priority(fields.priority.as_deref())?;
    let timeout = timeout(fields.timeout_ms.as_ref(), limits)?;
    let Fields { html, url, page_url, include_links, include_images, .. } = fields;
    let html = match lifted {
        Some(page) => Some(page),
        None => html.map(|raw| html_of("html", string_of(raw))).transpose()?,
    };
    let page = page(html, url, page_url, (include_links, include_images), guard)?;
    Ok(AnalyzeRequest { page, priority, timeout, callback })
}

/// Parses and checks the body of `POST /bulk/analyze/async`.
pub fn parse_bulk(body: &[u8], limits: InputLimits, guard: &Guard) -> Result<BulkRequest, TaskError> {
    let fields: BulkFields<'_> = from_json(body)?;
    let callback = callback(fields.callback_url.as_deref(), guard)?;
    if fields.items.is_empty() {
        return Err(unprocessable("empty-batch", "items is empty"));
    }
    if fields.items.len() > limits.max_bulk_items {
        return Err(TaskError::new(
            413,
            "too-many-items",
            format!("{} items; at most {} per batch", fields.items.len(), limits.max_bulk_items),
        ));
    }
    let priority = priority(fields.priority.as_deref())?;
    let timeout = timeout(fields.timeout_ms.as_ref(), limits)?;
    // Every item is checked, and every bad one reported by index.
    let mut items = Vec::with_capacity(fields.items.len());
    let mut bad: Vec<(usize, TaskError)> = Vec::new();
    for (index, item) in fields.items.into_iter().enumerate() {
        let html = item.html.map(|raw| html_of("html", string_of(raw)));
        let include = (fields.include_links, fields.include_images);
        match html.transpose().and_then(|html| page(html, item.url, item.page_url, include, guard)) {
            Ok(page) => items.push(page),
            Err(e) => bad.push((index, e)),
        }
    }
    if let Some((_, first)) = bad.first() {
        let same = bad.iter().all(|(_, e)| e.code == first.code && e.status == first.status);
        let (status, code) = if same { (first.status, first.code.as_str()) } else { (422, "invalid-items") };
        let detail = bad.iter().map(|(i, e)| format!("item {i}: {}", e.detail)).collect::<Vec<_>>().join("; ");
        return Err(TaskError::new(status, code, format!("{} bad items: {detail}", bad.len())));
    }
    Ok(BulkRequest { items, priority, timeout, callback })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: InputLimits = InputLimits { max_timeout: Duration::from_secs(60), max_bulk_items: 3 };

    fn code(result: Result<AnalyzeRequest, TaskError>) -> (u16, String) {
        let e = result.unwrap_err();
        (e.status, e.code)
    }

    #[test]
    fn bad_bodies_have_clear_codes() {
        let j = |s: &str| parse_analyze(BodyKind::Json, s.as_bytes().to_vec(), None, LIMITS, &Guard::default());
        assert_eq!(code(j("{")), (400, "malformed-json".into()));
        assert_eq!(code(j("{}")), (422, "missing-input".into()));
        assert_eq!(code(j(r#"{"html":"<p>","url":"https://a"}"#)), (422, "conflicting-input".into()));
        assert_eq!(code(j(r#"{"html":"<p>","priority":"urgent"}"#)), (422, "bad-priority".into()));
        assert_eq!(code(j(r#"{"html":"<p>","timeout_ms":-5}"#)), (422, "bad-timeout".into()));
        assert_eq!(code(j(r#"{"html":"<p>","timeout_ms":1e12}"#)), (422, "bad-timeout".into()));
        assert_eq!(code(j(r#"{"html":"<p>","timeout_ms":99999999}"#)), (422, "bad-timeout".into()));
        assert_eq!(code(j(r#"{"html":"<p>","colour":"red"}"#)), (422, "invalid-field".into()));
        assert_eq!(code(j(r#"{"html":"<p>","include_images":null}"#)), (422, "invalid-field".into()));
        assert_eq!(code(j(r#"{"html":null,"url":"https://a.example/"}"#)), (422, "invalid-field".into()));
        assert_eq!(j(r#"{"html":5}"#).unwrap_err().detail, "html: invalid type: number, expected a string");
        assert_eq!(code(j(r#"{"html":"<p>\ud800</p>"}"#)), (400, "malformed-json".into()));
        assert_eq!(code(j(r#"{"html":"<p>\x</p>"}"#)), (400, "malformed-json".into()));
        assert_eq!(code(j("{\"html\":\"<p>\n</p>\"}")), (400, "malformed-json".into()));
        assert_eq!(code(j(r#"{"html":" \n\u00a0\t"}"#)), (422, "empty-page".into()));
        let escaped = j(r#"{"include_links":false,"html":"<a href=\"/x\">caf\u00e9 \ud83d\ude00</a>\n"}"#).unwrap();
        assert!(matches!(escaped.page.source, Source::Html(ref h) if h == "<a href=\"/x\">café 😀</a>\n".as_bytes()));
        assert_eq!(code(j(r#"{"html":"<p>"} trailing"#)), (400, "malformed-json".into()));
        let wrong = j(r#"{"url": 42}"#).unwrap_err();
        assert!(wrong.detail.starts_with("url: invalid type: integer `42`"), "{}", wrong.detail);
        assert_eq!(code(j(r#"{"html":"  "}"#)), (422, "empty-page".into()));
        assert_eq!(code(j(r#"{"html":"<p>","page_url":"::"}"#)), (422, "bad-page-url".into()));
        assert_eq!(code(j(r#"{"url":"not a url"}"#)), (422, "bad-url".into()));
        assert_eq!(code(j(r#"{"url":"file:///etc/passwd"}"#)), (403, "blocked-scheme".into()));
        assert_eq!(code(j(r#"{"url":"gopher://example.com/"}"#)), (403, "blocked-scheme".into()));
        assert_eq!(code(j(r#"{"url":"http://u:p@example.com/"}"#)), (422, "url-has-credentials".into()));
        assert_eq!(code(j(r#"{"url":"http://example.com:22/"}"#)), (403, "blocked-port".into()));
        assert_eq!(code(j(r#"{"url":"http://192.168.1.1/"}"#)), (403, "blocked-address".into()));
        assert_eq!(code(j(r#"{"html":"<p>","callback_url":"ftp://example.com/"}"#)), (403, "blocked-scheme".into()));
        let fetch = j(r#"{"url":"https://example.com/a","callback_url":"https://example.com/cb"}"#).unwrap();
        assert!(matches!(fetch.page.source, Source::Url(ref u) if u.as_str() == "https://example.com/a"));
        assert_eq!(fetch.callback.unwrap().as_str(), "https://example.com/cb");
        let ok = j(r#"{"html":"<p>","priority":"high","timeout_ms":500,"include_links":false}"#).unwrap();
        assert_eq!((ok.priority, ok.timeout), (Priority::High, Some(Duration::from_millis(500))));
        assert!(!ok.page.options.include_links);
    }

    #[test]
    fn bulk_bodies() {
        let b = |s: &str| {
            parse_bulk(s.as_bytes(), LIMITS, &Guard::default()).map(|r| r.items.len()).map_err(|e| (e.status, e.code))
        };
        assert_eq!(b(r#"{"items":[]}"#), Err((422, "empty-batch".into())));
        assert_eq!(
            b(r#"{"items":[{"html":"a"},{"html":"b"},{"html":"c"},{"html":"d"}]}"#),
            Err((413, "too-many-items".into()))
        );
        assert_eq!(b(r#"{"items":[{"html":"a"},{}]}"#), Err((422, "missing-input".into())));
        let all = parse_bulk(
            br#"{"items":[{"url":"http://example.com:22/"},{"html":"b"},{"url":"http://10.0.0.7/"}]}"#,
            LIMITS,
            &Guard::default(),
        )
        .unwrap_err();
        assert_eq!((all.status, all.code.as_str()), (422, "invalid-items"));
        assert!(
            all.detail.starts_with("2 bad items: item 0: url: port 22") && all.detail.contains("item 2: url: 10.0.0.7"),
            "{}",
            all.detail
        );
        let wrong = parse_bulk(br#"{"items":[{"html":"a"},{"html":"b"},{"html":7}]}"#, LIMITS, &Guard::default());
        let wrong = wrong.unwrap_err();
        assert_eq!(
            (wrong.code.as_str(), wrong.detail.as_str()),
            ("invalid-field", "1 bad items: item 2: html: invalid type: number, expected a string")
        );
        assert_eq!(b(r#"{"items":[{"html":"a"},{"html":"b"}],"priority":"low"}"#), Ok(2));
    }

    #[test]
    fn pages_round_trip_through_task_data() {
        let j =
            |s: &str| parse_analyze(BodyKind::Json, s.as_bytes().to_vec(), None, LIMITS, &Guard::default()).unwrap();
        let sent = j(r#"{"html":"<p>hi","page_url":"https://a.example/x","include_links":false}"#);
        let spec = sent.into_spec(Some("key".into()), None);
        assert_eq!(spec.options.idempotency_key.as_deref(), Some("key"));
        let TaskInput::One(payload) = spec.input else { panic!("one page") };
        let page = PageInput::from_payload(payload).unwrap();
        assert!(matches!(page.source, Source::Html(ref h) if h == b"<p>hi"));
        assert_eq!(page.options.url.unwrap().as_str(), "https://a.example/x");
        assert!(!page.options.include_links && page.options.include_images);
        let fetched = j(r#"{"url":"https://a.example/y","priority":"low","timeout_ms":900}"#).into_spec(None, None);
        assert_eq!((fetched.options.priority, fetched.options.timeout_ms), (Priority::Low, Some(900)));
        let TaskInput::One(payload) = fetched.input else { panic!("one page") };
        let page = PageInput::from_payload(payload).unwrap();
        assert!(matches!(page.source, Source::Url(ref u) if u.as_str() == "https://a.example/y"));
        let raw = parse_analyze(
            BodyKind::Html,
            b"<p>\xe9".to_vec(),
            Some("text/html; charset=iso-8859-1".into()),
            LIMITS,
            &Guard::default(),
        )
        .unwrap();
        let TaskInput::One(payload) = raw.into_spec(None, None).input else { panic!("one page") };
        let page = PageInput::from_payload(payload).unwrap();
        assert_eq!(page.options.content_type.as_deref(), Some("text/html; charset=iso-8859-1"));
        let damaged = Payload { args: serde_json::json!({"url": 5}), body: Vec::new() };
        assert_eq!(PageInput::from_payload(damaged).unwrap_err().code, "damaged-task");
    }

    #[test]
    fn content_types() {
        assert_eq!(BodyKind::from_content_type(Some(b"application/json; charset=utf-8")), Some(BodyKind::Json));
        assert_eq!(BodyKind::from_content_type(Some(b"Text/HTML")), Some(BodyKind::Html));
        assert_eq!(BodyKind::from_content_type(None), Some(BodyKind::Json));
        assert_eq!(BodyKind::from_content_type(Some(b"image/png")), None);
    }
}
