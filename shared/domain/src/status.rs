//! Status machines: every closed set of statuses declares its legal transitions.

use serde::Serialize;
use std::fmt::Debug;

/// An attempted move between two statuses that the machine does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("illegal {machine} transition: {from} -> {to}")]
pub struct IllegalTransition {
    /// Which machine (e.g. `sync operation`).
    pub machine: &'static str,
    /// The current status.
    pub from: String,
    /// The refused target status.
    pub to: String,
}

/// A status with a fixed set of legal transitions.
pub trait StatusMachine: Copy + Eq + Debug + Serialize {
    /// The machine's name, for errors.
    const MACHINE: &'static str;

    /// Whether `self -> to` is allowed. Staying in the same status is never a transition.
    fn allows(self, to: Self) -> bool;

    /// Whether no transition leaves this status.
    fn is_terminal(self) -> bool;

    /// Moves `self` to `to`, or explains why it cannot.
    fn transition(&mut self, to: Self) -> Result<(), IllegalTransition> {
        if self.allows(to) {
            *self = to;
            Ok(())
        } else {
            Err(IllegalTransition {
                machine: Self::MACHINE,
                from: status_name(*self),
                to: status_name(to),
            })
        }
    }
}

/// The serialized (snake_case) name of a status.
pub fn status_name<S: Serialize + Debug>(status: S) -> String {
    match serde_json::to_value(&status) {
        Ok(serde_json::Value::String(name)) => name,
        _ => format!("{status:?}"),
    }
}
