//! The body stage: whether a request body follows, holding it until it is whole, its size
//! limit, and handing the whole body over for enforcement.
//!
//! Whether a body follows differs by host (README, "Hosts and deployment"):
//! - `content-length` > 0 or `transfer-encoding` announce one;
//! - Envoy removes `transfer-encoding` before any filter runs, and an HTTP/2 body needs no
//!   length: such a body shows only as `end_of_stream` false in the headers phase;
//! - NGINX never says `end_of_stream` in the headers phase, and calls no body callback when
//!   there is no body: there a POST without a length only *may* have a body.
//!
//! A body that is only possible is enforced if it comes; the query string must then be safe
//! without it (`Body::announced` tells the flow so). A body the headers ruled out is refused
//! if it comes all the same, and so is one that ends with trailers (it never reached its end
//! here, and the host would send what it holds on).

use crate::error::ApiError;

/// What the request's headers say of its body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Framing<'a> {
    /// The body is one the filter enforces (a POST to an enforced endpoint); any other
    /// passes as it is.
    pub enforced: bool,
    pub content_length: Option<&'a str>,
    pub transfer_encoding: bool,
    /// The host's `end_of_stream` in the headers phase.
    pub end_of_stream: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// Not a body the filter reads: it passes.
    Ignored,
    /// The headers ruled a body out: one that comes is refused.
    RuledOut,
    /// A body follows (or may follow) and none of it has come.
    Expected,
    /// Part of it is held; its end has not come.
    Held,
    /// Whole, until it is taken for enforcement.
    Whole(Vec<u8>),
    /// Taken.
    Taken,
}

/// What to do with a piece of the body the host hands over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Let it go as it is.
    Pass,
    /// Hold it: more is coming (the host buffers it).
    Hold,
    /// It is the end: read the whole body (`size` bytes) and `fill` the stage with it.
    Read,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Body {
    state: State,
    /// A length or `transfer-encoding` said a body follows (else it is only possible).
    announced: bool,
    max_bytes: usize,
}

impl Body {
    /// Before the headers: no body is read.
    pub fn ignored() -> Body {
        Body {
            state: State::Ignored,
            announced: false,
            max_bytes: 0,
        }
    }

    /// What the headers say; a body announced larger than `max_bytes` is refused (413).
    pub fn from_headers(f: Framing, max_bytes: usize) -> Result<Body, ApiError> {
        if !f.enforced {
            return Ok(Body::ignored());
        }
        let length = f.content_length.and_then(|v| v.trim().parse::<u64>().ok());
        if length.is_some_and(|n| n > max_bytes as u64) {
            return Err(too_large(max_bytes));
        }
        let announced = f.transfer_encoding || length.is_some_and(|n| n > 0);
        let expected = announced || (length.is_none() && !f.end_of_stream);
        let state = if expected {
            State::Expected
        } else {
            State::RuledOut
        };
        Ok(Body {
            state,
            announced,
            max_bytes,
        })
    }

    /// A body may follow and will be enforced: the host must not keep the old length.
    pub fn expected(&self) -> bool {
        !matches!(self.state, State::Ignored | State::RuledOut)
    }

    /// A length or `transfer-encoding` said that a body follows.
    pub fn announced(&self) -> bool {
        self.announced
    }

    /// The whole body has come (or none was expected): the request has passed in full.
    pub fn complete(&self) -> bool {
        matches!(
            self.state,
            State::Ignored | State::RuledOut | State::Whole(_) | State::Taken
        )
    }

    /// Part of the body is held: resuming the request would send it on as it came.
    pub fn held(&self) -> bool {
        self.state == State::Held
    }

    /// A piece of the body, `size` bytes so far. `check_type` runs on the first piece of a
    /// body the headers did not announce (its type was not checked with the headers).
    pub fn on_data(
        &mut self,
        size: usize,
        end_of_stream: bool,
        check_type: impl FnOnce() -> Result<(), ApiError>,
    ) -> Result<Step, ApiError> {
        match self.state {
            State::Ignored => return Ok(Step::Pass),
            // Prometheus would read it as a form: one the headers ruled out can't pass unenforced.
            State::RuledOut if size > 0 => {
                return Err(ApiError::bad_data(
                    "the request has a body its headers did not announce",
                ))
            }
            State::RuledOut | State::Whole(_) | State::Taken => return Ok(Step::Pass),
            State::Expected | State::Held => {}
        }
        if size > self.max_bytes {
            return Err(too_large(self.max_bytes));
        }
        if size > 0 && !self.announced && self.state == State::Expected {
            check_type()?;
        }
        if end_of_stream {
            Ok(Step::Read)
        } else {
            self.state = State::Held;
            Ok(Step::Hold)
        }
    }

    /// The whole body, read after `Step::Read`.
    pub fn fill(&mut self, body: Vec<u8>) {
        self.state = State::Whole(body);
    }

    /// The whole body, once, for enforcement.
    pub fn take(&mut self) -> Option<Vec<u8>> {
        match std::mem::replace(&mut self.state, State::Taken) {
            State::Whole(body) => Some(body),
            other => {
                self.state = other;
                None
            }
        }
    }

    /// Request trailers: refused where the body never reached its end here.
    pub fn on_trailers(&self) -> Result<(), ApiError> {
        match self.state {
            State::Expected | State::Held => {
                Err(ApiError::bad_data("request trailers are not accepted after a form body: send the form without trailers"))
            }
            _ => Ok(()),
        }
    }
}

fn too_large(max_bytes: usize) -> ApiError {
    ApiError::too_large(format!(
        "the request body is larger than {max_bytes} bytes (limits.max_body_bytes)"
    ))
}

#[cfg(test)]
mod tests {
    //! The body stage under each host's behaviour, as a table.
    use super::*;

    fn ok() -> Result<(), ApiError> {
        Ok(())
    }

    fn framing(length: Option<&str>, chunked: bool, end_of_stream: bool) -> Framing<'_> {
        Framing {
            enforced: true,
            content_length: length,
            transfer_encoding: chunked,
            end_of_stream,
        }
    }

    /// (host and request, framing, expected, announced)
    #[test]
    fn whether_a_body_follows_by_host() {
        let cases = [
            (
                "Envoy, HTTP/1.1 with a length",
                framing(Some("14"), false, false),
                true,
                true,
            ),
            (
                "Envoy, HTTP/1.1 chunked (transfer-encoding removed)",
                framing(None, false, false),
                true,
                false,
            ),
            (
                "Envoy, HTTP/2 without a length",
                framing(None, false, false),
                true,
                false,
            ),
            (
                "Envoy, HTTP/2 with a length",
                framing(Some("14"), false, false),
                true,
                true,
            ),
            (
                "Envoy, POST without a body",
                framing(None, false, true),
                false,
                false,
            ),
            (
                "Envoy or NGINX, length 0",
                framing(Some("0"), false, false),
                false,
                false,
            ),
            (
                "NGINX, with a length (never end_of_stream)",
                framing(Some("14"), false, false),
                true,
                true,
            ),
            ("NGINX, chunked", framing(None, true, false), true, true),
            (
                "NGINX, no length: a body is only possible",
                framing(None, false, false),
                true,
                false,
            ),
        ];
        for (name, f, expected, announced) in cases {
            let b = Body::from_headers(f, 100).unwrap();
            assert_eq!(
                (b.expected(), b.announced()),
                (expected, announced),
                "{name}"
            );
            assert_eq!(b.complete(), !expected, "{name}");
        }
        let get = Framing {
            enforced: false,
            ..framing(Some("14"), false, false)
        };
        assert_eq!(Body::from_headers(get, 100).unwrap(), Body::ignored());
    }

    #[test]
    fn a_body_is_held_until_its_end_then_read_whole() {
        let mut b = Body::from_headers(framing(Some("14"), false, false), 100).unwrap();
        assert_eq!(b.on_data(6, false, ok).unwrap(), Step::Hold);
        assert!(b.held() && !b.complete());
        assert_eq!(b.on_data(14, true, ok).unwrap(), Step::Read);
        b.fill(b"query=up&time=".to_vec());
        assert!(b.complete() && !b.held());
        assert_eq!(b.take().as_deref(), Some(&b"query=up&time="[..]));
        assert_eq!(b.take(), None, "once");
    }

    #[test]
    fn limits_and_refusals() {
        let too_large = |r: Result<Body, ApiError>| matches!(r, Err(e) if e.status == 413);
        assert!(
            too_large(Body::from_headers(framing(Some("101"), false, false), 100)),
            "by length"
        );
        let mut b = Body::from_headers(framing(None, false, false), 100).unwrap();
        assert!(
            matches!(b.on_data(101, false, ok), Err(e) if e.status == 413),
            "by size"
        );

        // Ruled out by the headers, and a body comes all the same (an empty one may).
        let mut b = Body::from_headers(framing(None, false, true), 100).unwrap();
        assert_eq!(b.on_data(0, true, ok).unwrap(), Step::Pass);
        assert!(matches!(b.on_data(8, true, ok), Err(e) if e.status == 400));

        // Trailers before the end.
        let mut b = Body::from_headers(framing(None, false, false), 100).unwrap();
        assert!(b.on_trailers().is_err());
        b.on_data(4, false, ok).unwrap();
        assert!(b.on_trailers().is_err());
        b.on_data(8, true, ok).unwrap();
        b.fill(b"query=up".to_vec());
        assert!(b.on_trailers().is_ok());
    }

    #[test]
    fn the_type_of_an_unannounced_body_is_checked_when_it_comes() {
        let refuse = || Err(ApiError::unsupported_media_type("not a form"));
        let mut b = Body::from_headers(framing(None, false, false), 100).unwrap();
        assert!(matches!(b.on_data(4, false, refuse), Err(e) if e.status == 415));
        let mut b = Body::from_headers(framing(None, false, false), 100).unwrap();
        assert_eq!(
            b.on_data(0, true, refuse).unwrap(),
            Step::Read,
            "no body after all: nothing to check"
        );
        // An announced body's type was checked with the headers.
        let mut b = Body::from_headers(framing(Some("4"), false, false), 100).unwrap();
        assert_eq!(b.on_data(4, true, refuse).unwrap(), Step::Read);
    }

    #[test]
    fn other_bodies_pass() {
        let mut b = Body::ignored();
        assert_eq!(b.on_data(1_000_000, true, ok).unwrap(), Step::Pass);
        assert!(b.on_trailers().is_ok() && b.complete());
    }
}
