//! The signal connection: one WebSocket to the server's `/rtc` endpoint carrying
//! protobuf `SignalRequest` / `SignalResponse` frames.
//!
//! `SignalClient::connect` dials, waits for the `JoinResponse` and then hands the
//! socket to a single task that multiplexes writes, reads and keep-alive pings.
//! A refused handshake says why with its HTTP status, the one `/rtc/validate` would
//! give (mapped as the ESP32 SDK does), and a short reason in its body.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use livekit_protocol as proto;
use prost::Message as _;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest, Message};
use url::Url;

use crate::error::{Error, Result};
use crate::state::FailureReason;

/// Protocol version we speak: two peer connections, subscriber offers from the server.
pub const PROTOCOL_VERSION: u32 = 16;
/// Default bound on dialing plus the WebSocket handshake plus the join answer.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Options of the join request that end up in the URL query.
#[derive(Debug, Clone)]
pub struct JoinOptions {
    pub auto_subscribe: bool,
    pub adaptive_stream: bool,
    pub sdk: String,
    pub sdk_version: String,
    pub connect_timeout: Duration,
}

impl Default for JoinOptions {
    fn default() -> Self {
        Self {
            auto_subscribe: true,
            adaptive_stream: false,
            sdk: "rust".into(),
            sdk_version: env!("CARGO_PKG_VERSION").into(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
        }
    }
}

/// Resume parameters for a reconnect that keeps the session.
#[derive(Debug, Clone)]
pub struct Resume {
    pub participant_sid: String,
    pub reason: i32,
}

/// Normalises a user-given server URL to the WebSocket base (`ws`/`wss`).
pub fn parse_server_url(url: &str) -> Result<Url> {
    let bad = |reason: &str| Error::InvalidUrl {
        url: url.to_owned(),
        reason: reason.to_owned(),
    };
    let mut u = Url::parse(url.trim()).map_err(|e| bad(&e.to_string()))?;
    let scheme = match u.scheme() {
        "ws" | "http" => "ws",
        "wss" | "https" => "wss",
        _ => return Err(bad("the scheme must be ws://, wss://, http:// or https://")),
    };
    u.set_scheme(scheme).map_err(|_| bad("cannot set scheme"))?;
    if u.host_str().unwrap_or("").is_empty() {
        return Err(bad("no host"));
    }
    Ok(u)
}

/// The URL of `endpoint` (`rtc` or `rtc/validate`) with the join query.
pub fn join_url(
    base: &Url,
    endpoint: &str,
    token: &str,
    opts: &JoinOptions,
    resume: Option<&Resume>,
) -> Url {
    let mut u = base.clone();
    let path = u.path().trim_end_matches('/').to_owned();
    u.set_path(&format!("{path}/{endpoint}"));
    u.set_query(None);
    {
        let mut q = u.query_pairs_mut();
        q.append_pair("access_token", token)
            .append_pair(
                "auto_subscribe",
                if opts.auto_subscribe { "1" } else { "0" },
            )
            .append_pair("sdk", &opts.sdk)
            .append_pair("version", &opts.sdk_version)
            .append_pair("protocol", &PROTOCOL_VERSION.to_string())
            .append_pair(
                "adaptive_stream",
                if opts.adaptive_stream { "1" } else { "0" },
            );
        if let Some(r) = resume {
            q.append_pair("reconnect", "1")
                .append_pair("sid", &r.participant_sid)
                .append_pair("reconnect_reason", &r.reason.to_string());
        }
    }
    u
}

/// What the signal task reports.
#[derive(Debug)]
pub enum SignalEvent {
    Message(Box<proto::signal_response::Message>),
    /// The connection is gone; no more events follow.
    Closed {
        reason: FailureReason,
        message: String,
    },
}

enum Outgoing {
    Request(proto::signal_request::Message),
    /// Send a final request (e.g. a leave), then close the socket.
    Close(Option<proto::signal_request::Message>),
}

/// Handle to a live signal connection. Dropping it closes the socket.
#[derive(Debug, Clone)]
pub struct SignalClient {
    tx: mpsc::Sender<Outgoing>,
}

impl std::fmt::Debug for Outgoing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Outgoing")
    }
}

type WsStream = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

pub(crate) fn tls_config() -> Arc<rustls::ClientConfig> {
    static CONFIG: std::sync::OnceLock<Arc<rustls::ClientConfig>> = std::sync::OnceLock::new();
    CONFIG
        .get_or_init(|| {
            // The public roots, plus the system's (and SSL_CERT_FILE / SSL_CERT_DIR):
            // a company CA or a test server's certificate is trusted as curl would.
            let mut roots = rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            };
            let native = rustls_native_certs::load_native_certs();
            for e in &native.errors {
                log::debug!("system certificates: {e}");
            }
            let (added, ignored) = roots.add_parsable_certificates(native.certs);
            log::debug!("{added} system certificates trusted ({ignored} unparsable)");
            let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
            let cfg = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map(|b| b.with_root_certificates(roots).with_no_client_auth())
                .unwrap_or_else(|_| {
                    // Only reachable if the provider offered no protocol version.
                    rustls::ClientConfig::builder()
                        .with_root_certificates(rustls::RootCertStore::empty())
                        .with_no_client_auth()
                });
            Arc::new(cfg)
        })
        .clone()
}

async fn dial(url: &Url) -> std::io::Result<TcpStream> {
    let host = url.host_str().unwrap_or_default();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = url.port_or_known_default().unwrap_or(80);
    let stream = TcpStream::connect((host, port)).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

impl SignalClient {
    /// Dials the server, joins, and returns the client, the join answer and the
    /// stream of further server messages.
    pub async fn connect(
        base: &Url,
        token: &str,
        opts: &JoinOptions,
        resume: Option<&Resume>,
    ) -> Result<(
        SignalClient,
        proto::signal_response::Message,
        mpsc::Receiver<SignalEvent>,
    )> {
        let (base, token, opts, resume) = (
            base.clone(),
            token.to_owned(),
            opts.clone(),
            resume.cloned(),
        );
        let (done_tx, done_rx) = oneshot::channel();
        // The join runs in its own task, so a caller that gives up halfway (a cancelled
        // connect) cannot cut it short: once the server has accepted it, the client
        // nobody received is dropped and `run` leaves at once.
        tokio::spawn(async move {
            match Self::open(&base, &token, &opts, resume.as_ref()).await {
                Err(e) => {
                    let _ = done_tx.send(Err(e));
                }
                Ok((ws, first)) => {
                    let (tx, rx) = mpsc::channel(64);
                    let (events_tx, events_rx) = mpsc::channel(1024);
                    let ping = match &first {
                        proto::signal_response::Message::Join(j) => PingTimes::from_join(j),
                        _ => PingTimes::from_join(&Default::default()),
                    };
                    let _ = done_tx.send(Ok((SignalClient { tx }, first, events_rx)));
                    run(ws, rx, events_tx, ping).await;
                }
            }
        });
        done_rx
            .await
            .map_err(|_| Error::Signal("the signal task ended".into()))?
    }

    /// Dials, upgrades to a WebSocket and reads the answer to the join.
    async fn open(
        base: &Url,
        token: &str,
        opts: &JoinOptions,
        resume: Option<&Resume>,
    ) -> Result<(WsStream, proto::signal_response::Message)> {
        let url = join_url(base, "rtc", token, opts, resume);
        let deadline = tokio::time::Instant::now() + opts.connect_timeout;
        let ws = match tokio::time::timeout_at(deadline, Self::handshake(&url)).await {
            Err(_) => {
                return Err(Error::connect(
                    FailureReason::Unreachable,
                    format!("no answer from {} within {:?}", base, opts.connect_timeout),
                ))
            }
            Ok(Ok(ws)) => ws,
            Ok(Err(HandshakeError::Io(e))) => {
                return Err(Error::connect(
                    FailureReason::Unreachable,
                    format!("cannot reach {base}: {e}"),
                ))
            }
            Ok(Err(HandshakeError::Refused { status, body })) => {
                let reason = FailureReason::from_validate_status(Some(status));
                let message = match body {
                    Some(body) => format!("server refused the join ({status}): {body}"),
                    None => format!("server refused the join ({status})"),
                };
                return Err(Error::connect(reason, message));
            }
        };
        let mut ws = ws;
        let first = tokio::time::timeout_at(deadline, Self::first_message(&mut ws))
            .await
            .map_err(|_| {
                Error::connect(
                    FailureReason::JoinIncomplete,
                    "the server did not answer the join",
                )
            })??;
        Ok((ws, first))
    }

    async fn handshake(url: &Url) -> std::result::Result<WsStream, HandshakeError> {
        let request = url
            .as_str()
            .into_client_request()
            .map_err(|e| HandshakeError::Io(std::io::Error::other(e.to_string())))?;
        let stream = dial(url).await.map_err(HandshakeError::Io)?;
        let connector = if url.scheme() == "wss" {
            tokio_tungstenite::Connector::Rustls(tls_config())
        } else {
            tokio_tungstenite::Connector::Plain
        };
        match tokio_tungstenite::client_async_tls_with_config(
            request,
            stream,
            None,
            Some(connector),
        )
        .await
        {
            Ok((ws, _)) => Ok(ws),
            Err(tungstenite::Error::Http(resp)) => Err(HandshakeError::Refused {
                status: resp.status().as_u16(),
                body: refusal_text(&resp),
            }),
            Err(tungstenite::Error::Io(e)) => Err(HandshakeError::Io(e)),
            Err(tungstenite::Error::Tls(e)) => {
                Err(HandshakeError::Io(std::io::Error::other(e.to_string())))
            }
            Err(e) => Err(HandshakeError::Io(std::io::Error::other(e.to_string()))),
        }
    }

    /// The first answer to a join is either the JoinResponse (or ReconnectResponse) or
    /// a LeaveRequest that says why we may not join.
    async fn first_message(ws: &mut WsStream) -> Result<proto::signal_response::Message> {
        while let Some(msg) = ws.next().await {
            let msg = msg.map_err(|e| {
                Error::connect(
                    FailureReason::SignalClose,
                    format!("signal connection lost: {e}"),
                )
            })?;
            let Message::Binary(bytes) = msg else {
                continue;
            };
            let resp = proto::SignalResponse::decode(bytes.as_ref())
                .map_err(|e| Error::Signal(format!("bad signal message: {e}")))?;
            match resp.message {
                Some(proto::signal_response::Message::Leave(leave)) => {
                    let reason =
                        FailureReason::from_leave(leave.reason, FailureReason::JoinIncomplete);
                    return Err(Error::connect(reason, "the server refused the join"));
                }
                Some(m @ proto::signal_response::Message::Join(_))
                | Some(m @ proto::signal_response::Message::Reconnect(_)) => return Ok(m),
                // Anything before the join answer is not expected; ignore it.
                _ => continue,
            }
        }
        Err(Error::connect(
            FailureReason::SignalClose,
            "the server closed the connection before answering the join",
        ))
    }

    /// Queues a request; fails when the connection is gone.
    pub async fn send(&self, msg: proto::signal_request::Message) -> Result<()> {
        self.tx
            .send(Outgoing::Request(msg))
            .await
            .map_err(|_| Error::Signal("signal connection closed".into()))
    }

    /// Sends `last` (if any) and closes the socket; returns once the task has it.
    pub async fn close(&self, last: Option<proto::signal_request::Message>) {
        let _ = self.tx.send(Outgoing::Close(last)).await;
    }
}

enum HandshakeError {
    Io(std::io::Error),
    Refused { status: u16, body: Option<String> },
}

/// The reason a refusal gives in its body: the part of a plain-text body that came
/// with the headers, only when its length is declared (nothing chunked is parsed).
fn refusal_text(resp: &tungstenite::http::Response<Option<Vec<u8>>>) -> Option<String> {
    let declared: usize = resp
        .headers()
        .get(tungstenite::http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()?;
    let body = resp.body().as_deref()?;
    let text = String::from_utf8_lossy(&body[..declared.min(body.len())]);
    let text = text.trim();
    (!text.is_empty()).then(|| text.chars().take(512).collect())
}

#[derive(Debug, Clone, Copy)]
struct PingTimes {
    interval: Duration,
    timeout: Duration,
}

impl PingTimes {
    fn from_join(j: &proto::JoinResponse) -> Self {
        let interval = if j.ping_interval > 0 {
            j.ping_interval as u64
        } else {
            5
        };
        let timeout = if j.ping_timeout > 0 {
            j.ping_timeout as u64
        } else {
            15
        };
        Self {
            interval: Duration::from_secs(interval),
            timeout: Duration::from_secs(timeout),
        }
    }
}

/// A `LeaveRequest` for leaving on our own.
pub(crate) fn leave_request() -> proto::signal_request::Message {
    leave_with(proto::DisconnectReason::ClientInitiated)
}

/// A `LeaveRequest` that tells the others why we leave.
pub(crate) fn leave_with(reason: proto::DisconnectReason) -> proto::signal_request::Message {
    proto::signal_request::Message::Leave(proto::LeaveRequest {
        reason: reason as i32,
        ..Default::default()
    })
}

/// One request as a WebSocket frame.
fn frame(m: proto::signal_request::Message) -> Message {
    Message::Binary(
        proto::SignalRequest { message: Some(m) }
            .encode_to_vec()
            .into(),
    )
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Sends `last` (a leave), then closes the WebSocket and waits, briefly, for the
/// server to close its side. Dropping the socket at once could lose the leave: with
/// messages of the server still unread, the kernel answers with a reset, and the
/// server may throw away what it had not read yet (the leave among it), keeping
/// our participant in the room until it times out.
async fn close_gracefully(mut ws: WsStream, last: Option<proto::signal_request::Message>) {
    let closing = tokio::time::timeout(Duration::from_secs(2), async {
        if let Some(m) = last {
            if let Err(e) = ws.send(frame(m)).await {
                log::debug!("signal: last request not sent: {e}");
            }
        }
        if let Err(e) = ws.close(None).await {
            log::debug!("signal: close frame not sent: {e}");
        }
        // Read (and drop) what is still coming until the server closes too.
        loop {
            match ws.next().await {
                Some(Ok(_)) => {}
                Some(Err(e)) => break log::debug!("signal: closed with {e}"),
                None => break log::debug!("signal: closed by the server"),
            }
        }
    })
    .await;
    if closing.is_err() {
        log::debug!("signal: the server did not close in time");
    }
}

/// The one task of a signal connection; ends when the socket or the client goes.
async fn run(
    mut ws: WsStream,
    mut rx: mpsc::Receiver<Outgoing>,
    events: mpsc::Sender<SignalEvent>,
    ping: PingTimes,
) {
    let mut ticker = tokio::time::interval(ping.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    let mut last_pong = Instant::now();
    let mut rtt: i64 = 0;
    let closed = |reason, message: String| SignalEvent::Closed { reason, message };
    let end = loop {
        tokio::select! {
            out = rx.recv() => match out {
                Some(Outgoing::Request(m)) => {
                    if let Err(e) = ws.send(frame(m)).await {
                        break closed(FailureReason::SignalClose, format!("write failed: {e}"));
                    }
                }
                Some(Outgoing::Close(last)) => return close_gracefully(ws, last).await,
                // Every handle is gone (e.g. a cancelled join): tell the server we
                // left, or it keeps our participant around waiting for a resume.
                None => return close_gracefully(ws, Some(leave_request())).await,
            },
            incoming = ws.next() => match incoming {
                Some(Ok(Message::Binary(bytes))) => {
                    let resp = match proto::SignalResponse::decode(bytes.as_ref()) {
                        Ok(r) => r,
                        Err(e) => {
                            log::warn!("dropping undecodable signal message: {e}");
                            continue;
                        }
                    };
                    let Some(msg) = resp.message else { continue };
                    match &msg {
                        proto::signal_response::Message::PongResp(p) => {
                            last_pong = Instant::now();
                            rtt = now_ms().saturating_sub(p.last_ping_timestamp).max(0);
                            continue;
                        }
                        proto::signal_response::Message::Pong(_) => {
                            last_pong = Instant::now();
                            continue;
                        }
                        _ => {}
                    }
                    // Nobody listens while the owner is closing this connection: drop
                    // the message and keep going, so that its close (with the leave)
                    // still comes through here.
                    let _ = events.send(SignalEvent::Message(Box::new(msg))).await;
                }
                Some(Ok(Message::Close(frame))) => {
                    break closed(FailureReason::SignalClose, format!("server closed the signal connection: {frame:?}"));
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => break closed(FailureReason::SignalClose, format!("signal connection lost: {e}")),
                None => break closed(FailureReason::SignalClose, "signal connection ended".into()),
            },
            _ = ticker.tick() => {
                if last_pong.elapsed() > ping.timeout {
                    break closed(FailureReason::PingTimeout, format!("no pong for {:?}", ping.timeout));
                }
                let ping = proto::signal_request::Message::PingReq(proto::Ping { timestamp: now_ms(), rtt });
                if let Err(e) = ws.send(frame(ping)).await {
                    break closed(FailureReason::SignalClose, format!("write failed: {e}"));
                }
            }
        }
    };
    let _ = events.send(end).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_normalised_and_bad_ones_refused() {
        assert_eq!(parse_server_url("http://h:7880").unwrap().scheme(), "ws");
        assert_eq!(parse_server_url("https://h").unwrap().scheme(), "wss");
        assert!(parse_server_url("ftp://h").is_err());
        assert!(parse_server_url("not a url").is_err());
        assert!(parse_server_url("").is_err());
    }

    #[test]
    fn join_url_carries_the_query() {
        let base = parse_server_url("ws://127.0.0.1:7880/").unwrap();
        let u = join_url(&base, "rtc", "tok", &JoinOptions::default(), None);
        assert_eq!(u.path(), "/rtc");
        let q: std::collections::HashMap<_, _> = u.query_pairs().into_owned().collect();
        assert_eq!(q["access_token"], "tok");
        assert_eq!(q["protocol"], "16");
        assert_eq!(q["auto_subscribe"], "1");
        assert!(!q.contains_key("reconnect"));
        let r = Resume {
            participant_sid: "PA_x".into(),
            reason: 1,
        };
        let u = join_url(
            &base,
            "rtc/validate",
            "tok",
            &JoinOptions::default(),
            Some(&r),
        );
        assert_eq!(u.path(), "/rtc/validate");
        let q: std::collections::HashMap<_, _> = u.query_pairs().into_owned().collect();
        assert_eq!(q["reconnect"], "1");
        assert_eq!(q["sid"], "PA_x");
    }
}
