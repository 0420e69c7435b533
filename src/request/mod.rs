//! The request as the host hands it over: its headers, read in place, and its body.

pub mod body;
pub mod header_names;
pub mod headers;
