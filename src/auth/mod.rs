//! Credentials and scope: who the client is and what it may see, from this worker's cache, the
//! scope cache in shared data, or Keystone.

pub mod credentials;
pub mod keystone;
pub mod local_cache;
pub mod scope;
pub mod shared_cache;
