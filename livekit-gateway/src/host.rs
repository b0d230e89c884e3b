//! The device logic run on a host: a [`Device`] driven on tokio over a real link to a
//! gateway, the way the firmware drives it over its UART. The simulated device and
//! the ESP32 SDK's C API for the host are built on it.
//!
//! The link is TCP to a gateway process, or an in-process pipe to a [`Gateway`] of
//! our own (then one program joins the room by itself, through the very same link
//! protocol and device logic).

use std::sync::Arc;
use std::time::{Duration, Instant};

use livekit_device::{Config, Device, Event};
use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;

use crate::Gateway;

/// Where the device's link goes.
#[derive(Clone)]
pub enum Transport {
    /// A gateway listening at this address (`host:port`).
    Tcp(String),
    /// A gateway in this process.
    InProcess(Gateway),
}

/// How long one attempt to open the link may take.
const LINK_OPEN_TIMEOUT: Duration = Duration::from_secs(3);

type Reader = Box<dyn tokio::io::AsyncRead + Send + Unpin>;
type Writer = Box<dyn tokio::io::AsyncWrite + Send + Unpin>;

struct Shared {
    device: Mutex<Device>,
    wake: Notify,
    stopped: std::sync::atomic::AtomicBool,
    epoch: Instant,
}

/// A running device; calls on it go to its [`Device`] under a lock, and events come to
/// the callback given to [`DeviceHost::start`], in order, on the runtime.
pub struct DeviceHost {
    shared: Arc<Shared>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl DeviceHost {
    pub fn start(
        runtime: &tokio::runtime::Handle,
        config: Config,
        seed: u64,
        transport: Transport,
        on_event: impl FnMut(Event) + Send + 'static,
    ) -> Self {
        let shared = Arc::new(Shared {
            device: Mutex::new(Device::new(config, seed)),
            wake: Notify::new(),
            stopped: std::sync::atomic::AtomicBool::new(false),
            epoch: Instant::now(),
        });
        let task = runtime.spawn(drive(shared.clone(), transport, on_event));
        Self {
            shared,
            task: Some(task),
        }
    }

    /// Runs `f` on the device with the current time (ms), then lets the driver send
    /// what it produced.
    pub fn with<R>(&self, f: impl FnOnce(&mut Device, u64) -> R) -> R {
        let now = now_ms(&self.shared);
        let r = f(&mut self.shared.device.lock(), now);
        self.shared.wake.notify_one();
        r
    }

    /// Stops the driver (the link closes; the gateway keeps the session for its
    /// grace period unless the device closed it first).
    pub fn stop(&mut self) {
        self.shared
            .stopped
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.shared.wake.notify_one();
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

impl Drop for DeviceHost {
    fn drop(&mut self) {
        self.stop();
    }
}

fn now_ms(shared: &Shared) -> u64 {
    shared.epoch.elapsed().as_millis() as u64
}

async fn open(transport: &Transport) -> std::io::Result<(Reader, Writer)> {
    match transport {
        Transport::Tcp(addr) => {
            let stream = tokio::time::timeout(
                LINK_OPEN_TIMEOUT,
                tokio::net::TcpStream::connect(addr.as_str()),
            )
            .await
            .map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::TimedOut, "link open timed out")
            })??;
            let _ = stream.set_nodelay(true);
            let (r, w) = stream.into_split();
            Ok((Box::new(r), Box::new(w)))
        }
        Transport::InProcess(gateway) => {
            let (ours, theirs) = tokio::io::duplex(64 * 1024);
            let gateway = gateway.clone();
            tokio::spawn(async move { gateway.handle_link(theirs).await });
            let (r, w) = tokio::io::split(ours);
            Ok((Box::new(r), Box::new(w)))
        }
    }
}

/// Why the driver woke up.
enum Woke {
    Read(usize),
    LinkLost,
    Timer,
    /// A call on the device (something may be waiting to be sent).
    Call,
}

async fn drive(shared: Arc<Shared>, transport: Transport, mut on_event: impl FnMut(Event)) {
    let mut link: Option<(Reader, Writer)> = None;
    let mut buf = vec![0u8; 4096];
    loop {
        if shared.stopped.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        let now = now_ms(&shared);
        let wants = link.is_none() && shared.device.lock().wants_link(now);
        if wants {
            let opened = open(&transport).await;
            let now = now_ms(&shared);
            let mut device = shared.device.lock();
            match opened {
                Ok(l) => {
                    link = Some(l);
                    device.link_up(now);
                }
                Err(e) => {
                    log::debug!("device link could not open: {e}");
                    device.link_down(now);
                }
            }
        }
        // What the device wants written, and what it has to say.
        let (frames, events, drop_link, deadline) = {
            let mut device = shared.device.lock();
            let frames: Vec<Vec<u8>> = std::iter::from_fn(|| device.poll_transmit()).collect();
            let events: Vec<Event> = std::iter::from_fn(|| device.poll_event()).collect();
            (
                frames,
                events,
                device.take_link_drop(),
                device.poll_timeout(),
            )
        };
        if drop_link {
            link = None;
        }
        if let Some((_, w)) = link.as_mut() {
            let mut failed = false;
            for f in &frames {
                if w.write_all(f).await.is_err() {
                    failed = true;
                    break;
                }
            }
            if !failed && !frames.is_empty() {
                failed = w.flush().await.is_err();
            }
            if failed {
                link = None;
                shared.device.lock().link_down(now_ms(&shared));
                continue;
            }
        }
        for e in events {
            on_event(e);
        }
        let sleep_for = deadline
            .map(|d| Duration::from_millis(d.saturating_sub(now_ms(&shared))))
            .unwrap_or(Duration::from_secs(3600));
        let woke = match link.as_mut() {
            Some((r, _)) => tokio::select! {
                read = r.read(&mut buf) => match read {
                    Ok(0) | Err(_) => Woke::LinkLost,
                    Ok(n) => Woke::Read(n),
                },
                _ = tokio::time::sleep(sleep_for) => Woke::Timer,
                _ = shared.wake.notified() => Woke::Call,
            },
            None => tokio::select! {
                _ = tokio::time::sleep(sleep_for) => Woke::Timer,
                _ = shared.wake.notified() => Woke::Call,
            },
        };
        let now = now_ms(&shared);
        match woke {
            Woke::Read(n) => shared.device.lock().handle_input(now, &buf[..n]),
            Woke::LinkLost => {
                link = None;
                shared.device.lock().link_down(now);
            }
            Woke::Timer => shared.device.lock().handle_timeout(now),
            Woke::Call => {}
        }
    }
}
