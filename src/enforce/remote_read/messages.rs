//! Remote read's request: `prometheus.ReadRequest` (prompb `remote.proto`) with its `Query`,
//! and `prometheus.LabelMatcher` and `prometheus.ReadHints` (prompb `types.proto`), as of
//! Prometheus v2.42.0 (unchanged since, through 3.x), written by hand as prost messages.
//!
//! Every field of these messages is here under its field number, so that a decode and
//! re-encode loses nothing (prost would drop a field it does not know; the decoder refuses
//! such fields before prost sees them). Enumerations are kept as `i32`, so a value this
//! module does not know survives too. Strings are proto3 `string`s: bytes that are not UTF-8
//! are refused when decoding (400).
//!
//! The responses (`ReadResponse`, `ChunkedReadResponse`) are not here: they pass untouched.

/// `prometheus.ReadRequest`: the body of `POST /api/v1/read`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ReadRequest {
    #[prost(message, repeated, tag = "1")]
    pub queries: Vec<Query>,
    /// The response types the client takes, in order of preference (`read_request::ResponseType`);
    /// none means `SAMPLES`. Packed on the wire, as proto3 encodes them; unpacked is read too.
    #[prost(enumeration = "read_request::ResponseType", repeated, tag = "2")]
    pub accepted_response_types: Vec<i32>,
}

pub mod read_request {
    /// `prometheus.ReadRequest.ResponseType`.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
    #[repr(i32)]
    pub enum ResponseType {
        /// One `ReadResponse` with raw samples (snappy, `application/x-protobuf`).
        Samples = 0,
        /// Streamed, delimited `ChunkedReadResponse`s of XOR (or histogram) chunks.
        StreamedXorChunks = 1,
    }
}

/// `prometheus.Query`: the series matching every matcher, between the two timestamps.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Query {
    #[prost(int64, tag = "1")]
    pub start_timestamp_ms: i64,
    #[prost(int64, tag = "2")]
    pub end_timestamp_ms: i64,
    /// ANDed: a series is selected when it matches every one.
    #[prost(message, repeated, tag = "3")]
    pub matchers: Vec<LabelMatcher>,
    /// Absent and present-but-empty stay apart (Prometheus reads `hints != nil`).
    #[prost(message, optional, tag = "4")]
    pub hints: Option<ReadHints>,
}

/// `prometheus.LabelMatcher`. An absent label matches as the empty value; `RE` and `NRE`
/// values are anchored by the server (`^(?:value)$`).
#[derive(Clone, PartialEq, Eq, Hash, prost::Message)]
pub struct LabelMatcher {
    #[prost(enumeration = "label_matcher::Type", tag = "1")]
    pub r#type: i32,
    #[prost(string, tag = "2")]
    pub name: String,
    #[prost(string, tag = "3")]
    pub value: String,
}

impl LabelMatcher {
    pub fn new(
        kind: label_matcher::Type,
        name: impl Into<String>,
        value: impl Into<String>,
    ) -> LabelMatcher {
        LabelMatcher {
            r#type: kind as i32,
            name: name.into(),
            value: value.into(),
        }
    }
}

pub mod label_matcher {
    /// `prometheus.LabelMatcher.Type`.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
    #[repr(i32)]
    pub enum Type {
        /// `=`
        Eq = 0,
        /// `!=`
        Neq = 1,
        /// `=~` (anchored)
        Re = 2,
        /// `!~` (anchored)
        Nre = 3,
    }
}

/// `prometheus.ReadHints`: what the client's query will do with the series (advisory; they
/// select nothing).
#[derive(Clone, PartialEq, prost::Message)]
pub struct ReadHints {
    #[prost(int64, tag = "1")]
    pub step_ms: i64,
    /// The surrounding function or aggregation, e.g. `rate` or `sum`.
    #[prost(string, tag = "2")]
    pub func: String,
    #[prost(int64, tag = "3")]
    pub start_ms: i64,
    #[prost(int64, tag = "4")]
    pub end_ms: i64,
    /// Label names of the aggregation's `by` or `without`.
    #[prost(string, repeated, tag = "5")]
    pub grouping: Vec<String>,
    /// `by` (true) or `without` (false).
    #[prost(bool, tag = "6")]
    pub by: bool,
    #[prost(int64, tag = "7")]
    pub range_ms: i64,
}
