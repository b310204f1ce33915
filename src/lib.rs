//! mailbridge: IMAP threads ⇄ Markdown notes. See ARCHITECTURE.md for the map.

pub mod cli;
pub mod config;
pub mod credentials;
pub mod doctor;
pub mod imap;
pub mod notes;
pub mod send;
pub mod state;
pub mod tls;
