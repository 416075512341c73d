//! Empty values of the record types, so that another backend (the `pushguide-postgres` crate) can
//! build them field by field: the types are `#[non_exhaustive]`, which forbids struct literals
//! outside this crate. Times default to the Unix epoch, stages to prepare.
//!
//! Kept here rather than as derives on the types, so the empty values of every record type are in one
//! place.
#![allow(clippy::derivable_impls)]

use std::time::UNIX_EPOCH;

use pushguide_core::Stage;

use crate::{
    CallRow, DayStats, DeploymentRecord, HistoryPage, HostProgress, HostResult, HostStageResult,
    HostVersion, InterruptedDeployment,
};

impl Default for DeploymentRecord {
    fn default() -> Self {
        DeploymentRecord {
            id: String::new(),
            template: String::new(),
            version: String::new(),
            principal: String::new(),
            dry_run: false,
            rollback: false,
            started: UNIX_EPOCH,
            ended: None,
            duration: None,
            outcome: None,
            reason: None,
            events: 0,
        }
    }
}

impl Default for HostStageResult {
    fn default() -> Self {
        HostStageResult {
            host: String::new(),
            batch: None,
            stage: String::new(),
            status: String::new(),
            duration: None,
            fun: None,
            detail: None,
        }
    }
}

impl Default for HostResult {
    fn default() -> Self {
        HostResult {
            host: String::new(),
            batch: None,
            status: String::new(),
            failed_stage: None,
            fun: None,
            failure: None,
            rolled_back_to: None,
        }
    }
}

impl Default for CallRow {
    fn default() -> Self {
        CallRow {
            batch: None,
            stage: String::new(),
            fun: String::new(),
            jid: None,
            ok: 0,
            failed: 0,
            millis: 0,
        }
    }
}

impl Default for HistoryPage {
    fn default() -> Self {
        HistoryPage {
            rows: Vec::new(),
            newer: false,
            older: false,
        }
    }
}

impl Default for DayStats {
    fn default() -> Self {
        DayStats {
            day: UNIX_EPOCH,
            count: 0,
            succeeded: 0,
            p50: None,
            p95: None,
        }
    }
}

impl Default for HostVersion {
    fn default() -> Self {
        HostVersion {
            host: String::new(),
            version: None,
            healthy: false,
            since: UNIX_EPOCH,
            previous: None,
            good: Vec::new(),
        }
    }
}

impl Default for InterruptedDeployment {
    fn default() -> Self {
        InterruptedDeployment {
            id: String::new(),
            template: String::new(),
            version: String::new(),
            principal: String::new(),
            dry_run: false,
            started: UNIX_EPOCH,
            last_event: UNIX_EPOCH,
            batch: None,
            stage: Stage::Prepare,
            live_hosts: 0,
            rollback: false,
            planned_hosts: None,
            planned_batches: None,
            planned: Vec::new(),
            hosts: Vec::new(),
        }
    }
}

impl Default for HostProgress {
    fn default() -> Self {
        HostProgress {
            host: String::new(),
            batch: None,
            stage: Stage::Prepare,
            status: String::new(),
            detail: None,
            fun: None,
            stages_done: Vec::new(),
            calls_done: Vec::new(),
            stage_calls: Vec::new(),
            batch_finished: false,
        }
    }
}
