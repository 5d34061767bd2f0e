//! `lockserver-emulator`: a Latch-compatible service emulator for lockserver's tests, demo and benchmarks.
//!
//! It is a separate program and is never linked into `lockserver`; it checks the 11PATHS signature with its own
//! code (module [`sign`]) so that lockserver's signer is never tested against a copy of itself.
//!
//! ```no_run
//! use lockserver_emulator::{Emulator, Options};
//! let emu = Emulator::start(Options::default()).expect("start");
//! let code = emu.add_code(Some("ABC234")).expect("code");
//! println!("{} app={} secret={} code={code}", emu.url(), emu.app_id(), emu.secret());
//! ```

pub mod http;
pub mod pingid;
pub mod qr;
mod server;
pub mod sign;
pub mod state;
mod tls;
pub mod totp;

pub use pingid::{PingidOptions, Plan, SignatureMode};
pub use qr::QrMode;
pub use server::{AppConfig, DEFAULT_APP_ID, DEFAULT_SECRET, EmuError, Emulator, Options, Services, TlsMode, TotpInfo};
pub use state::Fault;
