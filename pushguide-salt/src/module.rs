//! The salt execution module `pushguide` that pushguide ships (`module/pushguide.py`): it runs a
//! host's steps in one salt job (`pushguide.steps`, protocol v1), and answers `pushguide.version`,
//! `pushguide.free_space` and `pushguide.prune`.
//!
//! [`SaltApi::install_module`](crate::SaltApi::install_module) writes [`SOURCE`] to [`PATH`] in the
//! file_roots of every configured master (wheel `file_roots.write`), syncs it to the minions
//! (`saltutil.sync_modules`) and checks [`PROTOCOL`] with `pushguide.version`. By hand: copy the file
//! to `<file_roots>/_modules/pushguide.py` and run `salt '*' saltutil.sync_modules`.

/// The module's Python source.
pub const SOURCE: &str = include_str!("../module/pushguide.py");

/// Where the module goes, relative to the master's file_roots (`base` environment).
pub const PATH: &str = "_modules/pushguide.py";

/// The steps protocol version the module speaks (`pushguide.version()` answers
/// `{"pushguide": 1}`).
pub const PROTOCOL: u64 = 1;
