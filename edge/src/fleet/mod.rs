//! The edge as a member of a fleet: the admin API (`admin`), purge bodies resolved into store
//! targets (`purge`), following the control plane's log (`follow`) and what it drives
//! (`target`), and reloading sites from a file or a pushed configuration (`reload`).

pub(crate) mod admin;
pub(crate) mod follow;
pub(crate) mod follow_target;
pub(crate) mod inspect;
pub(crate) mod purge;
pub(crate) mod reload;
pub(crate) mod target;
