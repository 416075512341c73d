//! Salt target expressions ([`TargetExpr`], [`TargetType`]) and resolving a `list` without asking
//! anyone ([`resolve_list`]).

use serde::{Deserialize, Serialize};

use crate::vocab::call::MinionId;
use crate::vocab::error::{TransportError, TransportErrorKind};

/// How salt interprets a target expression (`tgt_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum TargetType {
    /// Shell-style glob on minion ids (`web-*`).
    Glob,
    /// Comma-separated list of ids.
    List,
    /// Grain match (`os:Windows`).
    Grain,
    /// Perl-compatible regular expression on ids.
    Pcre,
    /// Compound matcher (`G@os:Debian and web-*`).
    Compound,
    /// A nodegroup defined on the master.
    Nodegroup,
}

impl TargetType {
    /// The `tgt_type` string salt expects.
    pub fn as_str(self) -> &'static str {
        match self {
            TargetType::Glob => "glob",
            TargetType::List => "list",
            TargetType::Grain => "grain",
            TargetType::Pcre => "pcre",
            TargetType::Compound => "compound",
            TargetType::Nodegroup => "nodegroup",
        }
    }
}

/// A salt target expression and its type, resolved to minion ids by [`crate::Transport::resolve`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetExpr {
    /// The expression, e.g. `web-*`.
    pub expression: String,
    /// How salt should read it.
    #[serde(rename = "type", default = "default_tgt_type")]
    pub tgt_type: TargetType,
}

fn default_tgt_type() -> TargetType {
    TargetType::Glob
}

/// Resolves a `list` target without asking anyone; other types are `Unsupported`.
pub fn resolve_list(target: &TargetExpr) -> Result<Vec<MinionId>, TransportError> {
    if target.tgt_type != TargetType::List {
        return Err(TransportError::new(
            TransportErrorKind::Unsupported,
            format!(
                "this transport cannot resolve `{}` targets",
                target.tgt_type.as_str()
            ),
        ));
    }
    target
        .expression
        .split(',')
        .map(|s| {
            MinionId::new(s.trim())
                .map_err(|e| TransportError::new(TransportErrorKind::Protocol, e.to_string()))
        })
        .collect()
}
