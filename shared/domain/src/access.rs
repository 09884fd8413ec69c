//! Who may do what: the admin API's roles and the identity a request carries.
//!
//! Three roles, each including the one below it: a `viewer` reads; an `operator` also edits,
//! syncs, approves, rejects, cancels, resumes, resolves conflicts, restores and takes locks;
//! an `admin` also overrides others' locks and rolls operations back.

use crate::Actor;
use serde::{Deserialize, Serialize};
use std::fmt;

/// A role of the admin API, ordered by what it may do (`Viewer < Operator < Admin`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Reads everything but cost values.
    Viewer,
    /// Also changes the catalog and runs and settles operations.
    Operator,
    /// Also overrides others' locks and rolls operations back.
    Admin,
}

impl Role {
    /// Every role, lowest first.
    pub const ALL: [Role; 3] = [Role::Viewer, Role::Operator, Role::Admin];

    /// The role's name as the API and the settings spell it.
    pub fn name(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    /// Parses a role name, case-insensitively (`Admin`, `admin`); `None` for anything else.
    pub fn parse(name: &str) -> Option<Role> {
        Role::ALL
            .into_iter()
            .find(|role| role.name().eq_ignore_ascii_case(name.trim()))
    }

    /// The highest role among names (a user in several groups has the highest); names that
    /// are no role (other groups) are ignored.
    pub fn highest<'a>(names: impl IntoIterator<Item = &'a str>) -> Option<Role> {
        names.into_iter().filter_map(Role::parse).max()
    }

    /// Whether this role may do what `required` may.
    pub fn allows(self, required: Role) -> bool {
        self >= required
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why an identity cannot act through the API.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// No user name.
    #[error("the user name is empty")]
    EmptyUser,
    /// `system:` names are the system's own actors (scheduler, webhooks, imports); no person
    /// may act under one.
    #[error(
        "user `{0}` is refused: names starting with `system:` belong to shopsync's own actors"
    )]
    SystemName(String),
}

/// A person acting through the API: who (recorded on everything they write) and their role.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identity {
    /// The person, as recorded in `created_by`, `changed_by`, `resolved_by`, ...
    pub actor: Actor,
    /// What they may do.
    pub role: Role,
}

impl Identity {
    /// A person's identity; a `system:` name or an empty one is refused.
    pub fn person(user: &str, role: Role) -> Result<Self, IdentityError> {
        let user = user.trim();
        if user.is_empty() {
            return Err(IdentityError::EmptyUser);
        }
        if user
            .get(..7)
            .is_some_and(|prefix| prefix.eq_ignore_ascii_case("system:"))
        {
            return Err(IdentityError::SystemName(user.to_owned()));
        }
        let actor = Actor::new(user).map_err(|_| IdentityError::EmptyUser)?;
        Ok(Self { actor, role })
    }

    /// Whether this identity may do what `required` may.
    pub fn allows(&self, required: Role) -> bool {
        self.role.allows(required)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_include_the_ones_below_them() {
        assert!(Role::Admin.allows(Role::Operator) && Role::Admin.allows(Role::Viewer));
        assert!(Role::Operator.allows(Role::Viewer) && !Role::Operator.allows(Role::Admin));
        assert!(!Role::Viewer.allows(Role::Operator));
    }

    #[test]
    fn role_names_parse_in_any_case_and_a_list_takes_its_highest() {
        assert_eq!(Role::parse(" Operator "), Some(Role::Operator));
        assert_eq!(Role::parse("root"), None);
        assert_eq!(
            Role::highest(["staff", "viewer", "ADMIN", "operator"]),
            Some(Role::Admin)
        );
        assert_eq!(Role::highest(["staff"]), None);
        for role in Role::ALL {
            assert_eq!(Role::parse(&role.to_string()), Some(role));
        }
    }

    #[test]
    fn system_names_and_empty_names_are_no_person() {
        assert_eq!(
            Identity::person("System:scheduler", Role::Admin),
            Err(IdentityError::SystemName("System:scheduler".into()))
        );
        assert_eq!(
            Identity::person("  ", Role::Viewer),
            Err(IdentityError::EmptyUser)
        );
        let ana = Identity::person(" ana@example.com ", Role::Operator).unwrap();
        assert_eq!(ana.actor.as_str(), "ana@example.com");
        assert!(ana.allows(Role::Viewer) && !ana.allows(Role::Admin));
    }
}
