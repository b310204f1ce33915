//! mailbridge: IMAP threads ⇄ Markdown notes. See ARCHITECTURE.md for the map.

pub mod analyze;
pub mod cli;
pub mod compose;
pub mod config;
pub mod credentials;
pub mod doctor;
pub mod draft;
pub mod durable;
pub mod generate;
pub mod imap;
pub mod message;
pub mod notes;
pub mod push;
pub mod schedule;
pub mod send;
pub mod state;
pub mod status;
pub mod sync;
pub mod thread;
pub mod tls;
pub mod watch;
