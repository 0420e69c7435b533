//! Prometheus remote write (`POST /api/v1/write`), Remote-Write 1.0 and 2.0: every series a
//! tenant writes gets the tenant label.
//!
//! This module knows protobuf and snappy only: no proxy-wasm, no Keystone, no PromQL. A
//! request goes through it in four steps:
//!
//! 1. [`Schema::from_content_type`] and [`check_content_encoding`]: which message the body
//!    is (`application/x-protobuf`, `proto=prometheus.WriteRequest` or
//!    `proto=io.prometheus.write.v2.Request`), and that it is snappy-compressed.
//! 2. [`decode`]: snappy's block format, with the length prefix checked against
//!    [`Limits::max_decoded_bytes`] before the output is allocated (a decompression bomb costs
//!    nothing); then a wire-format pre-scan that counts series and bounds the decoded message's
//!    memory before it is decoded; then prost, into the messages of [`v1`] or [`v2`]
//!    (written by hand from the spec's `.proto` files, every field included); then the
//!    per-series limits.
//! 3. [`enforce`]: each series' labels lose every label named like the tenant label and get
//!    `label="value"`, sorted by name with unique names; 2.0's refs into the symbols table are
//!    rewritten the same way ([`stamp`]). 1.0's metric family metadata is forwarded or dropped.
//! 4. [`encode`]: protobuf, then snappy's block format. The filter forwards only bytes it
//!    encoded itself, even for unrestricted credentials: what the upstream reads is exactly
//!    what was checked. Samples, exemplars, native histograms and metadata survive unchanged.
//!
//! The filter runs steps 2 to 4 as one: [`rewrite`] reads the decompressed body in place
//! (labels are slices of it, nothing is allocated per series), stamps each series as it is
//! read and writes it at once in prost's encoding (`proto.rs`), about five times faster than
//! building the messages. Its output is byte for byte `encode` of `enforce` of `decode`, it
//! refuses what they refuse (it runs them to say why), and its tests hold it to that
//! (`equivalence.rs`); the steps apart stay as the reference and for tests.
//!
//! # Status codes
//!
//! A sender drops a request answered with 4xx (but 429) and retries 5xx with backoff (both
//! specs), so the status says whether the data can ever be written:
//!
//! - **400** ([`ErrorKind::Malformed`], [`ErrorKind::Invalid`], [`ErrorKind::Conflict`]): the
//!   request can never succeed: an empty body, the framed snappy format, corrupt snappy, a
//!   protobuf message that does not decode, 2.0 refs outside the symbols table, a series with
//!   two labels of one name, more labels than [`Limits::max_labels_per_series`] or a label
//!   longer than [`Limits::max_label_bytes`] (invalid samples, as the spec words it; the
//!   message names the series), or, with [`OnConflict::Reject`], a series that names another
//!   tenant (the message names the series).
//! - **413** ([`ErrorKind::TooLarge`]): the request as a whole is over a size limit
//!   ([`Limits::max_decoded_bytes`], [`Limits::max_series`], [`Limits::max_memory_bytes`]); a
//!   sender with smaller batches succeeds. Senders drop it like any 4xx, so the limits are
//!   generous.
//! - **415** ([`ErrorKind::UnsupportedMediaType`]): a missing or other `Content-Type`, an
//!   unknown `proto`, or a `Content-Encoding` other than `snappy`, as the 2.0 spec requires
//!   (a 2.x sender may retry with the other message).
//! - **5xx** are not this module's: Keystone being unavailable is answered elsewhere (503, so
//!   the sender retries and loses nothing). The one 5xx here, [`ErrorKind::Internal`] (500),
//!   is a misconfiguration (an empty tenant label or value), which a sender should retry
//!   rather than drop.

pub mod limits;
mod proto;
mod rewrite;
pub mod stamp;
pub mod v1;
pub mod v2;
pub mod wire;

pub use limits::Limits;
pub use rewrite::{rewrite, Rewritten};
pub use stamp::{Enforced, MetadataPolicy, OnConflict, Policy, Stamp, Tenancy};
pub use wire::check_content_encoding;

use prost::Message;
use std::fmt;

/// Which remote write message a request holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schema {
    /// Remote-Write 1.0, `prometheus.WriteRequest`.
    V1,
    /// Remote-Write 2.0, `io.prometheus.write.v2.Request`.
    V2,
}

/// A decoded request, within its [`Limits`].
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded {
    V1(v1::WriteRequest),
    V2(v2::Request),
}

impl Decoded {
    pub fn schema(&self) -> Schema {
        match self {
            Decoded::V1(_) => Schema::V1,
            Decoded::V2(_) => Schema::V2,
        }
    }

    pub fn series_count(&self) -> usize {
        match self {
            Decoded::V1(req) => req.timeseries.len(),
            Decoded::V2(req) => req.timeseries.len(),
        }
    }

    /// A 1.0 request with metric family metadata and no series, as Prometheus sends them
    /// (`metadata_config`). 2.0 has no such requests: its metadata belongs to a series.
    pub fn is_metadata_only(&self) -> bool {
        matches!(self, Decoded::V1(req) if req.timeseries.is_empty() && !req.metadata.is_empty())
    }

    /// No series and no metadata: nothing to write (e.g. a metadata-only request after
    /// [`MetadataPolicy::Drop`]).
    pub fn is_empty(&self) -> bool {
        match self {
            Decoded::V1(req) => req.timeseries.is_empty() && req.metadata.is_empty(),
            Decoded::V2(req) => req.timeseries.is_empty(),
        }
    }
}

/// Decodes a request body (snappy block format, then `schema`'s message) within `limits`.
pub fn decode(body: &[u8], schema: Schema, limits: &Limits) -> Result<Decoded, WriteError> {
    decode_raw(
        &wire::decompress(body, limits.max_decoded_bytes)?,
        schema,
        limits,
    )
}

/// [`decode`] after the decompression: `raw` is the protobuf message.
fn decode_raw(raw: &[u8], schema: Schema, limits: &Limits) -> Result<Decoded, WriteError> {
    limits::prescan(raw, schema, limits)?;
    let not_decoded = |e: prost::DecodeError| {
        WriteError::malformed(format!(
            "the body is not a valid {} protobuf message: {e}",
            schema.proto()
        ))
    };
    let decoded = match schema {
        Schema::V1 => Decoded::V1(v1::WriteRequest::decode(raw).map_err(not_decoded)?),
        Schema::V2 => Decoded::V2(v2::Request::decode(raw).map_err(not_decoded)?),
    };
    limits::check_series(&decoded, limits)?;
    Ok(decoded)
}

/// Applies `policy` to every series of `decoded` (see [`stamp`]). On error the request is
/// refused and `decoded` is left half-rewritten: drop it.
pub fn enforce(decoded: &mut Decoded, policy: &Policy) -> Result<Enforced, WriteError> {
    stamp::apply(decoded, policy)
}

/// The body to forward: `decoded` as protobuf, snappy block-compressed. Send it with
/// [`Schema::content_type`] and `Content-Encoding: snappy`.
pub fn encode(decoded: &Decoded) -> Result<Vec<u8>, WriteError> {
    let message = match decoded {
        Decoded::V1(req) => req.encode_to_vec(),
        Decoded::V2(req) => req.encode_to_vec(),
    };
    wire::compress(&message)
}

/// Why a request is refused; see the module documentation for the status codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The body is not a well-formed request (400).
    Malformed,
    /// A series is invalid: duplicate label names, over a per-series limit (400).
    Invalid,
    /// A series names another tenant, with [`OnConflict::Reject`] (400).
    Conflict,
    /// The request is over a size limit (413).
    TooLarge,
    /// The `Content-Type` or `Content-Encoding` is not remote write's (415).
    UnsupportedMediaType,
    /// The filter is misconfigured (500: the sender retries).
    Internal,
}

/// A refused request: a status and a message that tells the sender what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteError {
    kind: ErrorKind,
    message: String,
}

impl WriteError {
    fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        WriteError {
            kind,
            message: message.into(),
        }
    }

    pub(crate) fn malformed(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Malformed, message)
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Invalid, message)
    }

    pub(crate) fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Conflict, message)
    }

    pub(crate) fn too_large(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::TooLarge, message)
    }

    pub(crate) fn unsupported_media_type(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::UnsupportedMediaType, message)
    }

    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The HTTP status to answer with.
    pub fn status(&self) -> u32 {
        match self.kind {
            ErrorKind::Malformed | ErrorKind::Invalid | ErrorKind::Conflict => 400,
            ErrorKind::TooLarge => 413,
            ErrorKind::UnsupportedMediaType => 415,
            ErrorKind::Internal => 500,
        }
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    pub fn into_message(self) -> String {
        self.message
    }
}

impl fmt::Display for WriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status(), self.message)
    }
}

impl std::error::Error for WriteError {}

#[cfg(test)]
mod equivalence;
#[cfg(test)]
mod tests;
