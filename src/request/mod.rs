//! The request as the host hands it over: its headers, read in place.

pub mod header_names;
pub mod headers;
