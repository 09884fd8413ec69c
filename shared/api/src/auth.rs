//! Who is asking: an identity from a bearer token (the local host) or from the claims of a
//! JWT that API Gateway's authorizer verified (Lambda).

use shopsync_domain::{Identity, Role};
use std::collections::HashMap;

/// How the API learns who is asking.
#[derive(Debug, Clone)]
pub enum Authenticator {
    /// `Authorization: Bearer <token>` against `SHOPSYNC_API_TOKENS` (`token:user:role,...`).
    Tokens(HashMap<String, Identity>),
    /// The claims of a verified JWT, which the host puts in the request's extensions as
    /// [`VerifiedClaims`]: the user from `user_claim`, the role from `role_claim` (a list
    /// takes its highest role).
    Claims {
        /// The claim naming the user (`SHOPSYNC_JWT_USER_CLAIM`, default `email`).
        user_claim: String,
        /// The claim holding the role or roles (`SHOPSYNC_JWT_ROLE_CLAIM`, default
        /// `cognito:groups`).
        role_claim: String,
    },
}

/// The claims of a JWT that the host's authorizer verified (API Gateway's JWT authorizer);
/// the API trusts them as they are.
#[derive(Debug, Clone, Default)]
pub struct VerifiedClaims(pub serde_json::Map<String, serde_json::Value>);

/// Why a request has no usable identity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// Nothing identifies the caller (401).
    #[error("{0}")]
    Unauthenticated(String),
    /// The caller is known but has no role here, or is not a person (403).
    #[error("{0}")]
    NoRole(String),
}

/// Why `SHOPSYNC_API_TOKENS` cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("SHOPSYNC_API_TOKENS: {0}")]
pub struct TokensError(String);

impl Authenticator {
    /// Tokens from `token:user:role,...`; an entry with another shape, an unknown role, a
    /// `system:` user or a token given twice is refused, naming the entry by position.
    pub fn tokens(text: &str) -> Result<Self, TokensError> {
        let mut tokens = HashMap::new();
        for (index, entry) in text.split(',').map(str::trim).enumerate() {
            if entry.is_empty() {
                continue;
            }
            let position = index + 1;
            let parts: Vec<&str> = entry.split(':').collect();
            // A user name may itself hold a colon (`system:x` is refused below), so the
            // token is the first part and the role the last.
            if parts.len() < 3 {
                return Err(TokensError(format!(
                    "entry {position} must be token:user:role (it has {} part(s))",
                    parts.len()
                )));
            }
            let token = parts[0].trim();
            let role_name = parts[parts.len() - 1];
            let user = parts[1..parts.len() - 1].join(":");
            if token.is_empty() {
                return Err(TokensError(format!("entry {position} has an empty token")));
            }
            let role = Role::parse(role_name).ok_or_else(|| {
                TokensError(format!(
                    "entry {position}: `{role_name}` is not a role (viewer, operator or admin)"
                ))
            })?;
            let identity = Identity::person(&user, role)
                .map_err(|e| TokensError(format!("entry {position}: {e}")))?;
            if tokens.insert(token.to_owned(), identity).is_some() {
                return Err(TokensError(format!(
                    "entry {position} repeats a token given before"
                )));
            }
        }
        Ok(Self::Tokens(tokens))
    }

    /// JWT claims with the claim names from the environment's settings (or the defaults).
    pub fn claims(user_claim: Option<String>, role_claim: Option<String>) -> Self {
        Self::Claims {
            user_claim: user_claim
                .filter(|c| !c.trim().is_empty())
                .unwrap_or_else(|| "email".into()),
            role_claim: role_claim
                .filter(|c| !c.trim().is_empty())
                .unwrap_or_else(|| "cognito:groups".into()),
        }
    }

    /// The people the tokens name, with their roles (for the host's start-up summary).
    pub fn token_holders(&self) -> Vec<&Identity> {
        match self {
            Self::Tokens(tokens) => {
                let mut holders: Vec<&Identity> = tokens.values().collect();
                holders.sort_by(|a, b| a.actor.cmp(&b.actor));
                holders
            }
            Self::Claims { .. } => Vec::new(),
        }
    }

    /// The identity of a request, from its `Authorization` header or its verified claims.
    pub fn identify(
        &self,
        authorization: Option<&str>,
        claims: Option<&VerifiedClaims>,
    ) -> Result<Identity, AuthError> {
        match self {
            Self::Tokens(tokens) => {
                let token = authorization
                    .and_then(|v| v.strip_prefix("Bearer "))
                    .map(str::trim);
                token.and_then(|t| tokens.get(t)).cloned().ok_or_else(|| {
                    AuthError::Unauthenticated(
                        "send Authorization: Bearer <token> (see SHOPSYNC_API_TOKENS)".into(),
                    )
                })
            }
            Self::Claims {
                user_claim,
                role_claim,
            } => {
                let claims = claims.ok_or_else(|| {
                    AuthError::Unauthenticated("the request carries no verified JWT".into())
                })?;
                let user = claims
                    .0
                    .get(user_claim)
                    .and_then(serde_json::Value::as_str)
                    .filter(|u| !u.trim().is_empty())
                    .ok_or_else(|| {
                        AuthError::Unauthenticated(format!(
                            "the token has no `{user_claim}` claim naming the user"
                        ))
                    })?;
                let names = claims.0.get(role_claim).map(role_names).unwrap_or_default();
                let role = Role::highest(names.iter().map(String::as_str)).ok_or_else(|| {
                    AuthError::NoRole(format!(
                        "{user} has no role (the `{role_claim}` claim names none of viewer, operator, admin)"
                    ))
                })?;
                Identity::person(user, role).map_err(|e| AuthError::NoRole(e.to_string()))
            }
        }
    }
}

/// The names a role claim holds: a JSON list, or a string as API Gateway passes a list
/// claim on (`[viewer operator]`), or a single name, or names separated by commas.
fn role_names(value: &serde_json::Value) -> Vec<String> {
    match value {
        serde_json::Value::Array(items) => items
            .iter()
            .filter_map(|item| item.as_str().map(str::to_owned))
            .collect(),
        serde_json::Value::String(text) => text
            .trim()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|name| !name.is_empty())
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(value: serde_json::Value) -> VerifiedClaims {
        VerifiedClaims(value.as_object().cloned().unwrap_or_default())
    }

    #[test]
    fn tokens_name_a_person_and_a_role_and_refuse_system_users() {
        let auth = Authenticator::tokens("t1:ana:operator, t2:bo:Viewer").unwrap();
        let ana = auth.identify(Some("Bearer t1"), None).unwrap();
        assert_eq!((ana.actor.as_str(), ana.role), ("ana", Role::Operator));
        assert_eq!(
            auth.identify(Some("Bearer t2"), None).unwrap().role,
            Role::Viewer
        );
        assert!(matches!(
            auth.identify(Some("Bearer nope"), None),
            Err(AuthError::Unauthenticated(_))
        ));
        assert!(matches!(
            auth.identify(None, None),
            Err(AuthError::Unauthenticated(_))
        ));
        for bad in [
            "t1:system:scheduler:admin",
            "t1:ana",
            "t1:ana:root",
            ":ana:admin",
            "t1:ana:admin,t1:bo:viewer",
        ] {
            assert!(Authenticator::tokens(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn claims_take_the_user_and_the_highest_role_in_any_list_form() {
        let auth = Authenticator::claims(None, None);
        for groups in [
            json!(["viewer", "operator"]),
            json!("[viewer operator]"),
            json!("operator"),
            json!("staff,operator"),
        ] {
            let who = auth
                .identify(
                    None,
                    Some(&claims(
                        json!({"email": "ana@x.io", "cognito:groups": groups}),
                    )),
                )
                .unwrap();
            assert_eq!((who.actor.as_str(), who.role), ("ana@x.io", Role::Operator));
        }
        assert!(matches!(
            auth.identify(None, Some(&claims(json!({"email": "ana@x.io"})))),
            Err(AuthError::NoRole(_))
        ));
        assert!(matches!(
            auth.identify(None, Some(&claims(json!({"cognito:groups": "admin"})))),
            Err(AuthError::Unauthenticated(_))
        ));
        assert!(matches!(
            auth.identify(None, None),
            Err(AuthError::Unauthenticated(_))
        ));
        assert!(matches!(
            auth.identify(
                None,
                Some(&claims(
                    json!({"email": "system:webhook", "cognito:groups": "admin"})
                ))
            ),
            Err(AuthError::NoRole(_))
        ));
        let custom = Authenticator::claims(Some("sub".into()), Some("roles".into()));
        let who = custom
            .identify(
                None,
                Some(&claims(json!({"sub": "u-1", "roles": ["admin"]}))),
            )
            .unwrap();
        assert_eq!((who.actor.as_str(), who.role), ("u-1", Role::Admin));
    }
}
