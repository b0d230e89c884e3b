//! Forwards the core's `log` records to the client as `LogBatch` events, batched so
//! that a chatty module costs one event per flush, not one per line.

use std::sync::OnceLock;
use std::time::Duration;

use parking_lot::Mutex;

use super::proto;
use super::FfiServer;

const FLUSH_EVERY: Duration = Duration::from_millis(50);
const MAX_BATCH: usize = 256;

struct FfiLogger {
    server: &'static FfiServer,
    batch: Mutex<Vec<proto::LogRecord>>,
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
        let full = {
            let mut batch = self.batch.lock();
            batch.push(proto::LogRecord {
                level: level(record.level()) as i32,
                target: record.target().to_owned(),
                module_path: record.module_path().map(str::to_owned),
                file: record.file().map(str::to_owned),
                line: record.line(),
                message: record.args().to_string(),
            });
            batch.len() >= MAX_BATCH
        };
        if full {
            self.flush();
        }
    }

    fn flush(&self) {
        let records = std::mem::take(&mut *self.batch.lock());
        if !records.is_empty() {
            self.server
                .send_event(proto::ffi_event::Message::Logs(proto::LogBatch { records }));
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
        }))
    });
    if !fresh {
        return;
    }
    if log::set_logger(*logger).is_ok() {
        log::set_max_level(log::LevelFilter::Debug);
        let logger: &'static FfiLogger = logger;
        server.spawn(async move {
            let mut tick = tokio::time::interval(FLUSH_EVERY);
            loop {
                tick.tick().await;
                log::Log::flush(logger);
            }
        });
    }
}
