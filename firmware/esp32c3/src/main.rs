//! LiveKit on an ESP32-C3: `livekit-device` over a serial link to a gateway.
//!
//! - The link: UART0 on the C3's default pins (TX GPIO21, RX GPIO20; the USB-UART
//!   bridge of most dev boards), 115200 baud 8N1, carrying `livekit_core::link`
//!   frames. Bytes read go to [`Device::handle_input`], frames from
//!   [`Device::poll_transmit`] are written out, and the device's timers run on
//!   esp-hal's clock (milliseconds since boot).
//! - The log: the C3's USB-serial-JTAG port (esp-println), so log lines never mix
//!   with the link's frames. With no USB host attached, log output is dropped.
//! - The app ([`app`]): RPC `echo`, and text streams on `chat` echoed back to their
//!   sender on `chat-echo`.
//! - The room: `LK_URL` and `LK_TOKEN`, given when building, e.g.
//!   `LK_URL=ws://... LK_TOKEN=... bash scripts/firmware.sh`. Without both the
//!   device stays out of rooms and says so.
#![no_std]
#![no_main]

extern crate alloc;

mod app;

use alloc::collections::VecDeque;
use alloc::format;
use core::fmt;

use esp_backtrace as _;
use esp_hal::clock::CpuClock;
use esp_hal::rng::Rng;
use esp_hal::time::Instant;
use esp_hal::uart::{self, Uart};
use esp_hal::Blocking;
use esp_println::println;
use livekit_device::{Config, ConnectionState, Device, FailureReason};

esp_bootloader_esp_idf::esp_app_desc!();

/// The room to join, fixed when the image is built.
const LK_URL: Option<&str> = option_env!("LK_URL");
const LK_TOKEN: Option<&str> = option_env!("LK_TOKEN");

/// The link's speed (8 data bits, no parity, 1 stop bit).
const BAUD_RATE: u32 = 115_200;

/// Heap in the RAM the second-stage bootloader used (free once the app runs).
const HEAP_RECLAIMED: usize = 64 * 1024;
/// Heap in ordinary RAM. A link frame holds up to 20 KiB; streams are passed on
/// chunk by chunk, so a few frames' worth is plenty.
const HEAP_MAIN: usize = 128 * 1024;

/// After giving up on an absent gateway, the device tries again this much later
/// (it may have been started after the device, or restarted).
const REJOIN_AFTER_MS: u64 = 30_000;

/// Milliseconds since boot.
fn now_ms() -> u64 {
    Instant::now().duration_since_epoch().as_millis()
}

/// Log lines on the USB-serial-JTAG console, stamped with the time since boot.
struct Console;

impl app::Log for Console {
    fn line(&mut self, args: fmt::Arguments<'_>) {
        let now = now_ms();
        println!("[{:>6}.{:03}] {}", now / 1000, now % 1000, args);
    }
}

macro_rules! log {
    ($($arg:tt)*) => {
        app::Log::line(&mut Console, format_args!($($arg)*))
    };
}

/// The serial link: reads what has arrived, and writes frames without blocking,
/// so a long frame going out never starves the receive FIFO (128 bytes, about
/// 11 ms at 115200 baud).
struct Link<'d> {
    uart: Uart<'d, Blocking>,
    /// The frame being written and how much of it has gone out.
    out: VecDeque<u8>,
    rx_errors: u32,
}

impl Link<'_> {
    /// Hands whatever arrived to `sink`, in pieces of up to 128 bytes.
    fn receive(&mut self, mut sink: impl FnMut(&[u8])) {
        let mut buf = [0u8; 128];
        while self.uart.read_ready() {
            match self.uart.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => sink(&buf[..n]),
                Err(e) => {
                    // The bytes are lost; the link's framing finds the next frame
                    // and the layers above resend what mattered.
                    self.rx_errors += 1;
                    log!("link: receive error {e:?} ({} so far)", self.rx_errors);
                }
            }
        }
    }

    /// Whether everything queued has gone out to the UART.
    fn idle(&self) -> bool {
        self.out.is_empty()
    }

    fn queue(&mut self, frame: &[u8]) {
        self.out.extend(frame);
    }

    /// Moves what fits into the transmit FIFO.
    fn transmit(&mut self) {
        while !self.out.is_empty() && self.uart.write_ready() {
            let (head, _) = self.out.as_slices();
            match self.uart.write(head) {
                Ok(n) => drop(self.out.drain(..n)),
                Err(e) => {
                    log!("link: transmit error {e:?}; frame dropped");
                    self.out.clear();
                }
            }
        }
    }
}

#[esp_hal::main]
fn main() -> ! {
    let peripherals = esp_hal::init(esp_hal::Config::default().with_cpu_clock(CpuClock::max()));
    esp_alloc::heap_allocator!(#[unsafe(link_section = ".dram2_uninit")] size: HEAP_RECLAIMED);
    esp_alloc::heap_allocator!(size: HEAP_MAIN);

    let config = uart::Config::default().with_baudrate(BAUD_RATE);
    let uart = match Uart::new(peripherals.UART0, config) {
        Ok(uart) => uart.with_rx(peripherals.GPIO20).with_tx(peripherals.GPIO21),
        Err(e) => panic!("UART0 refused its configuration: {e:?}"),
    };
    let mut link = Link {
        uart,
        out: VecDeque::new(),
        rx_errors: 0,
    };

    // Request and stream ids only need to differ between boots and devices.
    let rng = Rng::new();
    let seed = (u64::from(rng.random()) << 32) | u64::from(rng.random());
    let device_id = format!("esp32c3-{:08x}", rng.random());
    log!(
        "livekit-esp32c3 {}: {device_id}, link on UART0 (TX GPIO21, RX GPIO20) at {BAUD_RATE} 8N1",
        env!("CARGO_PKG_VERSION")
    );

    let mut device = Device::new(
        Config {
            device_id,
            ..Config::default()
        },
        seed,
    );
    let mut app = app::App::new(&mut device);

    let room = match (LK_URL, LK_TOKEN) {
        (Some(url), Some(token)) if !url.is_empty() && !token.is_empty() => Some((url, token)),
        _ => None,
    };
    match room {
        Some((url, token)) => {
            log!("connecting to {url} through the gateway on the link");
            if let Err(e) = device.connect(now_ms(), url, token) {
                log!("connect refused: {e}");
            }
        }
        None => log!(
            "LK_URL and/or LK_TOKEN were not set when this image was built: not joining a room \
             (build with LK_URL=ws://host:7880 LK_TOKEN=<jwt> bash scripts/firmware.sh)"
        ),
    }
    let mut rejoin_at = None;

    loop {
        let now = now_ms();
        // A serial line needs no opening: the link is "up" when the device
        // wants it, and the device's own Hello/Welcome finds out whether a
        // gateway is listening.
        if device.wants_link(now) {
            log!("link: greeting the gateway");
            device.link_up(now);
        }

        link.receive(|bytes| device.handle_input(now, bytes));

        if device.poll_timeout().is_some_and(|at| now >= at) {
            device.handle_timeout(now);
        }
        if device.take_link_drop() {
            log!("link: the gateway stopped answering");
        }

        while let Some(event) = device.poll_event() {
            app.on_event(&mut device, now, event, &mut Console);
        }

        // The retries ran out with no gateway (or, behind it, no server)
        // answering: keep looking. A refused token or a closed room is final.
        let gave_up = device.state() == ConnectionState::Failed
            && matches!(
                device.failure_reason(),
                FailureReason::Unreachable | FailureReason::MaxRetries
            );
        match room {
            Some((url, token)) if gave_up => {
                let at = *rejoin_at.get_or_insert(now + REJOIN_AFTER_MS);
                if now >= at {
                    rejoin_at = None;
                    log!("trying the gateway again");
                    if let Err(e) = device.connect(now, url, token) {
                        log!("connect refused: {e}");
                    }
                }
            }
            _ => rejoin_at = None,
        }

        if link.idle() {
            if let Some(frame) = device.poll_transmit() {
                link.queue(&frame);
            }
        }
        link.transmit();
    }
}
