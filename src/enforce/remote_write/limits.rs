//! The limits a request must keep, checked in two passes:
//!
//! 1. [`prescan`], on the decompressed bytes before anything is decoded: a walk over the
//!    protobuf wire format that allocates nothing, counts the series and estimates the memory
//!    the decoded message will take (each message decoded is a struct of its own, and an empty
//!    series of 2 wire bytes is a 96-byte struct: 16 MiB of them would be 800 MiB). Over
//!    `max_series` or `max_memory_bytes`: 413.
//! 2. [`check_series`], on the decoded message: labels per series, bytes per label, and for
//!    2.0 the refs into the symbols table. A series over a limit is invalid data: 400, naming it.

use super::stamp::{print_labels, truncate};
use super::{v1, v2, Decoded, Schema, WriteError};
use crate::enforce::protowire::{packed_varints, Malformed, Reader, Wire};
use std::mem::size_of;

/// What one request may hold. A request over a size limit gets 413, a series over a
/// per-series limit 400 (see the module documentation for why).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest decompressed body; checked against snappy's length prefix before decompressing.
    pub max_decoded_bytes: usize,
    /// Most series (`timeseries` entries) in one request.
    pub max_series: usize,
    /// Most labels on one series (before the tenant label is stamped).
    pub max_labels_per_series: usize,
    /// Longest label: name and value bytes together.
    pub max_label_bytes: usize,
    /// Largest estimated heap of the decoded message (an upper bound: structs, strings and
    /// `Vec` growth), computed before decoding.
    pub max_memory_bytes: usize,
}

impl Default for Limits {
    /// Generous for senders (Prometheus sends at most 2000 samples, well under 1 MiB, per
    /// request by default), small for a Wasm VM.
    fn default() -> Self {
        Limits {
            max_decoded_bytes: 16 << 20,
            max_series: 50_000,
            max_labels_per_series: 128,
            max_label_bytes: 8 << 10,
            max_memory_bytes: 64 << 20,
        }
    }
}

/// What [`prescan`] found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Estimate {
    pub series: usize,
    /// Bytes of structs and `Vec` elements (which `Vec` growth may double).
    pub elements: usize,
    /// Bytes of strings.
    pub strings: usize,
    /// A top-level field the schema does not have (the decoder would skip it and its data).
    pub foreign_field: Option<u64>,
}

impl Estimate {
    pub fn memory(&self) -> usize {
        self.elements.saturating_mul(2).saturating_add(self.strings)
    }

    /// `n` elements of `T`.
    pub(super) fn add<T>(&mut self, n: usize) {
        self.elements = self
            .elements
            .saturating_add(size_of::<T>().saturating_mul(n));
    }

    /// `n` bytes of strings.
    pub(super) fn add_strings(&mut self, n: usize) {
        self.strings = self.strings.saturating_add(n);
    }

    /// Over [`Limits::max_series`] or [`Limits::max_memory_bytes`]: [`prescan`] refuses it (413).
    pub(super) fn over(&self, limits: &Limits) -> bool {
        self.series > limits.max_series || self.memory() > limits.max_memory_bytes
    }
}

/// Counts and sizes `raw` (a decompressed body) without decoding it.
fn estimate(raw: &[u8], schema: Schema) -> Result<Estimate, Malformed> {
    let mut e = Estimate::default();
    let mut r = Reader::new(raw);
    while let Some((number, wire, bytes)) = r.field()? {
        match (schema, number, wire) {
            (Schema::V1, 1, Wire::Bytes) => {
                e.series += 1;
                e.add::<v1::TimeSeries>(1);
                v1_series(bytes, &mut e)?;
            }
            (Schema::V1, 3, Wire::Bytes) => {
                e.add::<v1::MetricMetadata>(1);
                e.strings = e.strings.saturating_add(bytes.len());
            }
            (Schema::V2, 4, Wire::Bytes) => {
                e.add::<String>(1);
                e.strings = e.strings.saturating_add(bytes.len());
            }
            (Schema::V2, 5, Wire::Bytes) => {
                e.series += 1;
                e.add::<v2::TimeSeries>(1);
                v2_series(bytes, &mut e)?;
            }
            // Cortex's `source`, reserved by the 1.0 spec: dropped.
            (Schema::V1, 2, _) => {}
            // The other message's fields, or a message of neither: the decoder would skip
            // them, and with them the data (a 2.0 body read as 1.0 is an empty request).
            (_, number, _) => {
                e.foreign_field.get_or_insert(number);
            }
        }
    }
    Ok(e)
}

fn v1_series(bytes: &[u8], e: &mut Estimate) -> Result<(), Malformed> {
    let mut r = Reader::new(bytes);
    while let Some((number, wire, b)) = r.field()? {
        if wire != Wire::Bytes {
            continue;
        }
        match number {
            1 => {
                e.add::<v1::Label>(1);
                e.strings = e.strings.saturating_add(b.len());
            }
            2 => e.add::<v1::Sample>(1),
            3 => {
                e.add::<v1::Exemplar>(1);
                let mut r = Reader::new(b);
                while let Some((number, wire, label)) = r.field()? {
                    if (number, wire) == (1, Wire::Bytes) {
                        e.add::<v1::Label>(1);
                        e.strings = e.strings.saturating_add(label.len());
                    }
                }
            }
            4 => {
                e.add::<v1::Histogram>(1);
                histogram(b, e)?;
            }
            _ => {}
        }
    }
    Ok(())
}

fn v2_series(bytes: &[u8], e: &mut Estimate) -> Result<(), Malformed> {
    let mut r = Reader::new(bytes);
    while let Some((number, wire, b)) = r.field()? {
        match (number, wire) {
            (1, Wire::Bytes) => e.add::<u32>(packed_varints(b)),
            (1, Wire::Varint) => e.add::<u32>(1),
            (2, Wire::Bytes) => e.add::<v2::Sample>(1),
            (3, Wire::Bytes) => {
                e.add::<v2::Histogram>(1);
                histogram(b, e)?;
            }
            (4, Wire::Bytes) => {
                e.add::<v2::Exemplar>(1);
                let mut r = Reader::new(b);
                while let Some((number, wire, refs)) = r.field()? {
                    match (number, wire) {
                        (1, Wire::Bytes) => e.add::<u32>(packed_varints(refs)),
                        (1, Wire::Varint) => e.add::<u32>(1),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// A histogram's spans (8 bytes from 2 wire bytes) and packed deltas and counts (8 bytes
/// from 1 or 8 wire bytes).
fn histogram(bytes: &[u8], e: &mut Estimate) -> Result<(), Malformed> {
    let mut r = Reader::new(bytes);
    while let Some((number, wire, b)) = r.field()? {
        match (number, wire) {
            (8 | 11, Wire::Bytes) => e.add::<v1::BucketSpan>(1),
            (9 | 12, Wire::Bytes) => e.add::<i64>(packed_varints(b)),
            (10 | 13 | 16, Wire::Bytes) => e.add::<f64>(b.len() / 8),
            (9 | 10 | 12 | 13 | 16, Wire::Varint | Wire::Fixed64 | Wire::Fixed32) => {
                e.add::<i64>(1)
            }
            _ => {}
        }
    }
    Ok(())
}

/// Pass 1: the request's size limits, on the decompressed bytes, before decoding.
pub fn prescan(raw: &[u8], schema: Schema, limits: &Limits) -> Result<Estimate, WriteError> {
    let e = estimate(raw, schema).map_err(|Malformed| {
        WriteError::malformed(format!(
            "the body is not a valid {} protobuf message",
            schema.proto()
        ))
    })?;
    if let Some(number) = e.foreign_field {
        let other = match schema {
            Schema::V1 => Schema::V2,
            Schema::V2 => Schema::V1,
        };
        return Err(WriteError::malformed(format!(
            "the body is not a {} message (it has a field {number} at the top level, which that \
             message does not have): is it a {}? The Content-Type must name the message the body holds",
            schema.proto(),
            other.proto()
        )));
    }
    if e.series > limits.max_series {
        return Err(WriteError::too_large(format!(
            "the request has {} series, more than the {} this endpoint accepts: send smaller \
             batches (queue_config.max_samples_per_send)",
            e.series, limits.max_series
        )));
    }
    if e.memory() > limits.max_memory_bytes {
        return Err(WriteError::too_large(format!(
            "the request would take about {} bytes of memory decoded, more than the {} this \
             endpoint allows: send smaller batches (queue_config.max_samples_per_send)",
            e.memory(),
            limits.max_memory_bytes
        )));
    }
    Ok(e)
}

/// Pass 2: each series' limits, and for 2.0 its refs (even in number, in the table) and
/// the symbols table (`symbols[0]` is `""`).
pub fn check_series(decoded: &Decoded, limits: &Limits) -> Result<(), WriteError> {
    match decoded {
        Decoded::V1(req) => {
            for series in &req.timeseries {
                let labels = || {
                    series
                        .labels
                        .iter()
                        .map(|l| (l.name.as_str(), l.value.as_str()))
                };
                check_labels(labels, limits)?;
            }
        }
        Decoded::V2(req) => {
            if req.symbols.first().is_some_and(|s| !s.is_empty()) {
                return Err(WriteError::malformed(format!(
                    "symbols[0] is \"{}\": the Remote-Write 2.0 symbols table must start with \
                     the empty string",
                    truncate(req.symbols.first().map_or("", String::as_str), 60)
                )));
            }
            for (i, series) in req.timeseries.iter().enumerate() {
                let Some(resolved) = req.labels(series) else {
                    return Err(bad_refs(req.symbols.len(), i, series));
                };
                check_labels(|| resolved.iter().copied(), limits)?;
            }
        }
    }
    Ok(())
}

/// The error for a series whose refs are odd in number or out of the table.
pub(super) fn bad_refs(symbols: usize, i: usize, series: &v2::TimeSeries) -> WriteError {
    let refs: Vec<String> = series
        .labels_refs
        .iter()
        .take(16)
        .map(u32::to_string)
        .collect();
    let more = if series.labels_refs.len() > 16 {
        ", …"
    } else {
        ""
    };
    let why = if !series.labels_refs.len().is_multiple_of(2) {
        "an odd number of refs (they are name, value pairs)".to_string()
    } else {
        format!("a ref past the end of the {symbols}-entry symbols table")
    };
    WriteError::malformed(format!(
        "timeseries[{i}] has labels_refs [{}{more}] with {why}",
        refs.join(", ")
    ))
}

fn check_labels<'a, I>(labels: impl Fn() -> I, limits: &Limits) -> Result<(), WriteError>
where
    I: Iterator<Item = (&'a str, &'a str)>,
{
    let count = labels().count();
    if count > limits.max_labels_per_series {
        return Err(WriteError::invalid(format!(
            "series {} has {count} labels, more than the {} allowed",
            print_labels(&mut labels()),
            limits.max_labels_per_series
        )));
    }
    if let Some((name, value)) =
        labels().find(|(n, v)| n.len().saturating_add(v.len()) > limits.max_label_bytes)
    {
        return Err(WriteError::invalid(format!(
            "series {}: label {} is {} bytes long (name and value), more than the {} allowed",
            print_labels(&mut labels()),
            truncate(name, 60),
            name.len() + value.len(),
            limits.max_label_bytes
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    fn series(n: usize) -> v1::TimeSeries {
        v1::TimeSeries {
            labels: vec![v1::Label::new("__name__", "up")],
            samples: vec![v1::Sample {
                value: n as f64,
                timestamp: 1,
            }],
            ..Default::default()
        }
    }

    #[test]
    fn estimate_counts_series_and_is_an_upper_bound() {
        let req = v1::WriteRequest {
            timeseries: (0..10).map(series).collect(),
            metadata: vec![],
        };
        let e = estimate(&req.encode_to_vec(), Schema::V1).ok().unwrap();
        assert_eq!(e.series, 10);
        let exact =
            10 * (size_of::<v1::TimeSeries>() + size_of::<v1::Label>() + size_of::<v1::Sample>());
        assert!(e.memory() >= exact, "{e:?}");
    }

    #[test]
    fn empty_series_flood_is_too_large_before_decoding() {
        // 4 MiB of empty series (2 bytes each): 2 Mi structs of 96 bytes.
        let raw: Vec<u8> = [0x0a, 0x00].repeat(2 << 20);
        let limits = Limits {
            max_series: usize::MAX,
            ..Limits::default()
        };
        let e = prescan(&raw, Schema::V1, &limits).unwrap_err();
        assert_eq!(e.status(), 413, "{e}");
        assert!(e.message().contains("memory"), "{e}");
        let e = prescan(&raw, Schema::V1, &Limits::default()).unwrap_err();
        assert!(e.message().contains("series"), "{e}");
    }

    #[test]
    fn malformed_wire_refused() {
        for raw in [
            &[0x0a, 0x05, 0x00][..],
            &[0x0b],
            &[0x00, 0x00],
            &[
                0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
            ],
        ] {
            assert_eq!(
                prescan(raw, Schema::V1, &Limits::default())
                    .unwrap_err()
                    .status(),
                400,
                "{raw:?}"
            );
        }
    }
}
