//! Tests that run the real `repnet` binary, one module per command: the server as a
//! process, the client against it, imports, crashes (kill -9) and restarts; `checks` holds it
//! to "no false clean", `hardening` to hostile input, `privacy` to what leaves the device.
//! One test binary, so that the suite links once.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

mod common;

mod admin;
mod bundle;
mod checks;
mod cluster;
mod console;
mod export;
mod hardening;
mod import;
mod lookup;
mod manual;
mod packaging;
mod participation;
mod privacy;
mod proxy;
mod scan;
mod serve;
