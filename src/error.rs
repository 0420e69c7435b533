//! Prometheus-style JSON errors: every refusal the filter makes is one of these, so
//! Grafana, promtool and the openstack CLI show the message instead of a bare status.

use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u32,
    pub error_type: &'static str,
    pub message: String,
    /// Extra response headers, e.g. `WWW-Authenticate` or `Allow`.
    pub headers: Vec<(&'static str, String)>,
}

#[derive(Serialize)]
struct Body<'a> {
    status: &'static str,
    #[serde(rename = "errorType")]
    error_type: &'a str,
    error: &'a str,
    /// The same error in the OpenStack API-SIG form, which keystoneauth (and so the
    /// `openstack` CLI) shows; Prometheus clients ignore it.
    errors: [SigError<'a>; 1],
}

#[derive(Serialize)]
struct SigError<'a> {
    status: u32,
    title: &'a str,
    detail: &'a str,
}

impl ApiError {
    pub fn new(status: u32, error_type: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            error_type,
            message: message.into(),
            headers: Vec::new(),
        }
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub fn bad_data(message: impl Into<String>) -> Self {
        Self::new(400, "bad_data", message)
    }

    pub fn unauthorized(message: impl Into<String>, keystone_url: &str) -> Self {
        Self::new(401, "unauthorized", message).with_header(
            "www-authenticate",
            format!("Keystone uri=\"{keystone_url}\""),
        )
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(403, "forbidden", message)
    }

    pub fn method_not_allowed(allow: &str) -> Self {
        Self::new(
            405,
            "method_not_allowed",
            format!("this endpoint accepts only {allow}"),
        )
        .with_header("allow", allow)
    }

    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(413, "bad_data", message)
    }

    pub fn unsupported_media_type(message: impl Into<String>) -> Self {
        Self::new(415, "bad_data", message)
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(503, "unavailable", message).with_header("retry-after", "5")
    }

    pub fn timeout(message: impl Into<String>) -> Self {
        Self::new(504, "timeout", message).with_header("retry-after", "5")
    }

    /// The JSON body, `{"status":"error","errorType":…,"error":…}`.
    pub fn body(&self) -> Vec<u8> {
        let sig = SigError {
            status: self.status,
            title: &self.message,
            detail: &self.message,
        };
        let body = Body {
            status: "error",
            error_type: self.error_type,
            error: &self.message,
            errors: [sig],
        };
        // Serializing three strings cannot fail; fall back to a fixed body all the same.
        serde_json::to_vec(&body).unwrap_or_else(|_| {
            br#"{"status":"error","errorType":"internal","error":"error"}"#.to_vec()
        })
    }

    /// The message alone as a JSON string: how Alertmanager's API v2 words its errors, the
    /// only form amtool and other go-swagger clients can show.
    pub fn body_as_string(&self) -> Vec<u8> {
        serde_json::to_vec(&self.message).unwrap_or_else(|_| br#""error""#.to_vec())
    }

    /// Response headers, content type first.
    pub fn response_headers(&self) -> Vec<(&str, &str)> {
        let mut h = vec![("content-type", "application/json")];
        h.extend(self.headers.iter().map(|(k, v)| (*k, v.as_str())));
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_is_prometheus_style_json() {
        let e = ApiError::bad_data("parse error: \"x\"");
        let v: serde_json::Value = serde_json::from_slice(&e.body()).unwrap();
        assert_eq!(v["status"], "error");
        assert_eq!(v["errorType"], "bad_data");
        assert_eq!(v["error"], "parse error: \"x\"");
        // keystoneauth reads the API-SIG form.
        assert_eq!(v["errors"][0]["title"], "parse error: \"x\"");
        assert_eq!(v["errors"][0]["status"], 400);
    }

    #[test]
    fn unauthorized_names_keystone() {
        let e = ApiError::unauthorized("no token", "http://ks:5000/v3");
        assert_eq!(e.status, 401);
        assert!(e
            .response_headers()
            .contains(&("www-authenticate", "Keystone uri=\"http://ks:5000/v3\"")));
    }
}
