//! End-to-end tests of the binary as a whole: `stratus config check`, flags, `stratus up`, and a
//! user journey through every part.

#[path = "../support/mod.rs"]
mod support;

mod config_check;
mod house;
mod journey;
mod up;
