//! Forwards the core's `log` records to the client as `LogBatch` events, batched so
//! that a chatty module costs one event per flush, not one per line.
//!
//! Logging only appends to a bounded batch; a thread of its own flushes it into the
//! delivery queue, so no transport thread ever encodes or hands over a batch.

use std::sync::OnceLock;
use std::time::Duration;

use parking_lot::Mutex;

use super::proto;
use super::FfiServer;

const FLUSH_EVERY: Duration = Duration::from_millis(50);
const MAX_BATCH: usize = 256;
/// Records kept between flushes; past it, records are dropped and counted.
const MAX_PENDING: usize = 16 * 1024;

struct FfiLogger {
    server: &'static FfiServer,
    batch: Mutex<Vec<proto::LogRecord>>,
    dropped: std::sync::atomic::AtomicU64,
}

static LOGGER: OnceLock<&'static FfiLogger> = OnceLock::new();

fn level(l: log::Level) -> proto::LogLevel {
    match l {
        log::Level::Error => proto::LogLevel::LogError,
        log::Level::Warn => proto::LogLevel::LogWarn,
        log::Level::Info => proto::LogLevel::LogInfo,
        log::Level::Debug => proto::LogLevel::LogDebug,
        log::Level::Trace => proto::LogLevel::LogTrace,
    }
}

impl log::Log for FfiLogger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        // Our own crate at debug, everything else (str0m, tungstenite...) from warn up.
        if metadata.target().starts_with("livekit") {
            metadata.level() <= log::Level::Debug
        } else {
            metadata.level() <= log::Level::Warn
        }
    }

    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let entry = proto::LogRecord {
            level: level(record.level()) as i32,
            target: record.target().to_owned(),
            module_path: record.module_path().map(str::to_owned),
            file: record.file().map(str::to_owned),
            line: record.line(),
            message: record.args().to_string(),
        };
        let mut batch = self.batch.lock();
        if batch.len() < MAX_PENDING {
            batch.push(entry);
        } else {
            self.dropped
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    fn flush(&self) {
        let pending = std::mem::take(&mut *self.batch.lock());
        let mut records = pending.into_iter().peekable();
        while records.peek().is_some() {
            let records: Vec<_> = records.by_ref().take(MAX_BATCH).collect();
            self.server
                .send_event(proto::ffi_event::Message::Logs(proto::LogBatch { records }));
        }
        let dropped = self.dropped.swap(0, std::sync::atomic::Ordering::Relaxed);
        if dropped > 0 {
            log::warn!("{dropped} log records were dropped: the client read them too slowly");
        }
    }
}

/// Installs the forwarding logger once per process (the `log` crate allows one).
pub(super) fn install(server: &'static FfiServer) {
    let mut fresh = false;
    let logger = LOGGER.get_or_init(|| {
        fresh = true;
        Box::leak(Box::new(FfiLogger {
            server,
            batch: Mutex::new(Vec::new()),
            dropped: Default::default(),
        }))
    });
    if !fresh {
        return;
    }
    if log::set_logger(*logger).is_ok() {
        log::set_max_level(log::LevelFilter::Debug);
        let logger: &'static FfiLogger = logger;
        let started = std::thread::Builder::new()
            .name("livekit-ffi-logs".into())
            .spawn(move || loop {
                std::thread::sleep(FLUSH_EVERY);
                log::Log::flush(logger);
            });
        if let Err(e) = started {
            eprintln!("livekit-ffi: cannot start the log thread, logs stay local: {e}");
        }
    }
}
