//! Runs livekit-core's unit tests bare-metal on rv32 (QEMU's `virt` machine).
//!
//! Stable Rust has no test harness for `riscv32imc-unknown-none-elf`, so
//! livekit-core's `selftest` feature hands out its tests as plain functions and
//! this image calls them one by one, printing what the host harness prints:
//!
//! ```text
//! test dedup::numbers_that_wrap_are_new ... ok
//! test result: ok. 55 passed; 0 failed
//! ```
//!
//! A test fails by panicking; there is no unwinding here, so the first failure
//! ends the run: the panic handler prints the test's name and the panic message
//! and stops QEMU with a failure status. Output goes to the machine's NS16550
//! UART (QEMU's stdio with `-nographic`), the exit through its `sifive_test`
//! device.
//!
//!     qemu-system-riscv32 -machine virt -nographic -bios none -kernel <this ELF>
#![no_std]
#![no_main]

extern crate alloc;

use core::cell::Cell;
use core::fmt::{self, Write};
use core::panic::PanicInfo;

use embedded_alloc::LlffHeap as Heap;

#[global_allocator]
static HEAP: Heap = Heap::empty();

/// QEMU virt's first UART, an NS16550A: no setup is needed to send.
mod uart {
    const BASE: usize = 0x1000_0000;
    /// Transmit holding register.
    const THR: usize = 0;
    /// Line status register, and its "transmit holding register empty" bit.
    const LSR: usize = 5;
    const LSR_THRE: u8 = 1 << 5;

    pub struct Uart;

    impl Uart {
        fn put(&self, byte: u8) {
            let base = BASE as *mut u8;
            // SAFETY: the virt machine maps the UART's registers here; byte
            // accesses are what the device expects.
            unsafe {
                while base.add(LSR).read_volatile() & LSR_THRE == 0 {}
                base.add(THR).write_volatile(byte);
            }
        }
    }

    impl core::fmt::Write for Uart {
        fn write_str(&mut self, s: &str) -> core::fmt::Result {
            for b in s.bytes() {
                if b == b'\n' {
                    self.put(b'\r');
                }
                self.put(b);
            }
            Ok(())
        }
    }
}

/// QEMU virt's `sifive_test` device: a write ends the emulation.
fn exit(code: u16) -> ! {
    const TEST_DEVICE: usize = 0x10_0000;
    const PASS: u32 = 0x5555;
    const FAIL: u32 = 0x3333;
    let value = if code == 0 {
        PASS
    } else {
        (u32::from(code) << 16) | FAIL
    };
    // SAFETY: the virt machine maps the test device here; a 32-bit write of
    // PASS or FAIL makes QEMU exit with status 0 or `code`.
    unsafe { (TEST_DEVICE as *mut u32).write_volatile(value) };
    // Not reached under QEMU; on anything else, stop here.
    loop {
        core::hint::spin_loop();
    }
}

macro_rules! say {
    ($($arg:tt)*) => {{
        let _ = writeln!(uart::Uart, $($arg)*);
    }};
}

/// The test that is running, for the panic handler: (module, name).
struct Current(Cell<Option<(&'static str, &'static str)>>);

// SAFETY: one hart, no interrupts enabled: nothing runs concurrently.
unsafe impl Sync for Current {}

static CURRENT: Current = Current(Cell::new(None));

/// Exit status when a test fails.
const FAILED: u16 = 1;
/// Exit status for a trap (illegal instruction, bad access...).
const TRAPPED: u16 = 2;

#[riscv_rt::entry]
fn main() -> ! {
    // SAFETY: called once, before any allocation; riscv-rt reserves the region
    // from `heap_start()` for `_heap_size` bytes (memory.x).
    unsafe {
        extern "C" {
            static _heap_size: u8;
        }
        let size = core::ptr::addr_of!(_heap_size) as usize;
        HEAP.init(riscv_rt::heap_start() as usize, size);
    }

    let total = livekit_core::selftest::all().count();
    say!("\nrunning {total} tests (livekit-core, rv32 bare metal)");
    let mut passed = 0usize;
    for (module, name, test) in livekit_core::selftest::all() {
        CURRENT.0.set(Some((module, name)));
        test();
        CURRENT.0.set(None);
        passed += 1;
        say!("test {module}::{name} ... ok");
    }
    say!("\ntest result: ok. {passed} passed; 0 failed");
    exit(0)
}

/// Prints `module::name` of the running test, or that none was running.
struct Running;

impl fmt::Display for Running {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match CURRENT.0.get() {
            Some((module, name)) => write!(f, "{module}::{name}"),
            None => f.write_str("(no test running)"),
        }
    }
}

#[panic_handler]
fn panic(info: &PanicInfo<'_>) -> ! {
    say!("test {} ... FAILED", Running);
    say!("\n---- {} ----\n{info}", Running);
    say!("\ntest result: FAILED. 1 failed (the run stops at the first failure)");
    exit(FAILED)
}

/// Any trap: nothing here enables interrupts, so this is an exception.
#[unsafe(export_name = "ExceptionHandler")]
fn exception(frame: &riscv_rt::TrapFrame) -> ! {
    let cause = riscv::register::mcause::read().bits();
    let pc = riscv::register::mepc::read();
    let addr = riscv::register::mtval::read();
    say!(
        "test {} ... FAILED\ntrap: mcause={cause:#x} mepc={pc:#010x} mtval={addr:#010x} ra={:#010x}",
        Running,
        frame.ra
    );
    say!("\ntest result: FAILED. 1 failed (the run stops at the first failure)");
    exit(TRAPPED)
}
