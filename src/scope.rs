//! What a validated credential grants: the project whose series the request may read.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scope {
    pub user_id: String,
    /// The project of a project-scoped token.
    pub project_id: Option<String>,
    /// The project's domain, or the domain of a domain-scoped token.
    pub domain_id: Option<String>,
    pub roles: Vec<String>,
    /// Unix seconds at which the token expires.
    pub expires_at: u64,
}
