//! The crate's error type.

use std::time::Duration;

/// Everything that can go wrong while reading an artifact source or a CMDB, as one typed enum.
///
/// Every variant names the source (`source_name`: the index URL, the directory, the CMDB file or URL)
/// and, where one is involved, the template, the version, the host or the key — so the message alone
/// tells an operator which system to look at.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The source could not be reached (connection refused, DNS, TLS, I/O on the wire).
    #[error("{source_name}: cannot reach {url}: {message}")]
    Unreachable {
        /// The source.
        source_name: String,
        /// The URL requested.
        url: String,
        /// The client's message.
        message: String,
    },
    /// The source did not answer in time.
    #[error("{source_name}: no answer from {url} within {timeout:?}")]
    Timeout {
        /// The source.
        source_name: String,
        /// The URL requested.
        url: String,
        /// The configured limit.
        timeout: Duration,
    },
    /// The source answered with an unexpected HTTP status.
    #[error("{source_name}: {url} answered HTTP {status}")]
    Status {
        /// The source.
        source_name: String,
        /// The URL requested.
        url: String,
        /// The HTTP status.
        status: u16,
    },
    /// The source answered, but not in the documented format.
    #[error("{source_name}: malformed data in {location}: {message}")]
    Malformed {
        /// The source.
        source_name: String,
        /// The URL or file that held the bad data.
        location: String,
        /// What is wrong, including the JSON/TOML parser's line and column where known.
        message: String,
    },
    /// The source knows nothing about the template.
    #[error("{source_name}: no artifacts for template `{template}`")]
    TemplateNotFound {
        /// The source.
        source_name: String,
        /// The template name.
        template: String,
    },
    /// The source has no such version of the template.
    #[error("{source_name}: template `{template}` has no version `{version}`")]
    VersionNotFound {
        /// The source.
        source_name: String,
        /// The template name.
        template: String,
        /// The version asked for.
        version: String,
    },
    /// A version (from the source, or asked for) fails pushguide's version grammar.
    #[error("{source_name}: rejected version \"{version}\" of template `{template}`: {error}")]
    InvalidVersion {
        /// The source.
        source_name: String,
        /// The template name.
        template: String,
        /// The rejected version, escaped and shortened for display.
        version: String,
        /// The validation error.
        #[source]
        error: Box<pushguide_core::Error>,
    },
    /// A value other than a version failed validation (a template name, an artifact URL, a checksum).
    #[error("{source_name}: {error}")]
    Invalid {
        /// The source.
        source_name: String,
        /// The validation error, naming the field.
        #[source]
        error: Box<pushguide_core::Error>,
    },
    /// A local file or directory could not be read.
    #[error("{source_name}: cannot read {path}: {error}")]
    Io {
        /// The source.
        source_name: String,
        /// The path.
        path: String,
        /// The I/O error.
        #[source]
        error: std::io::Error,
    },
    /// An artifact archive is unreadable or ambiguous.
    #[error("{source_name}: artifact {path}: {message}")]
    Archive {
        /// The source.
        source_name: String,
        /// The archive or its directory.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// A CMDB host id fails the minion id grammar.
    #[error("CMDB {source_name}: rejected host \"{host}\": {error}")]
    InvalidHost {
        /// The CMDB.
        source_name: String,
        /// The rejected host id, escaped and shortened for display.
        host: String,
        /// The validation error.
        #[source]
        error: Box<pushguide_core::Error>,
    },
    /// A CMDB setting was rejected: by the template's project kind (unknown key, bad value), or before
    /// the kind saw it, by the bounds of a template (too long, too deep, control characters).
    #[error("CMDB {source_name}: host `{host}`, key `{key}` rejected by kind `{kind}`: {error}")]
    Setting {
        /// The CMDB.
        source_name: String,
        /// The host the setting belongs to.
        host: String,
        /// The key (escaped and shortened for display); several keys joined by `, ` when only
        /// their combination is rejected.
        key: String,
        /// The template's project kind.
        kind: String,
        /// The kind's error (a parse error naming the unknown field, or a validation error naming the field
        /// path and the value).
        #[source]
        error: Box<pushguide_core::Error>,
    },
    /// The template's project kind takes no per-host settings (`[project.hosts.<id>]`).
    #[error("CMDB {source_name}: kind `{kind}` of template `{template}` takes no per-host settings: {error}")]
    NoHostSettings {
        /// The CMDB.
        source_name: String,
        /// The template.
        template: String,
        /// The kind.
        kind: String,
        /// The kind's error.
        #[source]
        error: Box<pushguide_core::Error>,
    },
    /// A template's project config could not be serialized or read back by its kind (a kind whose
    /// serde round trip loses or changes the config), or the template itself is invalid.
    #[error(transparent)]
    Template(Box<pushguide_core::Error>),
    /// A source was configured wrongly (a bad base URL, an unusable HTTP client setting).
    #[error("{source_name}: bad configuration: {message}")]
    Config {
        /// The source.
        source_name: String,
        /// What is wrong.
        message: String,
    },
    /// Hosts a CMDB asked about did not answer (a salt minion that is down, or unknown to the
    /// master): their settings are unknown, so the template is not merged rather than deploying them
    /// with the template's defaults.
    #[error(
        "CMDB {source_name}: no answer from {} (settings unknown; bring them up or leave them out \
         of the deployment)",
        .hosts.join(", ")
    )]
    Unanswered {
        /// The CMDB.
        source_name: String,
        /// The hosts without an answer, sorted.
        hosts: Vec<String>,
    },
}

impl Error {
    /// Whether trying the same request again (later) may succeed: the source was unreachable, slow,
    /// answered with a server error (5xx) or 429, or some of its hosts did not answer. Bad data, unknown versions and rejected settings
    /// are permanent. The same question as [`pushguide_core::TransportError::is_retryable`].
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Unreachable { .. } | Error::Timeout { .. } | Error::Unanswered { .. } => true,
            Error::Status { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }

    /// The name of the source (index URL, directory, CMDB file or URL) the error comes from, if any.
    pub fn source_name(&self) -> Option<&str> {
        match self {
            Error::Unreachable { source_name, .. }
            | Error::Timeout { source_name, .. }
            | Error::Status { source_name, .. }
            | Error::Malformed { source_name, .. }
            | Error::TemplateNotFound { source_name, .. }
            | Error::VersionNotFound { source_name, .. }
            | Error::InvalidVersion { source_name, .. }
            | Error::Invalid { source_name, .. }
            | Error::Io { source_name, .. }
            | Error::Archive { source_name, .. }
            | Error::InvalidHost { source_name, .. }
            | Error::Setting { source_name, .. }
            | Error::NoHostSettings { source_name, .. }
            | Error::Config { source_name, .. }
            | Error::Unanswered { source_name, .. } => Some(source_name),
            Error::Template(_) => None,
        }
    }
}

impl From<pushguide_core::Error> for Error {
    fn from(e: pushguide_core::Error) -> Self {
        Error::Template(Box::new(e))
    }
}

/// For callers that speak `pushguide_core::Error` (e.g. a tool that loads a template, applies a CMDB
/// and deploys): template errors pass through unchanged; everything else becomes
/// [`pushguide_core::Error::Invalid`] whose `field` names the source (and the version, host or key),
/// whose `value` is the bad value where there is one, and whose `reason` is this error's message.
impl From<Error> for pushguide_core::Error {
    fn from(e: Error) -> Self {
        let reason = e.to_string();
        match e {
            Error::Template(inner) => *inner,
            Error::InvalidVersion {
                source_name,
                version,
                ..
            } => pushguide_core::Error::invalid(
                format!("version from {source_name}"),
                version,
                reason,
            ),
            Error::VersionNotFound {
                source_name,
                version,
                ..
            } => pushguide_core::Error::invalid(
                format!("version from {source_name}"),
                version,
                reason,
            ),
            Error::InvalidHost {
                source_name, host, ..
            } => pushguide_core::Error::invalid(format!("CMDB {source_name}"), host, reason),
            Error::Setting {
                source_name,
                host,
                key,
                ..
            } => pushguide_core::Error::invalid(
                format!("CMDB {source_name}: project.hosts.{host}.{key}"),
                "",
                reason,
            ),
            other => {
                let source = other.source_name().unwrap_or("source").to_owned();
                pushguide_core::Error::invalid(source, "", reason)
            }
        }
    }
}

/// A printable, bounded rendering of an untrusted value for error messages.
pub(crate) fn shown(value: &str) -> String {
    let mut out: String = value
        .chars()
        .take(80)
        .flat_map(char::escape_debug)
        .collect();
    if value.chars().count() > 80 {
        out.push('…');
    }
    out
}
