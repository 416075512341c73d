//! What a principal asks to do with a template ([`Action`]), as permissions name it.

use std::fmt;

use serde::{Deserialize, Serialize};

/// What a principal asks to do with a template: each is granted by the template's access list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Action {
    /// Release or roll back (start anything that changes hosts).
    Deploy,
    /// See the template, its plan and its history.
    View,
}

impl Action {
    /// The lower-case verb (`deploy`, `view`).
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Deploy => "deploy",
            Action::View => "view",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
