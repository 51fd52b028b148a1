//! `enum hsm_copytool_action` and the HSM flag and state constants.

use std::fmt;
use std::str::FromStr;

/// What a copytool is asked to do (`hai_action`, `enum hsm_copytool_action`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum HsmAction {
    /// `HSMA_NONE` (10), printed `NOOP`.
    None,
    /// `HSMA_ARCHIVE` (20).
    Archive,
    /// `HSMA_RESTORE` (21).
    Restore,
    /// `HSMA_REMOVE` (22).
    Remove,
    /// `HSMA_CANCEL` (23).
    Cancel,
    /// Any other value, kept as is; printed `UNKNOWN`.
    Unknown(u32),
}

/// `HSMA_NONE`.
pub const HSMA_NONE: u32 = 10;
/// `HSMA_ARCHIVE`.
pub const HSMA_ARCHIVE: u32 = 20;
/// `HSMA_RESTORE`.
pub const HSMA_RESTORE: u32 = 21;
/// `HSMA_REMOVE`.
pub const HSMA_REMOVE: u32 = 22;
/// `HSMA_CANCEL`.
pub const HSMA_CANCEL: u32 = 23;

impl HsmAction {
    /// Decodes a `hai_action` value; unknown values become [`HsmAction::Unknown`].
    pub const fn from_u32(value: u32) -> Self {
        match value {
            HSMA_NONE => HsmAction::None,
            HSMA_ARCHIVE => HsmAction::Archive,
            HSMA_RESTORE => HsmAction::Restore,
            HSMA_REMOVE => HsmAction::Remove,
            HSMA_CANCEL => HsmAction::Cancel,
            other => HsmAction::Unknown(other),
        }
    }

    /// The `hai_action` value.
    pub const fn as_u32(self) -> u32 {
        match self {
            HsmAction::None => HSMA_NONE,
            HsmAction::Archive => HSMA_ARCHIVE,
            HsmAction::Restore => HSMA_RESTORE,
            HsmAction::Remove => HSMA_REMOVE,
            HsmAction::Cancel => HSMA_CANCEL,
            HsmAction::Unknown(v) => v,
        }
    }

    /// The name Lustre prints (`hsm_copytool_action2name`).
    pub const fn name(self) -> &'static str {
        match HsmAction::from_u32(self.as_u32()) {
            HsmAction::None => "NOOP",
            HsmAction::Archive => "ARCHIVE",
            HsmAction::Restore => "RESTORE",
            HsmAction::Remove => "REMOVE",
            HsmAction::Cancel => "CANCEL",
            HsmAction::Unknown(_) => "UNKNOWN",
        }
    }
}

impl fmt::Display for HsmAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An action name that is not one of `NOOP`, `ARCHIVE`, `RESTORE`, `REMOVE`,
/// `CANCEL`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown HSM action name {0:?} (expected NOOP, ARCHIVE, RESTORE, REMOVE or CANCEL)")]
pub struct HsmActionParseError(pub String);

impl FromStr for HsmAction {
    type Err = HsmActionParseError;

    /// Parses the printed names, case-insensitively. `UNKNOWN` is rejected: it
    /// does not say which value it stood for.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let action = match s.to_ascii_uppercase().as_str() {
            "NOOP" => HsmAction::None,
            "ARCHIVE" => HsmAction::Archive,
            "RESTORE" => HsmAction::Restore,
            "REMOVE" => HsmAction::Remove,
            "CANCEL" => HsmAction::Cancel,
            _ => return Err(HsmActionParseError(s.to_owned())),
        };
        Ok(action)
    }
}

/// HSM flag, state and status constants (`lustre_user.h`, `lustre_idl.h`).
pub mod flags {
    /// `hal_flags`/`hr_flags`: skip the "is an action needed" check.
    pub const HSM_FORCE_ACTION: u64 = 0x1;
    /// `hal_flags`/`hr_flags`: "used by CT, cannot be set by user".
    pub const HSM_GHOST_COPY: u64 = 0x2;
    /// `hal_flags`/`hr_flags`: blocking restore (Lustre 2.17+).
    pub const HSM_REQ_BLOCKING: u64 = 0x4;

    /// Progress flag (`hp_flags`/`hc_flags`): the action is complete.
    pub const HP_FLAG_COMPLETED: i32 = 0x01;
    /// Progress flag (`hp_flags`/`hc_flags`): the action may be retried.
    pub const HP_FLAG_RETRY: i32 = 0x02;

    /// `enum hsm_states`: no flag.
    pub const HS_NONE: u32 = 0x0;
    /// `enum hsm_states`: the file has HSM attributes.
    pub const HS_EXISTS: u32 = 0x1;
    /// `enum hsm_states`: the file changed since its last archive.
    pub const HS_DIRTY: u32 = 0x2;
    /// `enum hsm_states`: the file's data is released.
    pub const HS_RELEASED: u32 = 0x4;
    /// `enum hsm_states`: the file is archived.
    pub const HS_ARCHIVED: u32 = 0x8;
    /// `enum hsm_states`: never release the file.
    pub const HS_NORELEASE: u32 = 0x10;
    /// `enum hsm_states`: never archive the file.
    pub const HS_NOARCHIVE: u32 = 0x20;
    /// `enum hsm_states`: the archived copy is lost.
    pub const HS_LOST: u32 = 0x40;
    /// `enum hsm_states`: PCC read-write (2.16+).
    pub const HS_PCCRW: u32 = 0x80;
    /// `enum hsm_states`: PCC read-only (2.16+).
    pub const HS_PCCRO: u32 = 0x100;
    /// `HSM_USER_MASK`: the states an unprivileged user may set.
    pub const HSM_USER_MASK: u32 = HS_NORELEASE | HS_NOARCHIVE | HS_DIRTY;
    /// `HSM_STATUS_MASK`.
    pub const HSM_STATUS_MASK: u32 =
        HS_EXISTS | HS_LOST | HS_RELEASED | HS_ARCHIVED | HS_PCCRW | HS_PCCRO;

    /// `enum hsm_user_action`: none.
    pub const HUA_NONE: u32 = 1;
    /// `enum hsm_user_action`: archive.
    pub const HUA_ARCHIVE: u32 = 10;
    /// `enum hsm_user_action`: restore.
    pub const HUA_RESTORE: u32 = 11;
    /// `enum hsm_user_action`: release (client side; rejected by the MDT).
    pub const HUA_RELEASE: u32 = 12;
    /// `enum hsm_user_action`: remove.
    pub const HUA_REMOVE: u32 = 13;
    /// `enum hsm_user_action`: cancel.
    pub const HUA_CANCEL: u32 = 14;

    /// `enum hsm_progress_states`: none.
    pub const HPS_NONE: u32 = 0;
    /// `enum hsm_progress_states`: waiting.
    pub const HPS_WAITING: u32 = 1;
    /// `enum hsm_progress_states`: running.
    pub const HPS_RUNNING: u32 = 2;
    /// `enum hsm_progress_states`: done.
    pub const HPS_DONE: u32 = 3;

    /// `enum agent_req_status`: waiting.
    pub const ARS_WAITING: u32 = 0;
    /// `enum agent_req_status`: started.
    pub const ARS_STARTED: u32 = 1;
    /// `enum agent_req_status`: failed.
    pub const ARS_FAILED: u32 = 2;
    /// `enum agent_req_status`: canceled.
    pub const ARS_CANCELED: u32 = 3;
    /// `enum agent_req_status`: succeeded.
    pub const ARS_SUCCEED: u32 = 4;

    /// The name printed for an `agent_req_status` (`WAITING`, `STARTED`,
    /// `FAILED`, `CANCELED`, `SUCCEED`), or `UNKNOWN`.
    pub const fn agent_req_status_name(status: u32) -> &'static str {
        match status {
            ARS_WAITING => "WAITING",
            ARS_STARTED => "STARTED",
            ARS_FAILED => "FAILED",
            ARS_CANCELED => "CANCELED",
            ARS_SUCCEED => "SUCCEED",
            _ => "UNKNOWN",
        }
    }

    /// The `agent_req_status` for a printed name (case-insensitive).
    pub fn agent_req_status_from_name(name: &str) -> Option<u32> {
        [
            ARS_WAITING,
            ARS_STARTED,
            ARS_FAILED,
            ARS_CANCELED,
            ARS_SUCCEED,
        ]
        .into_iter()
        .find(|&s| agent_req_status_name(s).eq_ignore_ascii_case(name))
    }

    /// The name of an `hsm_progress_states` value (`NONE`, `WAITING`,
    /// `RUNNING`, `DONE`), or `UNKNOWN`.
    pub const fn hsm_progress_state_name(state: u32) -> &'static str {
        match state {
            HPS_NONE => "NONE",
            HPS_WAITING => "WAITING",
            HPS_RUNNING => "RUNNING",
            HPS_DONE => "DONE",
            _ => "UNKNOWN",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::flags::*;
    use super::*;

    #[test]
    fn values_and_names() {
        let all = [
            (HsmAction::None, 10, "NOOP"),
            (HsmAction::Archive, 20, "ARCHIVE"),
            (HsmAction::Restore, 21, "RESTORE"),
            (HsmAction::Remove, 22, "REMOVE"),
            (HsmAction::Cancel, 23, "CANCEL"),
        ];
        for (a, v, n) in all {
            assert_eq!(a.as_u32(), v);
            assert_eq!(HsmAction::from_u32(v), a);
            assert_eq!(a.name(), n);
            assert_eq!(a.to_string(), n);
            assert_eq!(n.parse::<HsmAction>(), Ok(a));
            assert_eq!(n.to_lowercase().parse::<HsmAction>(), Ok(a));
        }
        assert_eq!(HsmAction::from_u32(99), HsmAction::Unknown(99));
        assert_eq!(HsmAction::Unknown(99).as_u32(), 99);
        assert_eq!(HsmAction::Unknown(99).name(), "UNKNOWN");
        // An Unknown holding a known value still names that value.
        assert_eq!(HsmAction::Unknown(20).name(), "ARCHIVE");
        assert!("UNKNOWN".parse::<HsmAction>().is_err());
        assert!("archiv".parse::<HsmAction>().is_err());
    }

    #[test]
    fn status_names() {
        assert_eq!(agent_req_status_name(ARS_SUCCEED), "SUCCEED");
        assert_eq!(agent_req_status_name(9), "UNKNOWN");
        assert_eq!(agent_req_status_from_name("canceled"), Some(ARS_CANCELED));
        assert_eq!(agent_req_status_from_name("nope"), None);
        assert_eq!(hsm_progress_state_name(HPS_RUNNING), "RUNNING");
        assert_eq!(HSM_USER_MASK, 0x32);
        assert_eq!(HSM_STATUS_MASK, 0x1cd);
    }
}
