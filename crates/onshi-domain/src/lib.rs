//! The onshi domain, shared by the edge agent, onshi-sim and central.
//!
//! Invariant: this crate does no I/O (no files, sockets, clocks or randomness of its own).
//! Callers pass in the current time and the keys; everything here is a pure function of its
//! inputs, which is what lets the agent, the simulator and central agree byte for byte.

pub mod access;
pub mod adoption;
pub mod availability;
pub mod calendar;
pub mod chain;
pub mod check_digit;
pub mod codes;
pub mod direct;
pub mod era;
pub mod events;
pub mod grace;
pub mod hex;
pub mod hours;
pub mod ids;
pub mod patient;
pub mod rollout;
pub mod seal;
pub mod site;
pub mod sjis;
pub mod xml;
pub mod zip;
