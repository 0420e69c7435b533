//! Prometheus remote read (`POST /api/v1/read`), per tenant: every query of a request gets
//! the tenant's matcher.
//!
//! This module knows protobuf and snappy only: no proxy-wasm, no Keystone, no PromQL. A
//! request goes through it in four steps:
//!
//! 1. [`check_headers`]: `Content-Type: application/x-protobuf` and `Content-Encoding:
//!    snappy`, as Prometheus' remote read client sends them (`storage/remote/client.go`, 2.42
//!    and since), or Thanos sidecar's `application/x-stream-protobuf`; anything else is 415.
//! 2. [`decode`]: snappy's block format, with the length prefix checked against
//!    [`Limits::max_decoded_bytes`] before the output is allocated (remote write's
//!    [`wire::decompress`](super::remote_write::wire::decompress)); then a wire-format
//!    pre-scan that counts queries and matchers within [`Limits`] and refuses every field the
//!    messages do not have, before anything is decoded; then prost, into the hand-written
//!    messages of [`messages`] (every field of `remote.proto` and `types.proto` of v2.42.0).
//! 3. [`enforce`]: every query gets one more matcher, `label="value"` for one value or
//!    `label=~"v1|v2|…"` (each value regex-escaped as Go's `regexp.QuoteMeta` does; the
//!    server anchors it) for several. The user's own matchers stay, the tenant label's too:
//!    matchers are ANDed, so they can only narrow what the tenant's matcher allows.
//! 4. [`encode`]: protobuf, then snappy's block format. Only bytes the filter encoded go
//!    upstream.
//!
//! # Why the response passes untouched
//!
//! Remote read answers per query (`SAMPLES`: one `QueryResult` per query, in order;
//! `STREAMED_XOR_CHUNKS`: frames tagged with the query's index), and the server returns for
//! a query only series that match every one of its matchers (`querier.Select(…, matchers…)`
//! in `storage/remote/read_handler.go`). Every query carries the tenant matcher, so every
//! series in the answer has the tenant label with an allowed value: there is nothing to
//! filter, and the streamed format, which the filter could not rewrite without buffering
//! it, needs no rewriting. Queries are never dropped or reordered, so the answer's indices
//! still match the client's queries. A request with no queries selects nothing and passes
//! as it is. Hints are advisory and select nothing. The series the server adds its own
//! `external_labels` to are still its own; an upstream whose `external_labels` include the
//! tenant label (`project="X"`) holds only X's data, and Prometheus turns `project="X"` into
//! "has no project label" there, which is still X's data only.
//!
//! # Status codes
//!
//! - **400** ([`ErrorKind::Malformed`]): an empty body, the framed snappy format, corrupt
//!   snappy, a protobuf message that does not decode, a field the messages do not have (a
//!   remote write body sent here), a matcher type other than `EQ`, `NEQ`, `RE`, `NRE`, a
//!   string that is not UTF-8.
//! - **413** ([`ErrorKind::TooLarge`]): over [`Limits::max_decoded_bytes`] (or a length prefix
//!   that claims more), [`Limits::max_queries`], [`Limits::max_matchers`],
//!   [`limits::MAX_GROUPING`] or [`limits::MAX_RESPONSE_TYPES`].
//! - **415** ([`ErrorKind::UnsupportedMediaType`]): another `Content-Type` or
//!   `Content-Encoding`.

pub mod limits;
pub mod messages;

pub use limits::Limits;
pub use messages::{label_matcher, read_request, LabelMatcher, Query, ReadHints, ReadRequest};

use super::promql::Tenant;
use super::remote_write::{self, wire};
use label_matcher::Type;
use prost::Message;
use std::fmt;

/// The media type Prometheus' remote read client sends.
const MEDIA_TYPE: &str = "application/x-protobuf";
/// What Thanos' sidecar sends for the same `ReadRequest` (`pkg/store/prometheus.go`, every
/// version since 0.x); Prometheus reads the body whatever the request's `Content-Type` says.
/// Taking it is safe: the pre-scan holds the body to `ReadRequest`'s fields, whatever the
/// header names.
const THANOS_MEDIA_TYPE: &str = "application/x-stream-protobuf";
/// The message, if the `Content-Type` names it (`proto=`).
const PROTO: &str = "prometheus.ReadRequest";

/// Checks a read request's `Content-Type` (`application/x-protobuf`, or Thanos' spelling
/// `application/x-stream-protobuf`; case-insensitive, other
/// parameters ignored, a `proto` parameter must name `prometheus.ReadRequest`) and
/// `Content-Encoding` (`snappy`). Missing or other: 415.
pub fn check_headers(
    content_type: Option<&str>,
    content_encoding: Option<&str>,
) -> Result<(), ReadError> {
    let Some(header) = content_type else {
        return Err(ReadError::unsupported_media_type(format!(
            "remote read needs a Content-Type header: {MEDIA_TYPE}"
        )));
    };
    let mut parts = header.split(';');
    let media = parts.next().unwrap_or_default().trim();
    if !media.eq_ignore_ascii_case(MEDIA_TYPE) && !media.eq_ignore_ascii_case(THANOS_MEDIA_TYPE) {
        return Err(ReadError::unsupported_media_type(format!(
            "unsupported Content-Type \"{}\": remote read takes {MEDIA_TYPE} (a snappy-compressed \
             {PROTO})",
            shorten(header)
        )));
    }
    for parameter in parts.map(str::trim).filter(|p| !p.is_empty()) {
        let Some((name, value)) = parameter.split_once('=') else {
            return Err(ReadError::unsupported_media_type(format!(
                "Content-Type \"{}\": parameter \"{}\" is not name=value",
                shorten(header),
                shorten(parameter)
            )));
        };
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value);
        if name.trim().eq_ignore_ascii_case("proto") && !value.eq_ignore_ascii_case(PROTO) {
            return Err(ReadError::unsupported_media_type(format!(
                "unsupported message proto=\"{}\": remote read takes proto={PROTO}",
                shorten(value)
            )));
        }
    }
    match content_encoding.map(str::trim) {
        Some(e) if e.eq_ignore_ascii_case("snappy") => Ok(()),
        Some(e) => Err(ReadError::unsupported_media_type(format!(
            "unsupported Content-Encoding \"{}\": remote read bodies are snappy-compressed \
             (Content-Encoding: snappy, block format)",
            shorten(e)
        ))),
        None => Err(ReadError::unsupported_media_type(
            "remote read needs Content-Encoding: snappy (a snappy block-compressed body)",
        )),
    }
}

/// Decodes a request body (snappy block format, then `prometheus.ReadRequest`) within
/// `limits`.
pub fn decode(body: &[u8], limits: &Limits) -> Result<ReadRequest, ReadError> {
    let raw = decompress(body, limits.max_decoded_bytes)?;
    limits::prescan(&raw, limits)?;
    let req = ReadRequest::decode(raw.as_slice()).map_err(|e| {
        ReadError::malformed(format!(
            "the body is not a valid {PROTO} protobuf message: {e}"
        ))
    })?;
    for (i, query) in req.queries.iter().enumerate() {
        for (j, m) in query.matchers.iter().enumerate() {
            if Type::try_from(m.r#type).is_err() {
                return Err(ReadError::malformed(format!(
                    "queries[{i}].matchers[{j}] has type {}, which is none of EQ (0), NEQ (1), RE (2), NRE (3)",
                    m.r#type
                )));
            }
        }
    }
    Ok(req)
}

/// Snappy's block format, with read's own messages for what a client can fix; the rest is
/// remote write's [`wire::decompress`].
fn decompress(body: &[u8], max_decoded_bytes: usize) -> Result<Vec<u8>, ReadError> {
    if body.is_empty() {
        return Err(ReadError::malformed(
            "empty body: a remote read request is a snappy-compressed prometheus.ReadRequest",
        ));
    }
    if body.starts_with(wire::FRAMED_MAGIC) {
        return Err(ReadError::malformed(
            "the body is in snappy's framed (stream) format: remote read requires the block \
             format (snappy.Encode, not a stream writer)",
        ));
    }
    if let Ok(claimed) = snap::raw::decompress_len(body) {
        if claimed > max_decoded_bytes {
            return Err(ReadError::too_large(format!(
                "the request decompresses to {claimed} bytes, more than the {max_decoded_bytes} \
                 this endpoint accepts"
            )));
        }
    }
    wire::decompress(body, max_decoded_bytes).map_err(|e| match e.kind() {
        remote_write::ErrorKind::TooLarge => ReadError::too_large(e.into_message()),
        _ => ReadError::malformed(e.into_message()),
    })
}

/// The tenant's matchers: `label="value"` for one value, `label=~"v1|v2|…"` (each value
/// escaped with [`quote_meta`]) for several. Empty values grant nothing and are left out;
/// with none left, two matchers that no series can match both (`label=""`, `label!=""`).
pub fn tenant_matchers(label: &str, values: &[String]) -> Vec<LabelMatcher> {
    let values: Vec<&str> = values
        .iter()
        .map(String::as_str)
        .filter(|v| !v.is_empty())
        .collect();
    match values.as_slice() {
        [] => vec![
            LabelMatcher::new(Type::Eq, label, ""),
            LabelMatcher::new(Type::Neq, label, ""),
        ],
        [one] => vec![LabelMatcher::new(Type::Eq, label, *one)],
        several => {
            let alternatives: Vec<String> = several.iter().map(|v| quote_meta(v)).collect();
            vec![LabelMatcher::new(Type::Re, label, alternatives.join("|"))]
        }
    }
}

/// Adds the tenant's matchers ([`tenant_matchers`]) after every query's own matchers, which
/// stay (ANDed, they only narrow). A request with no queries is left as it is.
pub fn enforce(req: &mut ReadRequest, label: &str, values: &[String]) {
    if req.queries.is_empty() {
        return;
    }
    let tenant = tenant_matchers(label, values);
    for query in &mut req.queries {
        query.matchers.extend(tenant.iter().cloned());
    }
}

/// [`enforce`] with a tenant's label and values.
pub fn enforce_tenant(req: &mut ReadRequest, tenant: &Tenant) {
    enforce(req, tenant.label(), tenant.values());
}

/// The body to forward: `req` as protobuf, snappy block-compressed. Send it with
/// `Content-Type: application/x-protobuf` and `Content-Encoding: snappy`.
pub fn encode(req: &ReadRequest) -> Result<Vec<u8>, ReadError> {
    wire::compress(&req.encode_to_vec()).map_err(|e| ReadError::too_large(e.into_message()))
}

/// `s` with every regex metacharacter escaped, as Go's `regexp.QuoteMeta` does: a backslash
/// before each of `\.+*?()|[]{}^$`, everything else (non-ASCII too) as it is.
pub fn quote_meta(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if r"\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A header value cut for an error message.
fn shorten(s: &str) -> String {
    remote_write::stamp::truncate(s, 120)
}

/// Why a request is refused; see the module documentation for the status codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The body is not a well-formed read request (400).
    Malformed,
    /// The request is over a size limit (413).
    TooLarge,
    /// The `Content-Type` or `Content-Encoding` is not remote read's (415).
    UnsupportedMediaType,
}

/// A refused request: a status and a message that tells the client what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadError {
    kind: ErrorKind,
    message: String,
}

impl ReadError {
    fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ReadError {
            kind,
            message: message.into(),
        }
    }

    pub(crate) fn malformed(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Malformed, message)
    }

    pub(crate) fn too_large(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::TooLarge, message)
    }

    pub(crate) fn unsupported_media_type(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::UnsupportedMediaType, message)
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The HTTP status to answer with.
    pub fn status(&self) -> u32 {
        match self.kind {
            ErrorKind::Malformed => 400,
            ErrorKind::TooLarge => 413,
            ErrorKind::UnsupportedMediaType => 415,
        }
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    pub fn into_message(self) -> String {
        self.message
    }
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status(), self.message)
    }
}

impl std::error::Error for ReadError {}

// ---------------------------------------------------------------------------------------
// The API's errors: how the filter answers a refused read request. The only part of this
// module that knows the filter's error type.
// ---------------------------------------------------------------------------------------

impl From<ReadError> for crate::error::ApiError {
    fn from(e: ReadError) -> Self {
        use crate::error::ApiError;
        let kind = e.kind();
        let message = e.into_message();
        match kind {
            ErrorKind::Malformed => ApiError::bad_data(message),
            ErrorKind::TooLarge => ApiError::too_large(message),
            ErrorKind::UnsupportedMediaType => ApiError::unsupported_media_type(message),
        }
    }
}

#[cfg(test)]
mod tests;
