//! Request bodies are read before a request takes a slot (admission control), bounded in size
//! (`max_body_bytes`) and in time: in full within `body_read_timeout_ms`, and, once
//! `body_min_rate_grace_ms` has passed, at `body_min_bytes_per_sec` on average (as Kestrel's
//! `MinRequestBodyDataRate`, or nginx's `client_body_timeout`). A client sending one byte a
//! second so holds no slot, and gets 408 `BODY_TIMEOUT` within seconds. `POST /import` streams
//! its file to disk instead ([`paced`]): it is held to the same rate, not to the timeout.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use tokio::time::{Instant, Sleep};

use super::graphql::error_response;
use super::negotiate::{negotiate, Format};
use crate::app::App;
use crate::error::Error;
use crate::metrics::Refusal;

/// How slowly a body may arrive.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    /// The whole body; `None` for import files, which are held to the rate only.
    pub timeout: Option<Duration>,
    /// Bytes per second on average once `grace` has passed; 0: no minimum.
    pub min_rate: u64,
    pub grace: Duration,
}

impl Pace {
    pub fn from_config(config: &crate::config::Config) -> Self {
        Pace {
            timeout: Some(Duration::from_millis(config.body_read_timeout_ms.max(1))),
            min_rate: config.body_min_bytes_per_sec,
            grace: Duration::from_millis(config.body_min_rate_grace_ms),
        }
    }

    /// When more of the body must have arrived, `received` bytes after `start`.
    fn due(&self, start: Instant, received: u64) -> Option<Instant> {
        let by_rate = (self.min_rate > 0).then(|| {
            let secs = received as f64 / self.min_rate as f64;
            start + self.grace + Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX / 4)
        });
        let by_timeout = self.timeout.map(|t| start + t);
        match (by_rate, by_timeout) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// Whether reading a body failed because it passed the body limit (`RequestBodyLimitLayer`).
pub(super) fn outgrew_limit(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(e) = cause {
        if e.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        cause = e.source();
    }
    false
}

fn too_large() -> Error {
    Error::PayloadTooLarge("the request body is larger than max_body_bytes".into())
}

/// Reads the whole body at `pace`, at most `limit` bytes.
async fn read(mut body: Body, limit: usize, pace: Pace) -> Result<Bytes, Error> {
    let start = Instant::now();
    // One chunk (the usual case) is kept as it came; more are joined.
    let mut first: Option<Bytes> = None;
    let mut joined: Vec<u8> = Vec::new();
    let mut received = 0usize;
    loop {
        let next = body.frame();
        let frame = match pace.due(start, received as u64) {
            Some(due) => tokio::time::timeout_at(due, next)
                .await
                .map_err(|_| Error::BodyTimeout)?,
            None => next.await,
        };
        let data = match frame {
            None => break,
            Some(Err(e)) if outgrew_limit(&e) => return Err(too_large()),
            Some(Err(_)) => {
                return Err(Error::BadRequest(
                    "the request body could not be read".into(),
                ))
            }
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => data,
                Err(_) => continue,
            },
        };
        received += data.len();
        if received > limit {
            return Err(too_large());
        }
        match first.take() {
            None if joined.is_empty() => first = Some(data),
            None => joined.extend_from_slice(&data),
            Some(head) => {
                joined.reserve(received);
                joined.extend_from_slice(&head);
                joined.extend_from_slice(&data);
            }
        }
    }
    Ok(first.unwrap_or_else(|| Bytes::from(joined)))
}

/// The answer to a body that could not be read: GraphQL-shaped on `/graphql`. The rest of the
/// body is never read, so the connection closes after it.
fn refuse(app: &App, path: &str, headers: &axum::http::HeaderMap, error: Error) -> Response {
    if let Error::BodyTimeout = error {
        app.admission.counters().refused(Refusal::BodyTimeout);
        tracing::debug!(path, "request body too slow");
    }
    let mut response = if path == "/graphql" {
        error_response(&error, negotiate(headers).unwrap_or(Format::Json))
    } else {
        error.into_response()
    };
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// For every route but `POST /import`: the body is read in full, at the configured pace,
/// before the request goes on (to admission control, then its handler).
pub async fn read_first(State(app): State<App>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    if body.is_end_stream() {
        return next.run(Request::from_parts(parts, body)).await;
    }
    match read(
        body,
        app.config.max_body_bytes,
        Pace::from_config(&app.config),
    )
    .await
    {
        Ok(bytes) => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        Err(e) => refuse(&app, parts.uri.path(), &parts.headers, e),
    }
}

/// For `POST /import`, whose file is streamed to disk: the body is held to the minimum rate as
/// it is read; one that falls behind ends, and the answer is 408 `BODY_TIMEOUT`.
pub async fn paced(State(app): State<App>, request: Request, next: Next) -> Response {
    let pace = Pace {
        timeout: None,
        ..Pace::from_config(&app.config)
    };
    if pace.min_rate == 0 {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let late = Arc::new(AtomicBool::new(false));
    let body = Body::new(Paced {
        inner: body,
        pace,
        start: Instant::now(),
        received: 0,
        sleep: None,
        late: late.clone(),
    });
    let (path, headers) = (parts.uri.path().to_owned(), parts.headers.clone());
    let response = next.run(Request::from_parts(parts, body)).await;
    if late.load(Ordering::Acquire) {
        return refuse(&app, &path, &headers, Error::BodyTimeout);
    }
    response
}

/// A body that fails once its bytes fall behind the pace.
struct Paced {
    inner: Body,
    pace: Pace,
    start: Instant,
    received: u64,
    /// Set to when the next bytes are due, after each chunk.
    sleep: Option<Pin<Box<Sleep>>>,
    late: Arc<AtomicBool>,
}

impl HttpBody for Paced {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.received += data.len() as u64;
                    this.sleep = None;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Pending => {
                let (pace, start, received) = (this.pace, this.start, this.received);
                let sleep = match &mut this.sleep {
                    Some(s) => s,
                    none => match pace.due(start, received) {
                        Some(due) => none.insert(Box::pin(tokio::time::sleep_until(due))),
                        None => return Poll::Pending,
                    },
                };
                if sleep.as_mut().poll(cx).is_ready() {
                    this.late.store(true, Ordering::Release);
                    return Poll::Ready(Some(Err(axum::Error::new(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "the request body arrived too slowly",
                    )))));
                }
                Poll::Pending
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_applies_after_the_grace_and_the_timeout_bounds_all() {
        let pace = Pace {
            timeout: Some(Duration::from_secs(10)),
            min_rate: 100,
            grace: Duration::from_secs(2),
        };
        let start = Instant::now();
        assert_eq!(pace.due(start, 0), Some(start + Duration::from_secs(2)));
        assert_eq!(pace.due(start, 300), Some(start + Duration::from_secs(5)));
        assert_eq!(
            pace.due(start, 5_000),
            Some(start + Duration::from_secs(10))
        );
        let open = Pace {
            timeout: None,
            min_rate: 0,
            ..pace
        };
        assert_eq!(open.due(start, 0), None);
    }
}
