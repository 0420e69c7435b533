//! The remote read endpoint kind (`POST /api/v1/read`, with `read.enabled`): every query of
//! the body gets the tenant matcher, ANDed with the reader's own matchers. The protobuf and
//! snappy work is `remote_read`'s; the answer (samples or streamed chunks) passes as it is,
//! since the upstream answers each query with series that match all of its matchers.

use crate::config::Config;
use crate::enforce::remote_read;
use crate::enforce::{BodyContext, Enforcer, Forward};
use crate::error::ApiError;

/// The remote read enforcer.
pub struct RemoteRead;

impl Enforcer for RemoteRead {
    fn methods(&self) -> &'static str {
        "POST"
    }

    fn body(&self, cx: BodyContext, body: &[u8], _url_params: usize) -> Result<Forward, ApiError> {
        // Only an unrestricted scope has no tenant, and its reads go as they are.
        let Some(tenant) = cx.tenant else {
            return Ok(Forward::Body(body.to_vec()));
        };
        let mut request = remote_read::decode(body, &cx.config.read.limits)?;
        remote_read::enforce_tenant(&mut request, tenant);
        Ok(Forward::Body(remote_read::encode(&request)?))
    }

    fn check_body(
        &self,
        content_type: Option<&str>,
        content_encoding: Option<&str>,
    ) -> Result<(), ApiError> {
        Ok(remote_read::check_headers(content_type, content_encoding)?)
    }

    fn needs_body(&self) -> bool {
        true
    }

    fn max_body_bytes(&self, config: &Config) -> usize {
        config.read.max_body_bytes
    }
}
