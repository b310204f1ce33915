//! Our IMAP layer over async-imap (being built).
