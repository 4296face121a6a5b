//! The request loop of a pipeline that answers every request itself (issue 24).
//!
//! The gateway forwards every request from its `request_filter` ([`crate::forward`]), so
//! pingora's proxy (`pingora::proxy::HttpProxy`) only read each request, ran the filters and
//! logged. Its per-request future still held every state of the proxying it no longer did
//! (upstream sessions, the cache, retries): 15 KB, moved into its box for every request.
//! [`Answering`] runs the same steps, in pingora's order and with its answers to a bad
//! request, in a future of its own size.
//!
//! - The request is read; a malformed one is answered 400, a `CONNECT` 405, and the
//!   connection closed. A service that is closing stops waiting for a first request.
//! - The pipeline's `early_request_filter`, then its `request_filter`, which answers.
//! - On an error, its `fail_to_proxy` answers it; then `logging`, in every case.
//! - The connection is handed back for its next request when the answer is whole.

use async_trait::async_trait;
use pingora::apps::{HttpPersistentSettings, HttpServerApp, ReusedHttpStream};
use pingora::protocols::http::ServerSession;
use pingora::proxy::{ProxyHttp, Session};
use pingora::server::ShutdownWatch;
use pingora::{Error, ErrorType};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::Notify;

/// A pipeline ([`ProxyHttp`]) whose `request_filter` answers every request, served without
/// pingora's proxy around it.
pub struct Answering<P> {
    inner: P,
    /// Set, and its waiters woken, when the service closes ([`HttpServerApp::http_cleanup`]):
    /// a connection still waiting for its first request is closed.
    closing: AtomicBool,
    closed: Notify,
}

impl<P: ProxyHttp + Send + Sync + 'static> Answering<P>
where
    P::CTX: Send + Sync,
{
    pub fn new(inner: P) -> Self {
        Self {
            inner,
            closing: AtomicBool::new(false),
            closed: Notify::new(),
        }
    }

    /// Resolves once the service closes.
    async fn closing(&self) {
        let closed = self.closed.notified();
        tokio::pin!(closed);
        // Registered before the flag is read: a close in between is seen either way.
        closed.as_mut().enable();
        if !self.closing.load(Ordering::Acquire) {
            closed.await;
        }
    }

    /// Reads one request of `session` and answers it. The connection comes back when it can
    /// carry another request.
    pub async fn request(
        self: &Arc<Self>,
        mut session: Session,
        shutdown: &ShutdownWatch,
    ) -> Option<ReusedHttpStream> {
        let downstream = session.as_downstream_mut();
        let read = tokio::select! {
            // A request already read stays served.
            biased;
            read = downstream.read_request() => read,
            () = self.closing() => return None,
        };
        match read {
            Ok(true) => {}
            Ok(false) => return None,
            Err(e) => {
                // As pingora's proxy: a request that is no HTTP gets its 400; a broken
                // connection, nothing.
                if matches!(e.etype(), ErrorType::InvalidHTTPHeader) {
                    let _ = downstream.respond_error(400).await;
                }
                downstream.shutdown().await;
                return None;
            }
        }
        // A tunnel changes what follows the request (RFC 9110 §9.3.6): pingora's proxy
        // refuses it by default, and so does this.
        if downstream.req_header().method == http::Method::CONNECT {
            let _ = downstream.respond_error(405).await;
            downstream.shutdown().await;
            return None;
        }
        if *shutdown.borrow() {
            // The service is stopping: this answer is the connection's last.
            session.set_keepalive(None);
        }
        let mut ctx = self.inner.new_ctx();
        let answered = match self
            .inner
            .early_request_filter(&mut session, &mut ctx)
            .await
        {
            Ok(()) => self.inner.request_filter(&mut session, &mut ctx).await,
            Err(e) => Err(e),
        };
        let failure = match answered {
            Ok(true) => None,
            Ok(false) => Some(Error::explain(
                ErrorType::InternalError,
                "the pipeline left a request unanswered",
            )),
            Err(e) => Some(e),
        };
        let reuse = match failure {
            None => {
                self.inner.logging(&mut session, None, &mut ctx).await;
                true
            }
            Some(e) => {
                let failed = self.inner.fail_to_proxy(&mut session, &e, &mut ctx).await;
                if !self.inner.suppress_error_log(&session, &ctx, &e) {
                    tracing::error!(
                        "Fail to filter request: {e}, status: {}, {}",
                        failed.error_code,
                        self.inner.request_summary(&session, &ctx)
                    );
                }
                self.inner.logging(&mut session, Some(&e), &mut ctx).await;
                session.as_downstream_mut().on_proxy_failure(e);
                failed.can_reuse_downstream
            }
        };
        if !reuse {
            return None;
        }
        let settings = HttpPersistentSettings::for_session(session.as_downstream());
        let reusable = session.downstream_session.finish().await.ok().flatten()?;
        Some(ReusedHttpStream::from_reusable_stream(reusable, settings))
    }
}

/// HTTP/2 streams, and HTTP/1 connections when nothing waits for their requests outside the
/// session ([`crate::connections::Capped`] does), come through pingora's HTTP server app.
#[async_trait]
impl<P: ProxyHttp + Send + Sync + 'static> HttpServerApp for Answering<P>
where
    P::CTX: Send + Sync,
{
    async fn process_new_http(
        self: &Arc<Self>,
        session: ServerSession,
        shutdown: &ShutdownWatch,
    ) -> Option<ReusedHttpStream> {
        // pingora makes its proxy's sessions only from an HTTP/1 stream; its downstream half
        // is public, so a session made on an empty stream takes this one's place.
        let mut proxied = Session::new_h1(Box::new(std::io::Cursor::new(Vec::<u8>::new())));
        proxied.downstream_session = Box::new(session);
        Box::pin(self.request(proxied, shutdown)).await
    }

    async fn http_cleanup(&self) {
        self.closing.store(true, Ordering::Release);
        self.closed.notify_waiters();
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use pingora::upstreams::peer::HttpPeer;

    /// A pipeline that answers every request 204.
    pub(crate) struct NoContent;

    #[async_trait]
    impl ProxyHttp for NoContent {
        type CTX = ();
        fn new_ctx(&self) {}
        async fn request_filter(&self, session: &mut Session, _: &mut ()) -> pingora::Result<bool> {
            let answer = pingora::http::ResponseHeader::build(204, None)?;
            session
                .write_response_header(Box::new(answer), true)
                .await?;
            Ok(true)
        }
        async fn upstream_peer(
            &self,
            _: &mut Session,
            _: &mut (),
        ) -> pingora::Result<Box<HttpPeer>> {
            Error::e_explain(ErrorType::InternalError, "never asked")
        }
    }

    /// Serves `request` (the bytes a client sent) as a kept-alive connection would be: the
    /// answer the client reads, whether the connection can carry another request, and the
    /// size of the request's future.
    async fn serve(request: &[u8]) -> (String, bool, usize) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let answering = Arc::new(Answering::new(NoContent));
        let (_stop, shutdown) = tokio::sync::watch::channel(false);
        let (mut client, server) = tokio::io::duplex(4096);
        client.write_all(request).await.unwrap();
        let mut session = Session::new_h1(Box::new(server));
        session.set_keepalive(Some(60));
        let served = answering.request(session, &shutdown);
        let size = std::mem::size_of_val(&served);
        let reused = served.await;
        let kept = reused.is_some();
        drop(reused);
        let mut answer = String::new();
        client.read_to_string(&mut answer).await.unwrap();
        (answer, kept, size)
    }

    /// A request's future is moved whole into its box for every request: pingora's proxy
    /// moved 15 KB (issue 24). This one is 4.6 KB, most of it pingora's `finish` (the
    /// session, taken by value, and its last writes).
    #[tokio::test]
    async fn a_request_is_answered_by_the_pipeline_through_a_small_future() {
        let (answer, kept, size) = serve(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").await;
        assert!(answer.starts_with("HTTP/1.1 204 "), "{answer}");
        assert!(kept, "the connection is kept for the next request");
        assert!(size <= 6 * 1024, "{size} bytes");
    }

    /// As pingora's proxy answers them: a request that is no HTTP gets a 400, a `CONNECT` a
    /// 405, neither reaches the pipeline and the connection closes.
    #[tokio::test]
    async fn a_malformed_request_and_a_tunnel_are_refused_before_the_pipeline() {
        let (answer, kept, _) = serve(b"GET / HTTP/1.1\r\nHost a\r\n\r\n").await;
        assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
        assert!(!kept);
        let (answer, kept, _) = serve(b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n").await;
        assert!(answer.starts_with("HTTP/1.1 405 "), "{answer}");
        assert!(!kept);
    }
}
