//! `livekit-gateway`: holds the LiveKit sessions of devices that connect to it.
//!
//!     livekit-gateway [--listen HOST:PORT] [--serial PATH] [--grace SECONDS]
//!
//! Devices connect over TCP (`--listen`, 127.0.0.1:7100 by default), or one device on
//! a serial line (`--serial /dev/ttyUSB0`; set the line up first, e.g.
//! `stty -F /dev/ttyUSB0 115200 raw -echo`). Each device then says which room to
//! join (URL and token): the gateway needs no configuration of its own.

use std::time::Duration;

use livekit_gateway::{Gateway, GatewayOptions};

struct StderrLog;

impl log::Log for StderrLog {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= log::Level::Info && m.target().starts_with("livekit")
    }
    fn log(&self, r: &log::Record<'_>) {
        if self.enabled(r.metadata()) {
            eprintln!("[{} {}] {}", r.level(), r.target(), r.args());
        }
    }
    fn flush(&self) {}
}

fn usage() -> ! {
    eprintln!("usage: livekit-gateway [--listen HOST:PORT] [--serial PATH] [--grace SECONDS]");
    std::process::exit(2)
}

fn main() {
    let _ = log::set_logger(&StderrLog);
    log::set_max_level(log::LevelFilter::Info);
    let mut listen = String::from("127.0.0.1:7100");
    let mut serial = None;
    let mut options = GatewayOptions::default();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--listen" => listen = args.next().unwrap_or_else(|| usage()),
            "--serial" => serial = Some(args.next().unwrap_or_else(|| usage())),
            "--grace" => {
                let s: u64 = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| usage());
                options.session_grace = Duration::from_secs(s);
            }
            _ => usage(),
        }
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("livekit-gateway: cannot start: {e}");
            std::process::exit(1)
        }
    };
    let gateway = Gateway::new(options);
    let result = runtime.block_on(async move {
        if let Some(path) = serial {
            let port = tokio::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .await?;
            eprintln!("livekit-gateway: serving the device on {path}");
            gateway.handle_link(port).await;
            return Ok(());
        }
        let listener = tokio::net::TcpListener::bind(&listen).await?;
        // The address goes to stdout so that a test (or a script) can read the port.
        println!("listening {}", listener.local_addr()?);
        gateway.serve(listener).await
    });
    if let Err(e) = result {
        eprintln!("livekit-gateway: {e}");
        std::process::exit(1);
    }
}
