//! See benches/stages.rs.
