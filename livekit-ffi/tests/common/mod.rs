//! Test harness: a real LiveKit server on loopback with free ports, one per test,
//! plus token minting and helpers to wait for room events.
#![allow(dead_code)]

use std::net::{TcpListener, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use hmac::{Hmac, Mac};
use livekit_ffi::{Room, RoomEvent, RoomOptions};
use tokio::sync::mpsc;

pub const API_KEY: &str = "devkey";
pub const API_SECRET: &str = "secret-secret-secret-secret-0123";

pub struct Server {
    child: Child,
    pub port: u16,
    pub dir: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // LK_TEST_SERVER_LOG=debug keeps the server's log (and config) for a look.
        if std::env::var_os("LK_TEST_SERVER_LOG").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn server_binary() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = Command::new("bash")
        .arg(root.join("scripts/livekit-server.sh"))
        .stderr(Stdio::inherit())
        .output()
        .expect("run scripts/livekit-server.sh");
    assert!(out.status.success(), "could not install the LiveKit server");
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// Runs the server binary on `dir/livekit.yaml`, logging to `dir/server.log`.
fn spawn(bin: &std::path::Path, dir: &std::path::Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("server.log"))
        .unwrap();
    Command::new(bin)
        .arg("--config")
        .arg(dir.join("livekit.yaml"))
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("start the livekit server")
}

fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Server {
    /// Starts a server on free loopback ports and waits until `GET /` answers 200.
    pub fn start() -> Server {
        Self::start_with("")
    }

    pub fn start_with(extra_yaml: &str) -> Server {
        let bin = server_binary();
        for _ in 0..3 {
            let port = free_tcp_port();
            let tcp = free_tcp_port();
            let udp = free_udp_port();
            let dir = std::env::temp_dir().join(format!("lk-test-{}-{port}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let log = std::env::var("LK_TEST_SERVER_LOG").unwrap_or_else(|_| "warn".into());
            let config = format!(
                "port: {port}\nbind_addresses: [127.0.0.1]\nkeys: {{{API_KEY}: {API_SECRET}}}\n\
                 rtc: {{tcp_port: {tcp}, udp_port: {udp}, use_external_ip: false, node_ip: 127.0.0.1, enable_loopback_candidate: true}}\n\
                 turn: {{enabled: false}}\nroom: {{auto_create: true}}\nlogging: {{level: {log}}}\n{extra_yaml}"
            );
            std::fs::write(dir.join("livekit.yaml"), config).unwrap();
            let child = spawn(&bin, &dir);
            let mut server = Server { child, port, dir };
            if server.wait_ready(Duration::from_secs(20)) {
                return server;
            }
            // A port was taken between probing and binding: try again with new ones.
        }
        panic!("the LiveKit server did not become ready");
    }

    /// Stops the server process and starts it again on the same ports and config
    /// (every session on it is lost; clients must rejoin).
    pub fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = spawn(&server_binary(), &self.dir);
        assert!(
            self.wait_ready(Duration::from_secs(20)),
            "the server did not come back"
        );
    }

    fn wait_ready(&mut self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            if http_status(self.port, "/") == Some(200) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    pub fn url(&self) -> String {
        format!("ws://127.0.0.1:{}", self.port)
    }

    pub fn http_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn token(&self, room: &str, identity: &str) -> String {
        token(room, identity, 3600, API_SECRET)
    }

    pub fn room_service(&self) -> livekit_api::services::room::RoomClient {
        livekit_api::services::room::RoomClient::with_api_key(&self.http_url(), API_KEY, API_SECRET)
    }

    pub async fn join(&self, room: &str, identity: &str) -> (Room, mpsc::Receiver<RoomEvent>) {
        Room::connect(
            &self.url(),
            &self.token(room, identity),
            RoomOptions::default(),
        )
        .await
        .unwrap_or_else(|e| panic!("{identity} could not join {room}: {e}"))
    }
}

fn http_status(port: u16, path: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).ok()?;
    std::str::from_utf8(&buf[..n])
        .ok()?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Mints a join token. `ttl_secs` may be negative for an expired one.
pub fn token(room: &str, identity: &str, ttl_secs: i64, secret: &str) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let mut video = serde_json::json!({
        "roomJoin": true,
        "canPublish": true,
        "canSubscribe": true,
        "canPublishData": true,
        "canUpdateOwnMetadata": true,
    });
    if !room.is_empty() {
        video["room"] = room.into();
    }
    let mut claims = serde_json::json!({
        "iss": API_KEY,
        "nbf": now - 10,
        "exp": now + ttl_secs,
        "video": video,
    });
    if !identity.is_empty() {
        claims["sub"] = identity.into();
    }
    sign(&claims, secret)
}

pub fn sign(claims: &serde_json::Value, secret: &str) -> String {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = b64.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let body = b64.encode(claims.to_string());
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{header}.{body}").as_bytes());
    let sig = b64.encode(mac.finalize().into_bytes());
    format!("{header}.{body}.{sig}")
}

/// Waits for the first event that `pick` maps to `Some`, skipping others.
pub async fn wait_for<T>(
    rx: &mut mpsc::Receiver<RoomEvent>,
    within: Duration,
    mut pick: impl FnMut(&RoomEvent) -> Option<T>,
) -> T {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(ev)) => {
                if let Some(t) = pick(&ev) {
                    return t;
                }
            }
            Ok(None) => panic!("event stream ended while waiting"),
            Err(_) => panic!("timed out waiting for an event"),
        }
    }
}

pub fn init_logs() {
    let _ = env_logger::builder().is_test(true).try_init();
}

/// A TCP proxy in front of the server's signaling port whose connections can be cut,
/// to lose the signal connection while the peer connections (UDP) stay up.
pub struct Proxy {
    pub port: u16,
    conns: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Proxy {
    pub async fn start(target: u16) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let conns = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let list = conns.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) =
                        tokio::net::TcpStream::connect(("127.0.0.1", target)).await
                    {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                list.lock().unwrap().push(task.abort_handle());
            }
        });
        Proxy {
            port,
            conns,
            accept,
        }
    }

    pub fn url(&self) -> String {
        format!("ws://127.0.0.1:{}", self.port)
    }

    /// Cuts every connection made so far (new ones still go through).
    pub fn sever(&self) {
        for c in self.conns.lock().unwrap().drain(..) {
            c.abort();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.sever();
        self.accept.abort();
    }
}
