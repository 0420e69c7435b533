//! Remote Write 2.0: `io.prometheus.write.v2.Request` (prompb `io/prometheus/write/v2/types.proto`,
//! spec 2.0-rc.4), written by hand as prost messages with every field of the spec under its
//! field number, so that a decode and re-encode loses nothing (prost drops unknown fields).
//!
//! Strings are interned: `symbols` holds each string once, `symbols[0]` is `""`, and the
//! messages refer to strings by index (`*_ref`, `labels_refs`).
//! `TimeSeries.created_timestamp` (field 6) is the per-series start timestamp of 2.0-rc.3,
//! which Prometheus 3.0 to 3.7 still send; rc.4 moved it to `Sample` and `Histogram`
//! (`start_timestamp`) and reserves 6. It is kept so that it survives the round trip too.

/// `io.prometheus.write.v2.Request`: the body of a Remote Write 2.0 request. Fields 1 to 3
/// are reserved (they are `prometheus.WriteRequest`'s).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Request {
    #[prost(string, repeated, tag = "4")]
    pub symbols: Vec<String>,
    #[prost(message, repeated, tag = "5")]
    pub timeseries: Vec<TimeSeries>,
}

/// `io.prometheus.write.v2.TimeSeries`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TimeSeries {
    /// Name and value refs into `symbols`, in pairs, sorted by name.
    #[prost(uint32, repeated, tag = "1")]
    pub labels_refs: Vec<u32>,
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
    /// Native histogram samples.
    #[prost(message, repeated, tag = "3")]
    pub histograms: Vec<Histogram>,
    #[prost(message, repeated, tag = "4")]
    pub exemplars: Vec<Exemplar>,
    #[prost(message, optional, tag = "5")]
    pub metadata: Option<Metadata>,
    /// 2.0-rc.3's start timestamp (reserved in rc.4; see the module's documentation).
    #[prost(int64, tag = "6")]
    pub created_timestamp: i64,
}

/// `io.prometheus.write.v2.Exemplar`; its labels are not the series' labels.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Exemplar {
    #[prost(uint32, repeated, tag = "1")]
    pub labels_refs: Vec<u32>,
    #[prost(double, tag = "2")]
    pub value: f64,
    #[prost(int64, tag = "3")]
    pub timestamp: i64,
}

/// `io.prometheus.write.v2.Sample`; timestamps in milliseconds, 0 meaning no start timestamp.
#[derive(Clone, Copy, PartialEq, prost::Message)]
pub struct Sample {
    #[prost(double, tag = "1")]
    pub value: f64,
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
    #[prost(int64, tag = "3")]
    pub start_timestamp: i64,
}

/// `io.prometheus.write.v2.Metadata`: the series' type, help and unit (refs into `symbols`,
/// 0 for none; field 2 is unused by the spec).
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub struct Metadata {
    #[prost(enumeration = "metadata::MetricType", tag = "1")]
    pub r#type: i32,
    #[prost(uint32, tag = "3")]
    pub help_ref: u32,
    #[prost(uint32, tag = "4")]
    pub unit_ref: u32,
}

pub mod metadata {
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
    #[repr(i32)]
    pub enum MetricType {
        Unspecified = 0,
        Counter = 1,
        Gauge = 2,
        Histogram = 3,
        Gaugehistogram = 4,
        Summary = 5,
        Info = 6,
        Stateset = 7,
    }
}

/// `io.prometheus.write.v2.Histogram`: a native histogram sample, integer or float,
/// exponential or with custom buckets (schema -53 and `custom_values`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Histogram {
    #[prost(oneof = "histogram::Count", tags = "1, 2")]
    pub count: Option<histogram::Count>,
    #[prost(double, tag = "3")]
    pub sum: f64,
    #[prost(sint32, tag = "4")]
    pub schema: i32,
    #[prost(double, tag = "5")]
    pub zero_threshold: f64,
    #[prost(oneof = "histogram::ZeroCount", tags = "6, 7")]
    pub zero_count: Option<histogram::ZeroCount>,
    #[prost(message, repeated, tag = "8")]
    pub negative_spans: Vec<BucketSpan>,
    #[prost(sint64, repeated, tag = "9")]
    pub negative_deltas: Vec<i64>,
    #[prost(double, repeated, tag = "10")]
    pub negative_counts: Vec<f64>,
    #[prost(message, repeated, tag = "11")]
    pub positive_spans: Vec<BucketSpan>,
    #[prost(sint64, repeated, tag = "12")]
    pub positive_deltas: Vec<i64>,
    #[prost(double, repeated, tag = "13")]
    pub positive_counts: Vec<f64>,
    #[prost(enumeration = "histogram::ResetHint", tag = "14")]
    pub reset_hint: i32,
    #[prost(int64, tag = "15")]
    pub timestamp: i64,
    #[prost(double, repeated, tag = "16")]
    pub custom_values: Vec<f64>,
    #[prost(int64, tag = "17")]
    pub start_timestamp: i64,
}

pub mod histogram {
    /// The same oneofs, with the same numbers, as 1.0's histogram.
    pub use crate::enforce::remote_write::v1::histogram::{Count, ZeroCount};

    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
    #[repr(i32)]
    pub enum ResetHint {
        Unspecified = 0,
        Yes = 1,
        No = 2,
        Gauge = 3,
    }
}

/// `io.prometheus.write.v2.BucketSpan`: the same message, with the same numbers, as 1.0's.
pub use super::v1::BucketSpan;

impl Request {
    /// The string `r` refers to, if it is in the table.
    pub fn symbol(&self, r: u32) -> Option<&str> {
        symbol(&self.symbols, r)
    }

    /// A series' labels as strings, `None` if its refs are odd in number or out of the table.
    pub fn labels(&self, series: &TimeSeries) -> Option<Vec<(&str, &str)>> {
        labels(&self.symbols, &series.labels_refs)
    }
}

pub(crate) fn symbol(symbols: &[String], r: u32) -> Option<&str> {
    symbols.get(usize::try_from(r).ok()?).map(String::as_str)
}

pub(crate) fn labels<'a>(symbols: &'a [String], refs: &[u32]) -> Option<Vec<(&'a str, &'a str)>> {
    if !refs.len().is_multiple_of(2) {
        return None;
    }
    refs.chunks_exact(2)
        .map(|pair| match *pair {
            [n, v] => Some((symbol(symbols, n)?, symbol(symbols, v)?)),
            _ => None,
        })
        .collect()
}
