//! The access rules, read from the OpenAPI document: the documented operation a request is
//! for, and the role it needs.

use axum::http::Method;
use shopsync_domain::Role;
use std::sync::OnceLock;

/// Who may call an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone, without an identity (an empty security requirement).
    Anyone,
    /// Someone with at least this role (a `bearer` requirement whose scope is the role).
    Role(Role),
}

/// One documented operation.
#[derive(Debug, Clone)]
pub struct Rule {
    /// HTTP method.
    pub method: Method,
    /// Path template, split into segments (`{name}` for a parameter).
    pub segments: Vec<String>,
    /// Who may call it; `None` when the document names no rule for it.
    pub access: Option<Access>,
}

/// Every documented operation's rule.
#[derive(Debug, Clone, Default)]
pub struct Rules(pub Vec<Rule>);

/// The rules of [`crate::openapi`], read once.
pub fn rules() -> &'static Rules {
    static RULES: OnceLock<Rules> = OnceLock::new();
    RULES.get_or_init(|| Rules::of(&serde_json::to_value(crate::openapi()).unwrap_or_default()))
}

/// The access an operation's `security` names: an empty requirement is anyone; a `bearer`
/// requirement with one role as its scope is that role; anything else (or nothing) is no rule.
fn access_of(operation: &serde_json::Value) -> Option<Access> {
    let requirements = operation.get("security")?.as_array()?;
    let mut access = None;
    for requirement in requirements {
        let requirement = requirement.as_object()?;
        if requirement.is_empty() {
            return Some(Access::Anyone);
        }
        let scopes = requirement.get("bearer")?.as_array()?;
        let role = match scopes.as_slice() {
            [scope] => Role::parse(scope.as_str()?)?,
            _ => return None,
        };
        access = Some(Access::Role(role));
    }
    access
}

impl Rules {
    /// The rules of a document (as JSON).
    pub fn of(document: &serde_json::Value) -> Self {
        let mut rules = Vec::new();
        let Some(paths) = document.get("paths").and_then(|p| p.as_object()) else {
            return Self(rules);
        };
        for (template, item) in paths {
            let Some(item) = item.as_object() else {
                continue;
            };
            for (name, operation) in item {
                let Ok(method) = Method::from_bytes(name.to_ascii_uppercase().as_bytes()) else {
                    continue;
                };
                if !operation.is_object() || name == "parameters" {
                    continue;
                }
                rules.push(Rule {
                    method,
                    segments: template
                        .trim_matches('/')
                        .split('/')
                        .map(str::to_owned)
                        .collect(),
                    access: access_of(operation),
                });
            }
        }
        Self(rules)
    }

    /// The documented operation a request is for: the operation of that method whose
    /// template matches the path, a parameter taking one or more segments (a product's GID
    /// comes with its slashes), the one with the most fixed segments winning.
    pub fn find(&self, method: &Method, path: &str) -> Found {
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let mut path_known = false;
        let mut best: Option<&Rule> = None;
        for rule in self
            .0
            .iter()
            .filter(|rule| matches(&rule.segments, &segments))
        {
            path_known = true;
            let fixed = |r: &Rule| r.segments.iter().filter(|s| !is_param(s)).count();
            if rule.method == *method && best.is_none_or(|b| fixed(rule) > fixed(b)) {
                best = Some(rule);
            }
        }
        match best {
            Some(rule) => Found::Operation(rule.access),
            None if path_known => Found::OtherMethods,
            None => Found::Nothing,
        }
    }
}

/// What the document says of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// A documented operation, with its rule (`None`: it names none).
    Operation(Option<Access>),
    /// The path is documented, for other methods.
    OtherMethods,
    /// No documented path.
    Nothing,
}

fn is_param(segment: &str) -> bool {
    segment.starts_with('{') && segment.ends_with('}')
}

/// Whether a template's segments match a path's; a parameter takes one or more segments.
fn matches(template: &[String], path: &[&str]) -> bool {
    match (template.split_first(), path.split_first()) {
        (None, None) => true,
        (Some((first, rest)), Some((segment, remaining))) if !is_param(first) => {
            first == segment && matches(rest, remaining)
        }
        (Some((_, rest)), Some(_)) => (1..=path.len()).any(|taken| matches(rest, &path[taken..])),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_request_finds_its_operation_with_gids_and_fixed_segments_first() {
        let rules = Rules::of(&json!({"paths": {
            "/api/v1/products/{id}": {"get": {"security": [{"bearer": ["viewer"]}]}, "patch": {"security": [{"bearer": ["operator"]}]}},
            "/api/v1/products/{id}/lock": {"delete": {"security": [{"bearer": ["operator"]}]}},
            "/api/v1/conflicts/resolve": {"post": {"security": [{"bearer": ["operator"]}]}},
            "/api/v1/conflicts/{id}": {"get": {"security": [{"bearer": ["viewer"]}]}},
            "/api/v1/openapi.json": {"get": {"security": [{}]}},
            "/api/v1/untold": {"get": {}},
            "/api/v1/odd": {"get": {"security": [{"bearer": ["viewer", "admin"]}]}}
        }}));
        let get = Method::GET;
        let role = |role| Found::Operation(Some(Access::Role(role)));
        assert_eq!(
            rules.find(&get, "/api/v1/products/gid://shopify/Product/7"),
            role(Role::Viewer)
        );
        assert_eq!(
            rules.find(
                &Method::DELETE,
                "/api/v1/products/gid://shopify/Product/7/lock"
            ),
            role(Role::Operator)
        );
        assert_eq!(
            rules.find(&Method::PATCH, "/api/v1/products/123"),
            role(Role::Operator)
        );
        assert_eq!(
            rules.find(&Method::POST, "/api/v1/conflicts/resolve"),
            role(Role::Operator)
        );
        assert_eq!(
            rules.find(&get, "/api/v1/openapi.json"),
            Found::Operation(Some(Access::Anyone))
        );
        assert_eq!(rules.find(&get, "/api/v1/untold"), Found::Operation(None));
        assert_eq!(rules.find(&get, "/api/v1/odd"), Found::Operation(None));
        assert_eq!(rules.find(&get, "/api/v1/products"), Found::Nothing);
        assert_eq!(
            rules.find(&Method::POST, "/api/v1/products/1"),
            Found::OtherMethods
        );
    }
}
