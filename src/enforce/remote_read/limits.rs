//! What one read request may hold, and the pre-scan that checks it on the decompressed bytes
//! before anything is decoded: a walk over the protobuf wire format that allocates nothing.
//!
//! It counts queries, matchers per query, grouping labels per query and accepted response
//! types (each is a struct or a `String` of its own once decoded, so counting them bounds the
//! decoded message's memory to about the decompressed size), and it refuses every field the
//! messages do not have, at every level: prost would skip such a field and the re-encoded
//! request would silently lose it (a remote write body read as a read request would lose its
//! series and metadata). A known field with another wire type than its own is refused too.

use super::ReadError;
use crate::enforce::protowire::{packed_varints, Malformed, Reader, Wire};

/// What one request may hold (413 above).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest decompressed body; checked against snappy's length prefix before decompressing.
    pub max_decoded_bytes: usize,
    /// Most queries in one request (Prometheus 2.42 sends one; newer ones batch a few).
    pub max_queries: usize,
    /// Most matchers in one query, before the tenant matcher is added.
    pub max_matchers: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_decoded_bytes: 16 << 20,
            max_queries: 64,
            max_matchers: 64,
        }
    }
}

/// Most grouping label names in one query's hints (the labels of a `by (…)`).
pub const MAX_GROUPING: usize = 1024;

/// Most accepted response types (there are two).
pub const MAX_RESPONSE_TYPES: usize = 16;

const READ_REQUEST: &str = "prometheus.ReadRequest";

fn not_protobuf() -> ReadError {
    ReadError::malformed(format!(
        "the body is not a valid {READ_REQUEST} protobuf message"
    ))
}

fn wrong_wire(at: &str, message: &str, number: u64, name: &str) -> ReadError {
    ReadError::malformed(format!(
        "{at}: field {number} of {message} ({name}) has the wrong wire type: the body is not a \
         valid {READ_REQUEST} protobuf message"
    ))
}

fn foreign(at: &str, message: &str, number: u64) -> ReadError {
    ReadError::malformed(format!(
        "{at} has a field {number}, which {message} does not have: the body is not a \
         {READ_REQUEST} of Prometheus' remote read protocol"
    ))
}

/// Checks `raw` (a decompressed body) against `limits` and the schema, without decoding it.
pub(super) fn prescan(raw: &[u8], limits: &Limits) -> Result<(), ReadError> {
    let mut r = Reader::new(raw);
    let mut queries = 0usize;
    let mut types = 0usize;
    while let Some((number, wire, bytes)) = r.field().map_err(|Malformed| not_protobuf())? {
        match (number, wire) {
            (1, Wire::Bytes) => {
                if queries >= limits.max_queries {
                    return Err(ReadError::too_large(format!(
                        "the request has more than {} queries, the most this endpoint accepts: \
                         send fewer queries per request",
                        limits.max_queries
                    )));
                }
                query(bytes, queries, limits)?;
                queries += 1;
            }
            (1, _) => return Err(wrong_wire("the request", READ_REQUEST, 1, "queries")),
            (2, Wire::Varint) => types += 1,
            (2, Wire::Bytes) => types = types.saturating_add(packed_varints(bytes)),
            (2, _) => {
                return Err(wrong_wire(
                    "the request",
                    READ_REQUEST,
                    2,
                    "accepted_response_types",
                ))
            }
            (number, _) => {
                let hint = match number {
                    3 => " (a remote write request's metadata?)",
                    4 | 5 => " (a Remote-Write 2.0 request?)",
                    _ => "",
                };
                return Err(ReadError::malformed(format!(
                    "the body is not a {READ_REQUEST}: it has a field {number} at the top level, \
                     which that message does not have{hint}"
                )));
            }
        }
        if types > MAX_RESPONSE_TYPES {
            return Err(ReadError::too_large(format!(
                "the request lists more than {MAX_RESPONSE_TYPES} accepted response types"
            )));
        }
    }
    Ok(())
}

fn query(bytes: &[u8], i: usize, limits: &Limits) -> Result<(), ReadError> {
    const QUERY: &str = "prometheus.Query";
    let at = format!("queries[{i}]");
    let mut r = Reader::new(bytes);
    let mut matchers = 0usize;
    let mut grouping = 0usize;
    while let Some((number, wire, bytes)) = r.field().map_err(|Malformed| not_protobuf())? {
        match (number, wire) {
            (1 | 2, Wire::Varint) => {}
            (1, _) => return Err(wrong_wire(&at, QUERY, 1, "start_timestamp_ms")),
            (2, _) => return Err(wrong_wire(&at, QUERY, 2, "end_timestamp_ms")),
            (3, Wire::Bytes) => {
                if matchers >= limits.max_matchers {
                    return Err(ReadError::too_large(format!(
                        "{at} has more than {} matchers, the most this endpoint accepts",
                        limits.max_matchers
                    )));
                }
                matcher(bytes, &format!("{at}.matchers[{matchers}]"))?;
                matchers += 1;
            }
            (3, _) => return Err(wrong_wire(&at, QUERY, 3, "matchers")),
            (4, Wire::Bytes) => {
                // A message field seen twice is merged: its groupings add up.
                grouping = grouping.saturating_add(hints(bytes, &at)?);
                if grouping > MAX_GROUPING {
                    return Err(ReadError::too_large(format!(
                        "{at}.hints has more than {MAX_GROUPING} grouping labels"
                    )));
                }
            }
            (4, _) => return Err(wrong_wire(&at, QUERY, 4, "hints")),
            (number, _) => return Err(foreign(&at, QUERY, number)),
        }
    }
    Ok(())
}

fn matcher(bytes: &[u8], at: &str) -> Result<(), ReadError> {
    const MATCHER: &str = "prometheus.LabelMatcher";
    let mut r = Reader::new(bytes);
    while let Some((number, wire, _)) = r.field().map_err(|Malformed| not_protobuf())? {
        match (number, wire) {
            (1, Wire::Varint) | (2 | 3, Wire::Bytes) => {}
            (1, _) => return Err(wrong_wire(at, MATCHER, 1, "type")),
            (2, _) => return Err(wrong_wire(at, MATCHER, 2, "name")),
            (3, _) => return Err(wrong_wire(at, MATCHER, 3, "value")),
            (number, _) => return Err(foreign(at, MATCHER, number)),
        }
    }
    Ok(())
}

/// Checks one `hints` field; returns its number of grouping labels.
fn hints(bytes: &[u8], query: &str) -> Result<usize, ReadError> {
    const HINTS: &str = "prometheus.ReadHints";
    let at = format!("{query}.hints");
    let mut r = Reader::new(bytes);
    let mut grouping = 0usize;
    while let Some((number, wire, _)) = r.field().map_err(|Malformed| not_protobuf())? {
        match (number, wire) {
            (1 | 3 | 4 | 6 | 7, Wire::Varint) | (2, Wire::Bytes) => {}
            (5, Wire::Bytes) => grouping += 1,
            (1..=7, _) => {
                let names = [
                    "", "step_ms", "func", "start_ms", "end_ms", "grouping", "by", "range_ms",
                ];
                let name = usize::try_from(number)
                    .ok()
                    .and_then(|n| names.get(n))
                    .copied()
                    .unwrap_or_default();
                return Err(wrong_wire(&at, HINTS, number, name));
            }
            (number, _) => return Err(foreign(&at, HINTS, number)),
        }
    }
    Ok(grouping)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_wire_refused() {
        for raw in [
            &[0x0a, 0x05, 0x00][..],
            &[0x0b],
            &[0x00, 0x00],
            &[
                0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
            ],
            &[0x0e],
        ] {
            let e = prescan(raw, &Limits::default()).unwrap_err();
            assert_eq!(e.status(), 400, "{raw:?}: {e}");
        }
        assert!(prescan(&[], &Limits::default()).is_ok());
    }
}
