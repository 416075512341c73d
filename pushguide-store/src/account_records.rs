//! Constructors of the account records, for other backends of [`crate::AccountStore`] (the records
//! are `#[non_exhaustive]`, so another crate cannot build them with a struct literal).

use std::time::SystemTime;

use crate::{ApiToken, Session, TemplateRevision, TokenUser, User};

impl User {
    /// An account as a store read it.
    pub fn new(
        name: String,
        password_hash: String,
        groups: Vec<String>,
        created: SystemTime,
    ) -> Self {
        User {
            name,
            password_hash,
            groups,
            created,
        }
    }
}

impl Session {
    /// A live session as a store found it (`last_seen`: before this lookup).
    pub fn new(
        user: String,
        groups: Vec<String>,
        csrf: String,
        created: SystemTime,
        last_seen: SystemTime,
    ) -> Self {
        Session {
            user,
            groups,
            csrf,
            created,
            last_seen,
        }
    }
}

impl ApiToken {
    /// An API token as a store lists it.
    pub fn new(
        id: String,
        user: String,
        label: String,
        created: SystemTime,
        last_used: Option<SystemTime>,
        expires: Option<SystemTime>,
    ) -> Self {
        ApiToken {
            id,
            user,
            label,
            created,
            last_used,
            expires,
        }
    }
}

impl TokenUser {
    /// What a valid token authenticates: `token` with its user's `groups` now.
    pub fn new(token: ApiToken, groups: Vec<String>) -> Self {
        TokenUser { token, groups }
    }
}

impl TemplateRevision {
    /// A saved text of a template as a store read it.
    pub fn new(
        template: String,
        revision: i64,
        user: String,
        at: SystemTime,
        file: String,
        content: String,
    ) -> Self {
        TemplateRevision {
            template,
            revision,
            user,
            at,
            file,
            content,
        }
    }
}
