//! The YAML config of SPEC §Config: loading, validation and defaults.
//!
//! Everything a user can get wrong is caught here, before any network I/O,
//! and reported with the file, the line and the key. To get line numbers for
//! semantic checks too (a bad duration, `security: none` on a remote host),
//! those checks run *inside* deserialization (`try_from` on raw structs), so
//! the YAML deserializer attaches the position and key path to the error.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Default location of the config file on this platform.
pub fn default_config_path() -> PathBuf {
    directories::ProjectDirs::from("", "", "mailbridge")
        .map(|dirs| dirs.config_dir().join("config.yaml"))
        .unwrap_or_else(|| home_dir().join(".config/mailbridge/config.yaml"))
}

/// Default sync state directory on this platform.
pub fn default_state_dir() -> PathBuf {
    directories::ProjectDirs::from("", "", "mailbridge")
        .map(|dirs| dirs.data_dir().to_path_buf())
        .unwrap_or_else(|| home_dir().join(".local/share/mailbridge"))
}

fn home_dir() -> PathBuf {
    directories::BaseDirs::new()
        .map(|dirs| dirs.home_dir().to_path_buf())
        .unwrap_or_else(|| PathBuf::from("."))
}

/// `~` and `~/...` expand to the home directory; other paths stay as written.
pub fn expand_tilde(path: &str) -> PathBuf {
    if path == "~" {
        home_dir()
    } else if let Some(rest) = path.strip_prefix("~/") {
        home_dir().join(rest)
    } else {
        PathBuf::from(path)
    }
}

/// The commented starter config written by `bridge init`.
pub const STARTER_CONFIG: &str = include_str!("../config/config.example.yaml");

/// A config that failed to load, with where and why.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path} not found; run `bridge init` to write a starter config, or pass --config PATH")]
    NotFound { path: PathBuf },
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// `location` is `line L column C` when the YAML parser knows it.
    #[error("invalid config {path}{location}: {message}")]
    Invalid {
        path: PathBuf,
        location: String,
        message: String,
    },
}

/// The whole validated config.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file this config was read from.
    pub path: PathBuf,
    pub vault: PathBuf,
    pub notes: NotesConfig,
    pub state_dir: PathBuf,
    pub accounts: BTreeMap<String, Account>,
    pub drafts: DraftsConfig,
    pub schedule: ScheduleConfig,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotesConfig {
    /// Relative to the vault.
    pub sources: PathBuf,
    /// Relative to the vault.
    pub drafts: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// The key under `accounts:`.
    pub id: String,
    pub email: String,
    /// Display name used in From and to sign drafts.
    pub display_name: Option<String>,
    pub username: String,
    pub imap: Endpoint,
    pub smtp: Option<Endpoint>,
    /// The SMTP server files sent mail in Sent itself (Gmail does), so
    /// `bridge send` must not file a second copy (`smtp: { saves_sent: true }`).
    pub smtp_saves_sent: bool,
    pub ca_file: Option<PathBuf>,
    pub password: SecretSource,
    pub auth: AuthMethod,
    /// The OAuth2 access token source, for `auth: xoauth2`.
    pub token: Option<SecretSource>,
    pub folders: Folders,
    /// How far back the first sync reaches; `None` is all mail.
    pub since: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    pub security: Security,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Security {
    /// TLS from the first byte (IMAPS 993, SMTPS 465).
    Tls,
    /// Plain connection upgraded with STARTTLS before login.
    Starttls,
    /// No encryption: accepted only for loopback hosts.
    None,
}

impl fmt::Display for Security {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Security::Tls => "tls",
            Security::Starttls => "starttls",
            Security::None => "none",
        })
    }
}

/// Where a secret (password, token, API key) comes from. Never the secret itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// The OS keychain, service `mailbridge`, user = account name.
    Keyring,
    /// A shell command whose trimmed stdout is the secret.
    Command(String),
    /// An environment variable.
    Env(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMethod {
    Login,
    Xoauth2,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Folders {
    /// Folder names or special-use attributes such as `\Sent`.
    pub sync: Vec<String>,
    pub drafts: FolderChoice,
    pub sent: FolderChoice,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FolderChoice {
    /// Found by SPECIAL-USE, then by well-known names.
    Auto,
    Named(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DraftsConfig {
    pub generator: Generator,
    pub template: Option<PathBuf>,
    pub command: Option<Vec<String>>,
    pub openai: Option<OpenAiConfig>,
    /// The openai generator's prompt template, instead of the built-in one.
    pub prompt: Option<PathBuf>,
    /// How long one command run or one HTTP request of a generator may take.
    pub timeout: Duration,
    pub max_age: Duration,
    pub push: PushMode,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Generator {
    Template,
    Command,
    Openai,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenAiConfig {
    pub base_url: String,
    pub model: String,
    pub api_key: Option<SecretSource>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PushMode {
    Manual,
    Auto,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleConfig {
    pub interval: Duration,
}

impl Config {
    /// Reads and validates the config at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                return Err(ConfigError::NotFound {
                    path: path.to_path_buf(),
                })
            }
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                })
            }
        };
        Config::parse(&text, path)
    }

    /// Validates config text; `path` is only used in errors and as `Config::path`.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let raw: RawConfig = serde_norway::from_str(text).map_err(|err| invalid(path, err))?;
        raw.resolve(path).map_err(|message| ConfigError::Invalid {
            path: path.to_path_buf(),
            location: String::new(),
            message,
        })
    }

    /// The account named `id`, or an error listing the configured ones.
    pub fn account(&self, id: &str) -> anyhow::Result<&Account> {
        self.accounts.get(id).ok_or_else(|| {
            let known: Vec<&str> = self.accounts.keys().map(String::as_str).collect();
            anyhow::anyhow!(
                "no account `{id}` in {}; configured accounts: {}",
                self.path.display(),
                known.join(", ")
            )
        })
    }

    /// The accounts selected by an optional `--account` flag.
    pub fn selected_accounts(&self, only: Option<&str>) -> anyhow::Result<Vec<&Account>> {
        match only {
            Some(id) => Ok(vec![self.account(id)?]),
            None => Ok(self.accounts.values().collect()),
        }
    }

    pub fn sources_dir(&self) -> PathBuf {
        self.vault.join(&self.notes.sources)
    }

    pub fn drafts_dir(&self) -> PathBuf {
        self.vault.join(&self.notes.drafts)
    }
}

impl Account {
    /// `Name <email>` when a display name is set, else the bare address.
    pub fn from_address(&self) -> String {
        match &self.display_name {
            Some(name) => format!("{name} <{}>", self.email),
            None => self.email.clone(),
        }
    }
}

fn invalid(path: &Path, err: serde_norway::Error) -> ConfigError {
    let location = err
        .location()
        .map(|loc| format!(" line {} column {}", loc.line(), loc.column()))
        .unwrap_or_default();
    // serde_norway appends " at line L column C" to its message; we print the
    // location once, up front, next to the file name.
    let mut message = err.to_string();
    if let Some(index) = message.rfind(" at line ") {
        message.truncate(index);
    }
    ConfigError::Invalid {
        path: path.to_path_buf(),
        location,
        message,
    }
}

// ---------------------------------------------------------------------------
// Raw, as written in YAML. `deny_unknown_fields` turns typos into errors.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    vault: String,
    #[serde(default)]
    notes: RawNotes,
    state_dir: Option<String>,
    accounts: BTreeMap<String, RawAccount>,
    #[serde(default)]
    drafts: RawDrafts,
    #[serde(default)]
    schedule: RawSchedule,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNotes {
    #[serde(default = "default_sources")]
    sources: RelativePath,
    #[serde(default = "default_drafts")]
    drafts: RelativePath,
}

impl Default for RawNotes {
    fn default() -> Self {
        RawNotes {
            sources: default_sources(),
            drafts: default_drafts(),
        }
    }
}

fn default_sources() -> RelativePath {
    RelativePath(PathBuf::from("Sources/Email"))
}

fn default_drafts() -> RelativePath {
    RelativePath(PathBuf::from("Drafts/Email"))
}

/// A path inside the vault: relative, without `..`.
#[derive(Clone)]
struct RelativePath(PathBuf);

impl<'de> Deserialize<'de> for RelativePath {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserialize_checked_str(deserializer, |value| {
            RelativePath::try_from(value.to_string())
        })
    }
}

impl TryFrom<String> for RelativePath {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        let path = PathBuf::from(&value);
        if path.is_absolute()
            || path
                .components()
                .any(|c| matches!(c, std::path::Component::ParentDir))
        {
            return Err(format!(
                "expected a folder relative to the vault without `..`, got `{value}`"
            ));
        }
        Ok(RelativePath(path))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAccount {
    email: EmailAddress,
    name: Option<String>,
    username: Option<String>,
    imap: Endpoint,
    smtp: Option<SmtpSettings>,
    ca_file: Option<String>,
    #[serde(default = "keyring_source")]
    password: RawSecretSource,
    #[serde(default = "default_auth")]
    auth: AuthMethod,
    token: Option<RawSecretSource>,
    #[serde(default)]
    folders: RawFolders,
    since: Option<HumanDuration>,
}

fn keyring_source() -> RawSecretSource {
    RawSecretSource(SecretSource::Keyring)
}

fn default_auth() -> AuthMethod {
    AuthMethod::Login
}

#[derive(Clone)]
struct EmailAddress(String);

impl<'de> Deserialize<'de> for EmailAddress {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserialize_checked_str(deserializer, |value| {
            EmailAddress::try_from(value.to_string())
        })
    }
}

impl TryFrom<String> for EmailAddress {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        let value = value.trim().to_string();
        match value.split_once('@') {
            Some((local, domain))
                if !local.is_empty()
                    && !domain.is_empty()
                    && !value.contains(char::is_whitespace)
                    && !domain.contains('@') =>
            {
                Ok(EmailAddress(value))
            }
            _ => Err(format!(
                "expected an email address like user@example.com, got `{value}`"
            )),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEndpoint {
    host: String,
    port: Option<u16>,
    security: Option<Security>,
}

impl<'de> Deserialize<'de> for Endpoint {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Endpoint;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map such as `{ host: imap.example.com, port: 993, security: tls }`")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Endpoint, A::Error> {
                let raw =
                    RawEndpoint::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                // Returned from inside visit_map, the error gets this mapping's position.
                Endpoint::try_from(raw).map_err(serde::de::Error::custom)
            }
        }
        deserializer.deserialize_map(Visitor)
    }
}

impl TryFrom<RawEndpoint> for Endpoint {
    type Error = String;
    fn try_from(raw: RawEndpoint) -> Result<Self, String> {
        let host = raw.host.trim().to_string();
        if host.is_empty() {
            return Err("host: expected a host name or address, got an empty string".into());
        }
        let security = raw.security.unwrap_or(Security::Tls);
        if security == Security::None && !is_loopback_host(&host) {
            return Err(format!(
                "security: `none` is accepted only for loopback hosts (127.0.0.1, ::1, localhost), \
                 not `{host}`; use `tls` or `starttls`"
            ));
        }
        // The port default depends on the protocol, which only the caller
        // knows; 0 means "use the protocol default" and is resolved below.
        let port = raw.port.unwrap_or(0);
        Ok(Endpoint {
            host,
            port,
            security,
        })
    }
}

/// `smtp:`: an endpoint plus what the server does with sent mail.
struct SmtpSettings {
    endpoint: Endpoint,
    saves_sent: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSmtpSettings {
    host: String,
    port: Option<u16>,
    security: Option<Security>,
    #[serde(default)]
    saves_sent: bool,
}

impl<'de> Deserialize<'de> for SmtpSettings {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = SmtpSettings;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(
                    "a map such as `{ host: smtp.example.com, port: 465, security: tls, saves_sent: false }`",
                )
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<SmtpSettings, A::Error> {
                let raw = RawSmtpSettings::deserialize(
                    serde::de::value::MapAccessDeserializer::new(map),
                )?;
                let endpoint = Endpoint::try_from(RawEndpoint {
                    host: raw.host,
                    port: raw.port,
                    security: raw.security,
                })
                .map_err(serde::de::Error::custom)?;
                Ok(SmtpSettings {
                    endpoint,
                    saves_sent: raw.saves_sent,
                })
            }
        }
        deserializer.deserialize_map(Visitor)
    }
}

/// True for names and addresses that never leave this machine.
pub fn is_loopback_host(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if bare.eq_ignore_ascii_case("localhost") || bare.to_ascii_lowercase().ends_with(".localhost") {
        return true;
    }
    bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Deserializes a string and checks it inside the visitor, so that a
/// rejected value is reported at its own line and key, not its parent's.
fn deserialize_checked_str<'de, D, T>(
    deserializer: D,
    check: fn(&str) -> Result<T, String>,
) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
{
    struct Visitor<T>(fn(&str) -> Result<T, String>);
    impl<'de, T> serde::de::Visitor<'de> for Visitor<T> {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a string")
        }
        fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<T, E> {
            (self.0)(value).map_err(E::custom)
        }
    }
    deserializer.deserialize_str(Visitor(check))
}

/// `keyring` | `{ command: "..." }` | `{ env: VAR }`.
#[derive(Clone)]
struct RawSecretSource(SecretSource);

impl<'de> Deserialize<'de> for RawSecretSource {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        const EXPECTED: &str =
            "`keyring`, `{ command: \"...\" }` or `{ env: VARIABLE }` (never a plaintext secret)";
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = RawSecretSource;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(EXPECTED)
            }
            fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<Self::Value, E> {
                if value == "keyring" {
                    Ok(RawSecretSource(SecretSource::Keyring))
                } else {
                    // Do not echo the value: it may be a password typed in by mistake.
                    Err(E::custom(format!(
                        "expected {EXPECTED}; a plaintext secret is not accepted in the config"
                    )))
                }
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Self::Value, A::Error> {
                use serde::de::Error;
                let Some(key) = map.next_key::<String>()? else {
                    return Err(A::Error::custom(format!(
                        "expected {EXPECTED}, got an empty map"
                    )));
                };
                let value: String = map.next_value()?;
                let source = match key.as_str() {
                    "command" if !value.trim().is_empty() => SecretSource::Command(value),
                    "env" if !value.trim().is_empty() => SecretSource::Env(value),
                    "command" | "env" => {
                        return Err(A::Error::custom(format!("{key}: must not be empty")))
                    }
                    other => {
                        return Err(A::Error::custom(format!(
                            "unknown key `{other}`, expected {EXPECTED}"
                        )))
                    }
                };
                if let Some(extra) = map.next_key::<String>()? {
                    return Err(A::Error::custom(format!(
                        "unexpected second key `{extra}`, expected {EXPECTED}"
                    )));
                }
                Ok(RawSecretSource(source))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFolders {
    #[serde(default = "default_sync_folders")]
    sync: Vec<String>,
    #[serde(default)]
    drafts: RawFolderChoice,
    #[serde(default)]
    sent: RawFolderChoice,
}

impl Default for RawFolders {
    fn default() -> Self {
        RawFolders {
            sync: default_sync_folders(),
            drafts: RawFolderChoice::default(),
            sent: RawFolderChoice::default(),
        }
    }
}

fn default_sync_folders() -> Vec<String> {
    vec!["INBOX".into(), "\\Sent".into()]
}

#[derive(Deserialize, Default)]
#[serde(from = "String")]
struct RawFolderChoice(Option<String>);

impl From<String> for RawFolderChoice {
    fn from(value: String) -> Self {
        if value == "auto" {
            RawFolderChoice(None)
        } else {
            RawFolderChoice(Some(value))
        }
    }
}

impl From<RawFolderChoice> for FolderChoice {
    fn from(raw: RawFolderChoice) -> Self {
        raw.0.map_or(FolderChoice::Auto, FolderChoice::Named)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDrafts {
    #[serde(default = "default_generator")]
    generator: Generator,
    template: Option<String>,
    command: Option<Vec<String>>,
    openai: Option<RawOpenAi>,
    prompt: Option<String>,
    #[serde(default = "default_generator_timeout")]
    timeout: HumanDuration,
    #[serde(default = "default_max_age")]
    max_age: HumanDuration,
    #[serde(default = "default_push")]
    push: PushMode,
}

impl Default for RawDrafts {
    fn default() -> Self {
        RawDrafts {
            generator: default_generator(),
            template: None,
            command: None,
            openai: None,
            prompt: None,
            timeout: default_generator_timeout(),
            max_age: default_max_age(),
            push: default_push(),
        }
    }
}

fn default_generator() -> Generator {
    Generator::Template
}

fn default_generator_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(60))
}

fn default_max_age() -> HumanDuration {
    HumanDuration(Duration::from_secs(14 * 86_400))
}

fn default_push() -> PushMode {
    PushMode::Manual
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOpenAi {
    base_url: String,
    model: String,
    api_key: Option<RawSecretSource>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSchedule {
    #[serde(default = "default_interval")]
    interval: HumanDuration,
}

impl Default for RawSchedule {
    fn default() -> Self {
        RawSchedule {
            interval: default_interval(),
        }
    }
}

fn default_interval() -> HumanDuration {
    HumanDuration(Duration::from_secs(15 * 60))
}

/// `30s`, `15m`, `2h`, `90d`, `2w`.
#[derive(Clone, Copy)]
struct HumanDuration(Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserialize_checked_str(deserializer, |value| {
            HumanDuration::try_from(value.to_string())
        })
    }
}

impl TryFrom<String> for HumanDuration {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        parse_duration(&value).map(HumanDuration)
    }
}

/// Parses `<number><unit>` with unit s, m, h, d or w.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let expected =
        || format!("expected a duration such as `30s`, `15m`, `2h`, `90d` or `2w`, got `{text}`");
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(expected)?;
    let (number, unit) = trimmed.split_at(split);
    let number: u64 = number.parse().map_err(|_| expected())?;
    let seconds_per_unit = match unit.trim() {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(expected()),
    };
    if number == 0 {
        return Err(format!("expected a duration above zero, got `{text}`"));
    }
    number
        .checked_mul(seconds_per_unit)
        .map(Duration::from_secs)
        .ok_or_else(expected)
}

impl RawConfig {
    /// Cross-field checks and defaults; errors name the key path.
    fn resolve(self, path: &Path) -> Result<Config, String> {
        if self.accounts.is_empty() {
            return Err("accounts: expected at least one account".into());
        }
        let mut accounts = BTreeMap::new();
        for (id, raw) in self.accounts {
            let account = raw.resolve(&id)?;
            accounts.insert(id, account);
        }
        let drafts = self.drafts.resolve()?;
        let vault = expand_tilde(&self.vault);
        if self.vault.trim().is_empty() {
            return Err("vault: expected the path of the notes vault".into());
        }
        Ok(Config {
            path: path.to_path_buf(),
            vault,
            notes: NotesConfig {
                sources: self.notes.sources.0,
                drafts: self.notes.drafts.0,
            },
            state_dir: self
                .state_dir
                .as_deref()
                .map(expand_tilde)
                .unwrap_or_else(default_state_dir),
            accounts,
            drafts,
            schedule: ScheduleConfig {
                interval: self.schedule.interval.0,
            },
        })
    }
}

impl RawAccount {
    fn resolve(self, id: &str) -> Result<Account, String> {
        let key = format!("accounts.{id}");
        if id.is_empty() || id.contains(|c: char| c.is_whitespace() || c == '/') {
            return Err(format!(
                "{key}: an account name must be non-empty, without spaces or `/`"
            ));
        }
        let token = self.token.map(|t| t.0);
        if self.auth == AuthMethod::Xoauth2 && token.is_none() {
            return Err(format!(
                "{key}.token: `auth: xoauth2` needs `token: {{ command: \"...\" }}` (or `{{ env: VAR }}`) giving an OAuth2 access token"
            ));
        }
        if self.folders.sync.is_empty() {
            return Err(format!("{key}.folders.sync: expected at least one folder"));
        }
        let imap = with_default_port(self.imap, 993, 143);
        let smtp_saves_sent = self.smtp.as_ref().is_some_and(|smtp| smtp.saves_sent);
        let smtp = self
            .smtp
            .map(|smtp| with_default_port(smtp.endpoint, 465, 587));
        Ok(Account {
            id: id.to_string(),
            username: self.username.unwrap_or_else(|| self.email.0.clone()),
            email: self.email.0,
            display_name: self.name.filter(|n| !n.trim().is_empty()),
            imap,
            smtp,
            smtp_saves_sent,
            ca_file: self.ca_file.as_deref().map(expand_tilde),
            password: self.password.0,
            auth: self.auth,
            token,
            folders: Folders {
                sync: self.folders.sync,
                drafts: self.folders.drafts.into(),
                sent: self.folders.sent.into(),
            },
            since: self.since.map(|d| d.0),
        })
    }
}

fn with_default_port(mut endpoint: Endpoint, tls_port: u16, plain_port: u16) -> Endpoint {
    if endpoint.port == 0 {
        endpoint.port = match endpoint.security {
            Security::Tls => tls_port,
            Security::Starttls | Security::None => plain_port,
        };
    }
    endpoint
}

impl RawDrafts {
    fn resolve(self) -> Result<DraftsConfig, String> {
        match self.generator {
            Generator::Command if self.command.as_ref().is_none_or(|c| c.is_empty()) => return Err(
                "drafts.command: `generator: command` needs `command: [\"program\", \"arg\"...]`"
                    .into(),
            ),
            Generator::Openai if self.openai.is_none() => return Err(
                "drafts.openai: `generator: openai` needs `openai: { base_url: ..., model: ... }`"
                    .into(),
            ),
            _ => {}
        }
        Ok(DraftsConfig {
            generator: self.generator,
            template: self.template.as_deref().map(expand_tilde),
            command: self.command,
            openai: self.openai.map(|o| OpenAiConfig {
                base_url: o.base_url,
                model: o.model,
                api_key: o.api_key.map(|k| k.0),
            }),
            prompt: self.prompt.as_deref().map(expand_tilde),
            timeout: self.timeout.0,
            max_age: self.max_age.0,
            push: self.push,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "\
vault: /tmp/vault
accounts:
  work:
    email: jason@example.com
    imap: { host: imap.example.com }
";

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("/etc/bridge.yaml"))
    }

    fn error(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn starter_config_is_valid() {
        let config = parse(STARTER_CONFIG).expect("the starter config must load");
        assert!(config.accounts.contains_key("work"));
    }

    #[test]
    fn defaults_fill_in() {
        let config = parse(MINIMAL).unwrap();
        let account = &config.accounts["work"];
        assert_eq!(account.username, "jason@example.com");
        assert_eq!(account.imap.port, 993);
        assert_eq!(account.imap.security, Security::Tls);
        assert_eq!(account.password, SecretSource::Keyring);
        assert_eq!(account.folders.sync, vec!["INBOX", "\\Sent"]);
        assert_eq!(account.folders.drafts, FolderChoice::Auto);
        assert_eq!(config.notes.sources, PathBuf::from("Sources/Email"));
        assert_eq!(config.drafts.max_age, Duration::from_secs(14 * 86_400));
        assert_eq!(config.drafts.timeout, Duration::from_secs(60));
        assert_eq!(config.schedule.interval, Duration::from_secs(900));
    }

    #[test]
    fn unknown_key_names_line_and_key() {
        let text = MINIMAL.replace("{ host: imap.example.com }", "{ hots: imap.example.com }");
        let message = error(&text);
        assert!(message.contains("/etc/bridge.yaml line 5"), "{message}");
        assert!(message.contains("accounts.work.imap"), "{message}");
        assert!(message.contains("hots"), "{message}");
    }

    #[test]
    fn wrong_type_names_line_and_key() {
        let text = MINIMAL.replace("{ host: imap.example.com }", "{ host: h, port: lots }");
        let message = error(&text);
        assert!(message.contains("line 5"), "{message}");
        assert!(message.contains("accounts.work.imap.port"), "{message}");
    }

    #[test]
    fn missing_required_key() {
        let text = MINIMAL.replace("    email: jason@example.com\n", "");
        let message = error(&text);
        assert!(message.contains("accounts.work"), "{message}");
        assert!(message.contains("missing field `email`"), "{message}");
        assert!(message.contains("line 4"), "{message}");
    }

    #[test]
    fn bad_duration_names_line_and_key() {
        let text = format!("{MINIMAL}    since: 90days\n");
        let message = error(&text);
        assert!(message.contains("line 6"), "{message}");
        assert!(message.contains("accounts.work.since"), "{message}");
        assert!(message.contains("90days"), "{message}");
    }

    #[test]
    fn security_none_refused_for_remote_host() {
        let text = MINIMAL.replace(
            "{ host: imap.example.com }",
            "{ host: imap.example.com, security: none }",
        );
        let message = error(&text);
        assert!(message.contains("line 5"), "{message}");
        assert!(message.contains("accounts.work.imap"), "{message}");
        assert!(message.contains("loopback"), "{message}");
    }

    #[test]
    fn security_none_accepted_for_loopback() {
        for host in ["127.0.0.1", "::1", "localhost", "127.0.0.5"] {
            let text = MINIMAL.replace(
                "{ host: imap.example.com }",
                &format!("{{ host: \"{host}\", security: none }}"),
            );
            let config = parse(&text).unwrap();
            assert_eq!(config.accounts["work"].imap.port, 143, "{host}");
        }
    }

    #[test]
    fn plaintext_password_refused_without_echo() {
        let text = format!("{MINIMAL}    password: hunter2secret\n");
        let message = error(&text);
        assert!(message.contains("accounts.work.password"), "{message}");
        assert!(!message.contains("hunter2secret"), "{message}");
    }

    #[test]
    fn secret_sources() {
        let text = format!("{MINIMAL}    password: {{ command: \"pass show mail\" }}\n");
        let config = parse(&text).unwrap();
        assert_eq!(
            config.accounts["work"].password,
            SecretSource::Command("pass show mail".into())
        );
        let text = format!("{MINIMAL}    password: {{ env: WORK_PASSWORD }}\n");
        let config = parse(&text).unwrap();
        assert_eq!(
            config.accounts["work"].password,
            SecretSource::Env("WORK_PASSWORD".into())
        );
    }

    #[test]
    fn smtp_saves_sent() {
        let text = format!("{MINIMAL}    smtp: {{ host: smtp.gmail.com, saves_sent: true }}\n");
        let config = parse(&text).unwrap();
        let account = &config.accounts["work"];
        assert!(account.smtp_saves_sent);
        assert_eq!(account.smtp.as_ref().unwrap().port, 465);
        let text = format!("{MINIMAL}    smtp: {{ host: smtp.example.com, security: none }}\n");
        let message = error(&text);
        assert!(message.contains("accounts.work.smtp"), "{message}");
        assert!(message.contains("loopback"), "{message}");
        let text = MINIMAL.replace(
            "{ host: imap.example.com }",
            "{ host: h, saves_sent: true }",
        );
        let message = error(&text);
        assert!(message.contains("unknown field `saves_sent`"), "{message}");
    }

    #[test]
    fn xoauth2_needs_token() {
        let text = format!("{MINIMAL}    auth: xoauth2\n");
        let message = error(&text);
        assert!(message.contains("accounts.work.token"), "{message}");
    }

    #[test]
    fn tilde_expands() {
        let text = MINIMAL.replace("/tmp/vault", "~/Notes");
        let config = parse(&text).unwrap();
        assert!(!config.vault.starts_with("~"));
        assert!(config.vault.ends_with("Notes"));
    }

    #[test]
    fn several_accounts() {
        let text = format!(
            "{MINIMAL}  home:\n    email: me@home.example\n    imap: {{ host: imap.home.example, security: starttls }}\n"
        );
        let config = parse(&text).unwrap();
        assert_eq!(config.accounts.len(), 2);
        assert_eq!(config.accounts["home"].imap.port, 143);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90d"), Ok(Duration::from_secs(90 * 86_400)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert!(parse_duration("15").is_err());
        assert!(parse_duration("m").is_err());
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("-3d").is_err());
    }
}
