//! Folders from LIST, and finding the Drafts, Sent... folders among them.
//!
//! The order of trust is the user's config, then the server's SPECIAL-USE
//! attributes (RFC 6154), then well-known names: a configured name is never
//! second-guessed, and a name guess is the last resort because a folder
//! called "Sent" is not necessarily where the server files sent mail.

use std::fmt;

use crate::config::{FolderChoice, Folders};

use super::mutf7;

/// One mailbox from LIST.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Folder {
    /// The name as the server knows it (modified UTF-7): what commands such
    /// as SELECT and APPEND need.
    pub name: String,
    /// The name decoded for people: `Entwürfe` for `Entw&APw-rfe`.
    pub display_name: String,
    /// Hierarchy delimiter, `None` for a flat namespace.
    pub delimiter: Option<String>,
    /// Attributes as sent, e.g. `\HasNoChildren`, `\Drafts`.
    pub attributes: Vec<String>,
}

impl Folder {
    /// A folder from its wire name; the display name is decoded here.
    pub fn new(
        name: impl Into<String>,
        delimiter: Option<&str>,
        attributes: Vec<String>,
    ) -> Folder {
        let name = name.into();
        Folder {
            display_name: mutf7::decode_lossy(&name),
            name,
            delimiter: delimiter.map(str::to_string),
            attributes,
        }
    }

    pub fn has_attribute(&self, attribute: &str) -> bool {
        self.attributes
            .iter()
            .any(|a| a.eq_ignore_ascii_case(attribute))
    }

    /// The special uses the server declared for this folder.
    pub fn special_uses(&self) -> impl Iterator<Item = SpecialUse> + '_ {
        self.attributes
            .iter()
            .filter_map(|a| SpecialUse::from_attribute(a))
    }

    /// False for hierarchy placeholders that cannot hold messages.
    pub fn is_selectable(&self) -> bool {
        !self.has_attribute("\\Noselect") && !self.has_attribute("\\NonExistent")
    }

    fn is_named(&self, wanted: &str) -> bool {
        if wanted.eq_ignore_ascii_case("INBOX") {
            // INBOX is case-insensitive in IMAP; no other name is.
            return self.name.eq_ignore_ascii_case("INBOX");
        }
        self.name == wanted || self.display_name == wanted
    }
}

/// RFC 6154 special-use attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SpecialUse {
    All,
    Archive,
    Drafts,
    Flagged,
    Junk,
    Sent,
    Trash,
}

impl SpecialUse {
    pub const ALL: [SpecialUse; 7] = [
        SpecialUse::All,
        SpecialUse::Archive,
        SpecialUse::Drafts,
        SpecialUse::Flagged,
        SpecialUse::Junk,
        SpecialUse::Sent,
        SpecialUse::Trash,
    ];

    /// The LIST attribute, e.g. `\Drafts`.
    pub fn attribute(self) -> &'static str {
        match self {
            SpecialUse::All => "\\All",
            SpecialUse::Archive => "\\Archive",
            SpecialUse::Drafts => "\\Drafts",
            SpecialUse::Flagged => "\\Flagged",
            SpecialUse::Junk => "\\Junk",
            SpecialUse::Sent => "\\Sent",
            SpecialUse::Trash => "\\Trash",
        }
    }

    /// Parses `\Drafts` (any case); the backslash is required, so that a
    /// `folders.sync` entry `Sent` stays a folder name.
    pub fn from_attribute(attribute: &str) -> Option<SpecialUse> {
        SpecialUse::ALL
            .into_iter()
            .find(|role| role.attribute().eq_ignore_ascii_case(attribute))
    }

    /// Names mail services and clients use for this role when the server
    /// declares no special use, most common first. Matched case-insensitively
    /// against the whole decoded name, bare or under `INBOX.`, `INBOX/`,
    /// `[Gmail]/` or `[Google Mail]/`.
    fn well_known_names(self) -> &'static [&'static str] {
        match self {
            SpecialUse::Drafts => &[
                "Drafts",
                "Draft",
                "Entwürfe",
                "Brouillons",
                "Borradores",
                "Bozze",
                "Concepten",
                "Rascunhos",
                "Utkast",
                "Kladder",
                "Luonnokset",
                "Черновики",
            ],
            SpecialUse::Sent => &[
                "Sent",
                "Sent Items",
                "Sent Messages",
                "Sent Mail",
                "Gesendet",
                "Gesendete Objekte",
                "Gesendete Elemente",
                "Envoyés",
                "Éléments envoyés",
                "Enviados",
                "Elementos enviados",
                "Posta inviata",
                "Inviati",
                "Verzonden",
                "Verzonden items",
                "Skickat",
                "Sendt",
                "Lähetetyt",
                "Отправленные",
            ],
            SpecialUse::Trash => &[
                "Trash",
                "Deleted Items",
                "Deleted Messages",
                "Bin",
                "Papierkorb",
                "Gelöschte Elemente",
                "Corbeille",
                "Papelera",
                "Cestino",
                "Prullenbak",
                "Корзина",
            ],
            SpecialUse::Junk => &["Junk", "Spam", "Junk E-mail", "Junk Email", "Bulk Mail"],
            SpecialUse::Archive => &["Archive", "Archives", "Archiv"],
            SpecialUse::All => &["All Mail"],
            SpecialUse::Flagged => &["Starred", "Flagged"],
        }
    }
}

impl fmt::Display for SpecialUse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.attribute())
    }
}

const NAME_PREFIXES: [&str; 5] = ["", "INBOX.", "INBOX/", "[Gmail]/", "[Google Mail]/"];

/// How a folder was found, for `doctor` to tell the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FoundBy {
    /// Named in the account config.
    Config,
    /// The server marks it with this special-use attribute.
    SpecialUse(SpecialUse),
    /// Only its name suggests the role.
    Name,
}

impl fmt::Display for FoundBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FoundBy::Config => f.write_str("as configured"),
            FoundBy::SpecialUse(role) => write!(f, "by special-use {role}"),
            FoundBy::Name => f.write_str("by its name"),
        }
    }
}

/// A folder picked for a role or a config entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderMatch {
    pub folder: Folder,
    pub found_by: FoundBy,
}

impl FolderMatch {
    /// The name to use in commands.
    pub fn name(&self) -> &str {
        &self.folder.name
    }
}

impl fmt::Display for FolderMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.folder.display_name, self.found_by)
    }
}

/// The folder for `role`: the configured one if named (and `None` if that
/// name does not exist — never a silent substitute), else the first
/// selectable folder with the special-use attribute, else the first
/// well-known name.
pub fn find_special(
    folders: &[Folder],
    role: SpecialUse,
    configured: &FolderChoice,
) -> Option<FolderMatch> {
    if let FolderChoice::Named(wanted) = configured {
        return find_named(folders, wanted);
    }
    if let Some(folder) = folders
        .iter()
        .find(|f| f.is_selectable() && f.special_uses().any(|r| r == role))
    {
        return Some(FolderMatch {
            folder: folder.clone(),
            found_by: FoundBy::SpecialUse(role),
        });
    }
    for leaf in role.well_known_names() {
        for prefix in NAME_PREFIXES {
            let candidate = format!("{prefix}{leaf}");
            if let Some(folder) = folders.iter().find(|f| {
                f.is_selectable()
                    && (f.display_name.to_lowercase() == candidate.to_lowercase()
                        || f.name.eq_ignore_ascii_case(&candidate))
            }) {
                return Some(FolderMatch {
                    folder: folder.clone(),
                    found_by: FoundBy::Name,
                });
            }
        }
    }
    None
}

/// A folder by the name the user wrote: the server's name or its decoded
/// form, exactly (INBOX in any case).
pub fn find_named(folders: &[Folder], wanted: &str) -> Option<FolderMatch> {
    folders
        .iter()
        .find(|f| f.is_named(wanted))
        .map(|folder| FolderMatch {
            folder: folder.clone(),
            found_by: FoundBy::Config,
        })
}

/// One `folders.sync` entry and the folder it resolved to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncFolder {
    /// As written in the config, e.g. `INBOX` or `\Sent`.
    pub entry: String,
    /// `None` when no folder matches; the caller reports it.
    pub found: Option<FolderMatch>,
}

/// Resolves `folders.sync`: names as they are, special uses such as `\Sent`
/// through [`find_special`] (honouring `folders.sent`/`folders.drafts`). An
/// entry that lands on a folder an earlier entry already chose is dropped,
/// so `[INBOX, Sent, \Sent]` syncs Sent once.
pub fn resolve_sync_folders(folders: &[Folder], config: &Folders) -> Vec<SyncFolder> {
    let mut resolved: Vec<SyncFolder> = Vec::new();
    for entry in &config.sync {
        let found = match SpecialUse::from_attribute(entry) {
            Some(role) => {
                let configured = match role {
                    SpecialUse::Sent => &config.sent,
                    SpecialUse::Drafts => &config.drafts,
                    _ => &FolderChoice::Auto,
                };
                find_special(folders, role, configured)
            }
            None => find_named(folders, entry),
        };
        let duplicate = found.as_ref().is_some_and(|m| {
            resolved.iter().any(|r| {
                r.found
                    .as_ref()
                    .is_some_and(|o| o.folder.name == m.folder.name)
            })
        });
        if !duplicate {
            resolved.push(SyncFolder {
                entry: entry.clone(),
                found,
            });
        }
    }
    resolved
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder(name: &str, attributes: &[&str]) -> Folder {
        Folder::new(
            name,
            Some("/"),
            attributes.iter().map(|a| a.to_string()).collect(),
        )
    }

    fn gmail() -> Vec<Folder> {
        vec![
            folder("INBOX", &["\\HasNoChildren"]),
            folder("[Gmail]", &["\\HasChildren", "\\Noselect"]),
            folder("[Gmail]/All Mail", &["\\All", "\\HasNoChildren"]),
            folder("[Gmail]/Drafts", &["\\Drafts", "\\HasNoChildren"]),
            folder("[Gmail]/Sent Mail", &["\\HasNoChildren", "\\Sent"]),
            folder("[Gmail]/Spam", &["\\HasNoChildren", "\\Junk"]),
            folder("[Gmail]/Trash", &["\\HasNoChildren", "\\Trash"]),
            // A user folder that merely looks like a Drafts folder.
            folder("Drafts", &["\\HasNoChildren"]),
        ]
    }

    #[test]
    fn special_use_beats_a_look_alike_name() {
        let found = find_special(&gmail(), SpecialUse::Drafts, &FolderChoice::Auto).unwrap();
        assert_eq!(found.name(), "[Gmail]/Drafts");
        assert_eq!(found.found_by, FoundBy::SpecialUse(SpecialUse::Drafts));
        assert_eq!(
            found.to_string(),
            "[Gmail]/Drafts (by special-use \\Drafts)"
        );
        let sent = find_special(&gmail(), SpecialUse::Sent, &FolderChoice::Auto).unwrap();
        assert_eq!(sent.name(), "[Gmail]/Sent Mail");
    }

    #[test]
    fn configured_name_comes_first_and_is_never_substituted() {
        let found = find_special(
            &gmail(),
            SpecialUse::Drafts,
            &FolderChoice::Named("Drafts".into()),
        )
        .unwrap();
        assert_eq!(found.name(), "Drafts");
        assert_eq!(found.found_by, FoundBy::Config);
        assert_eq!(
            find_special(
                &gmail(),
                SpecialUse::Drafts,
                &FolderChoice::Named("Nope".into())
            ),
            None
        );
    }

    #[test]
    fn name_fallbacks_without_special_use() {
        let cases: &[(&[&str], SpecialUse, &str)] = &[
            (&["INBOX", "Drafts", "Sent"], SpecialUse::Drafts, "Drafts"),
            (
                &["INBOX", "[Gmail]/Drafts"],
                SpecialUse::Drafts,
                "[Gmail]/Drafts",
            ),
            (&["INBOX", "Draft"], SpecialUse::Drafts, "Draft"),
            (
                &["INBOX", "INBOX.Drafts"],
                SpecialUse::Drafts,
                "INBOX.Drafts",
            ),
            (
                &["INBOX", "INBOX/Drafts"],
                SpecialUse::Drafts,
                "INBOX/Drafts",
            ),
            (&["INBOX", "drafts"], SpecialUse::Drafts, "drafts"),
            (
                &["INBOX", "Entw&APw-rfe"],
                SpecialUse::Drafts,
                "Entw&APw-rfe",
            ),
            (&["INBOX", "Sent Items"], SpecialUse::Sent, "Sent Items"),
            (
                &["INBOX", "Sent Messages"],
                SpecialUse::Sent,
                "Sent Messages",
            ),
            (
                &["INBOX", "[Gmail]/Sent Mail"],
                SpecialUse::Sent,
                "[Gmail]/Sent Mail",
            ),
            (&["INBOX", "INBOX.Sent"], SpecialUse::Sent, "INBOX.Sent"),
            (
                &["INBOX", "Gesendete Objekte"],
                SpecialUse::Sent,
                "Gesendete Objekte",
            ),
            (
                &["INBOX", "Deleted Items"],
                SpecialUse::Trash,
                "Deleted Items",
            ),
        ];
        for (names, role, expected) in cases {
            let folders: Vec<Folder> = names.iter().map(|n| folder(n, &[])).collect();
            let found = find_special(&folders, *role, &FolderChoice::Auto)
                .unwrap_or_else(|| panic!("{role} not found in {names:?}"));
            assert_eq!(found.name(), *expected, "{names:?}");
            assert_eq!(found.found_by, FoundBy::Name);
        }
        let folders = vec![folder("INBOX", &[]), folder("Notes", &[])];
        assert_eq!(
            find_special(&folders, SpecialUse::Drafts, &FolderChoice::Auto),
            None
        );
    }

    #[test]
    fn unselectable_folders_are_skipped() {
        let folders = vec![
            folder("Drafts", &["\\Noselect", "\\Drafts"]),
            folder("INBOX.Drafts", &[]),
        ];
        let found = find_special(&folders, SpecialUse::Drafts, &FolderChoice::Auto).unwrap();
        assert_eq!(found.name(), "INBOX.Drafts");
    }

    #[test]
    fn configured_names_match_decoded_or_wire_form() {
        let folders = vec![folder("Entw&APw-rfe", &[]), folder("inbox", &[])];
        let by_display = find_named(&folders, "Entwürfe").unwrap();
        assert_eq!(by_display.name(), "Entw&APw-rfe");
        assert_eq!(by_display.folder.display_name, "Entwürfe");
        assert!(find_named(&folders, "Entw&APw-rfe").is_some());
        assert_eq!(find_named(&folders, "INBOX").unwrap().name(), "inbox");
        assert!(find_named(&folders, "entwürfe").is_none());
    }

    #[test]
    fn special_use_attribute_parsing() {
        assert_eq!(SpecialUse::from_attribute("\\Sent"), Some(SpecialUse::Sent));
        assert_eq!(
            SpecialUse::from_attribute("\\drafts"),
            Some(SpecialUse::Drafts)
        );
        assert_eq!(SpecialUse::from_attribute("Sent"), None);
        assert_eq!(SpecialUse::from_attribute("\\HasChildren"), None);
        for role in SpecialUse::ALL {
            assert_eq!(SpecialUse::from_attribute(role.attribute()), Some(role));
        }
    }

    #[test]
    fn sync_entries_resolve_special_uses_and_deduplicate() {
        let config = Folders {
            sync: vec![
                "INBOX".into(),
                "\\Sent".into(),
                "[Gmail]/Sent Mail".into(),
                "Missing".into(),
            ],
            drafts: FolderChoice::Auto,
            sent: FolderChoice::Auto,
        };
        let resolved = resolve_sync_folders(&gmail(), &config);
        assert_eq!(resolved.len(), 3, "{resolved:?}");
        assert_eq!(resolved[0].found.as_ref().unwrap().name(), "INBOX");
        assert_eq!(resolved[1].entry, "\\Sent");
        let sent = resolved[1].found.as_ref().unwrap();
        assert_eq!(sent.name(), "[Gmail]/Sent Mail");
        assert_eq!(sent.found_by, FoundBy::SpecialUse(SpecialUse::Sent));
        assert_eq!(resolved[2].entry, "Missing");
        assert_eq!(resolved[2].found, None);
    }

    #[test]
    fn sync_special_use_honours_configured_sent() {
        let config = Folders {
            sync: vec!["\\Sent".into()],
            drafts: FolderChoice::Auto,
            sent: FolderChoice::Named("Drafts".into()),
        };
        let resolved = resolve_sync_folders(&gmail(), &config);
        let found = resolved[0].found.as_ref().unwrap();
        assert_eq!(found.name(), "Drafts");
        assert_eq!(found.found_by, FoundBy::Config);
    }
}
