//! What the server says it can do, as plain names.
//!
//! async-imap's own type splits names into variants and compares them
//! case-sensitively; servers vary in case (`Idle`, `IDLE`), and `doctor`
//! wants to print the list as the server sent it. A sorted list of strings
//! with case-insensitive lookup covers both.

use std::fmt;

/// Capability names, e.g. `IMAP4rev1`, `IDLE`, `AUTH=PLAIN`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    names: Vec<String>,
}

impl Capabilities {
    pub fn from_names<I, S>(names: I) -> Capabilities
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut names: Vec<String> = names.into_iter().map(Into::into).collect();
        names.sort_by_key(|name| name.to_ascii_uppercase());
        names.dedup_by(|a, b| a.eq_ignore_ascii_case(b));
        Capabilities { names }
    }

    /// Parses the atoms of a `CAPABILITY` response line, with or without
    /// the leading `* CAPABILITY`.
    pub fn parse(line: &str) -> Capabilities {
        let line = line.trim();
        let line = line.strip_prefix("* ").unwrap_or(line);
        let mut atoms = line.split_ascii_whitespace().peekable();
        if atoms
            .peek()
            .is_some_and(|first| first.eq_ignore_ascii_case("CAPABILITY"))
        {
            atoms.next();
        }
        Capabilities::from_names(atoms)
    }

    pub(crate) fn from_proto(caps: &[async_imap::imap_proto::Capability<'_>]) -> Capabilities {
        use async_imap::imap_proto::Capability;
        Capabilities::from_names(caps.iter().map(|cap| match cap {
            Capability::Imap4rev1 => "IMAP4rev1".to_string(),
            Capability::Auth(mechanism) => format!("AUTH={mechanism}"),
            Capability::Atom(atom) => atom.to_string(),
        }))
    }

    pub(crate) fn from_async_imap(caps: &async_imap::types::Capabilities) -> Capabilities {
        use async_imap::types::Capability;
        Capabilities::from_names(caps.iter().map(|cap| match cap {
            Capability::Imap4rev1 => "IMAP4rev1".to_string(),
            Capability::Auth(mechanism) => format!("AUTH={mechanism}"),
            Capability::Atom(atom) => atom.clone(),
        }))
    }

    /// True if the server lists `name` (`"IDLE"`, `"AUTH=XOAUTH2"`), in any case.
    pub fn has(&self, name: &str) -> bool {
        self.names.iter().any(|n| n.eq_ignore_ascii_case(name))
    }

    /// True if the server offers the SASL mechanism `mechanism` (`"PLAIN"`).
    pub fn has_auth(&self, mechanism: &str) -> bool {
        self.auth_mechanisms()
            .any(|m| m.eq_ignore_ascii_case(mechanism))
    }

    pub fn auth_mechanisms(&self) -> impl Iterator<Item = &str> {
        self.names.iter().filter_map(|name| {
            name.get(..5)
                .filter(|prefix| prefix.eq_ignore_ascii_case("AUTH="))
                .map(|_| &name[5..])
        })
    }

    /// All names, sorted case-insensitively.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

impl fmt::Display for Capabilities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.names.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOVECOT: &str = "* CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE SORT \
        SORT=DISPLAY THREAD=REFERENCES MULTIAPPEND URL-PARTIAL CATENATE UNSELECT CHILDREN \
        NAMESPACE UIDPLUS LIST-EXTENDED I18NLEVEL=1 CONDSTORE QRESYNC ESEARCH ESORT SEARCHRES \
        WITHIN CONTEXT=SEARCH LIST-STATUS BINARY MOVE SNIPPET=FUZZY PREVIEW=FUZZY \
        LITERAL+ NOTIFY SPECIAL-USE AUTH=PLAIN AUTH=xoauth2";

    #[test]
    fn parse_and_lookup_case_insensitively() {
        let caps = Capabilities::parse(DOVECOT);
        for name in [
            "IDLE",
            "idle",
            "UIDPLUS",
            "CONDSTORE",
            "QRESYNC",
            "MOVE",
            "SPECIAL-USE",
            "imap4rev1",
        ] {
            assert!(caps.has(name), "{name}");
        }
        assert!(!caps.has("CAPABILITY"));
        assert!(!caps.has("STARTTLS"));
        assert!(!caps.has("IDL"));
        assert!(caps.has_auth("PLAIN"));
        assert!(caps.has_auth("XOAUTH2"));
        assert!(!caps.has_auth("LOGIN"));
        assert_eq!(
            caps.auth_mechanisms().collect::<Vec<_>>(),
            vec!["PLAIN", "xoauth2"]
        );
    }

    #[test]
    fn sorted_and_deduplicated() {
        let caps = Capabilities::parse("IDLE imap4rev1 Idle AUTH=PLAIN");
        assert_eq!(caps.names(), ["AUTH=PLAIN", "IDLE", "imap4rev1"]);
        assert_eq!(caps.to_string(), "AUTH=PLAIN IDLE imap4rev1");
    }

    #[test]
    fn from_proto_response() {
        let (_, response) =
            async_imap::imap_proto::Response::parse(b"* CAPABILITY IMAP4rev1 IDLE AUTH=PLAIN\r\n")
                .unwrap();
        let async_imap::imap_proto::Response::Capabilities(list) = response else {
            panic!("not a capability response: {response:?}");
        };
        let caps = Capabilities::from_proto(&list);
        assert_eq!(caps.names(), ["AUTH=PLAIN", "IDLE", "IMAP4rev1"]);
    }
}
