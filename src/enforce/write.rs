//! The remote write endpoint kind (`write.paths`, `POST /api/v1/write` by default): the body
//! is decoded, every series gets the writer's tenant label, and the filter forwards only the
//! body it encoded itself, for every scope (an unrestricted writer's labels pass unchanged,
//! but what the upstream reads is still exactly what was checked). The protobuf and snappy
//! work is `remote_write`'s; this module maps the configuration and the scope's tenant onto
//! its policy, and its refusals onto the API's errors.
//!
//! Status codes are chosen for what a sender does with them (`remote_write`'s documentation):
//! it drops a request answered 4xx and retries a 5xx.

use crate::config::Config;
use crate::enforce::promql::Tenant;
use crate::enforce::remote_write::{self, ErrorKind, Policy, Schema, Stamp, Tenancy, WriteError};
use crate::enforce::{BodyContext, Enforcer, Forward};
use crate::error::ApiError;

/// The remote write enforcer.
pub struct RemoteWrite;

impl From<WriteError> for ApiError {
    fn from(e: WriteError) -> Self {
        let kind = e.kind();
        let message = e.into_message();
        match kind {
            ErrorKind::Malformed | ErrorKind::Invalid | ErrorKind::Conflict => {
                ApiError::bad_data(message)
            }
            ErrorKind::TooLarge => ApiError::too_large(message),
            ErrorKind::UnsupportedMediaType => ApiError::unsupported_media_type(message),
            // A misconfiguration: the sender retries, nothing is lost.
            ErrorKind::Internal => ApiError::unavailable(message),
        }
    }
}

/// The stamp of a writer's tenant: its one label and value. Series also lose the other
/// tenant label (a project's writer must not claim a domain, nor a domain's writer a
/// project: readers of either would see the series).
fn stamp(config: &Config, tenant: &Tenant) -> Result<Stamp, ApiError> {
    let [value] = tenant.values() else {
        return Err(ApiError::unavailable(
            "a writer's tenant must be exactly one project or domain",
        ));
    };
    let mut stamp = Stamp::new(tenant.label(), value.as_str());
    stamp.on_conflict = config.write.on_conflict;
    stamp.extra_labels_to_strip = [&config.project_label, &config.policy.domain_label]
        .into_iter()
        .filter(|l| l.as_str() != tenant.label())
        .cloned()
        .collect();
    Ok(stamp)
}

impl Enforcer for RemoteWrite {
    fn methods(&self) -> &'static str {
        "POST"
    }

    /// A remote write sender retries a 5xx and drops its data on a 4xx: Keystone too slow
    /// (504) is worded as Keystone unavailable, with its `Retry-After`, like every write
    /// refusal that is not the sender's fault.
    fn refusal(&self, e: ApiError) -> ApiError {
        if e.status == 504 {
            ApiError::unavailable(e.message)
        } else {
            e
        }
    }

    fn body(&self, cx: BodyContext, body: &[u8], _url_params: usize) -> Result<Forward, ApiError> {
        let write = &cx.config.write;
        let schema = Schema::from_content_type(cx.content_type)?;
        let tenancy = match cx.tenant {
            Some(tenant) => Tenancy::Stamp(stamp(cx.config, tenant)?),
            None => Tenancy::Unrestricted,
        };
        let rewritten = remote_write::rewrite(
            body,
            schema,
            &write.limits,
            &Policy {
                tenancy,
                metadata: write.metadata,
            },
        )?;
        if rewritten.empty {
            return Ok(Forward::Nothing);
        }
        Ok(Forward::Body(rewritten.body))
    }

    fn check_body(
        &self,
        content_type: Option<&str>,
        content_encoding: Option<&str>,
    ) -> Result<(), ApiError> {
        Schema::from_content_type(content_type)?;
        remote_write::check_content_encoding(content_encoding)?;
        Ok(())
    }

    fn every_scope(&self) -> bool {
        true
    }

    fn needs_body(&self) -> bool {
        true
    }

    fn max_body_bytes(&self, config: &Config) -> usize {
        config.write.max_body_bytes
    }
}
