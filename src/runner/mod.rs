//! The scenario runner: one world per strategy, in virtual time.

pub mod traffic;
