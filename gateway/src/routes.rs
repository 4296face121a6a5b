//! Which routes exist, where they go, which credentials they accept and which permission
//! they need. Plain functions over the method and path: no socket, no state.

use auth_token::Permission;
use http::Method;

/// The services behind the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upstream {
    AuthService,
    Registry,
}

impl Upstream {
    /// The audience of the identity assertion, as each upstream expects it.
    pub fn audience(self) -> &'static str {
        match self {
            Upstream::AuthService => "auth-service",
            Upstream::Registry => "registry",
        }
    }
}

/// Which credentials a route accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone; a credential, if sent, is ignored.
    Public,
    /// Operator API routes: application tokens, API access tokens, signed-in agents and
    /// browser sessions.
    OperatorApi,
    /// People: signed-in agents and browser sessions.
    User,
}

/// A matched route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Route template, the only path form used in metrics and logs.
    pub template: &'static str,
    pub upstream: Upstream,
    pub access: Access,
    pub permission: Option<Permission>,
    /// The `/{version}` segment, for routes that have one.
    pub version: Option<String>,
}

/// The gateway answers `GET /health` itself.
pub const HEALTH: &str = "/health";

/// The API description, served by the gateway itself (CONTRACT §11).
pub const OPENAPI_JSON: &str = "/openapi.json";
pub const OPENAPI_YAML: &str = "/openapi.yaml";

/// Browser sign-in: public, but it sets cookies, so cross-site attempts are refused.
pub const PROFILE_SIGNIN: &str = "/profile/signin";

/// One route of the table, as [`route`] matches it: the API description (`api-doc`) is
/// built from these, and a test holds [`TABLE`] and [`route`] to each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub method: &'static str,
    pub template: &'static str,
    pub upstream: Upstream,
    pub access: Access,
    pub permission: Option<Permission>,
}

const fn entry(
    method: &'static str,
    template: &'static str,
    upstream: Upstream,
    access: Access,
    permission: Option<Permission>,
) -> Entry {
    Entry {
        method,
        template,
        upstream,
        access,
        permission,
    }
}

/// Every route [`route`] knows, once per method. ([`HEALTH`] and the API description are
/// answered by the gateway itself.)
pub const TABLE: &[Entry] = {
    use Access::*;
    use Permission::*;
    use Upstream::*;
    &[
        entry("GET", "/.well-known/jwks.json", AuthService, Public, None),
        entry("POST", "/api/v1/auth/sign_in", AuthService, Public, None),
        entry(
            "DELETE",
            "/api/v1/auth/sign_out",
            AuthService,
            User,
            Some(SignedIn),
        ),
        entry("POST", "/api/v1/auth/token/", AuthService, Public, None),
        entry(
            "POST",
            "/api/v1/auth/token/refresh/",
            AuthService,
            Public,
            None,
        ),
        entry("POST", "/profile/signin", AuthService, Public, None),
        entry("GET", "/console/", AuthService, Public, None),
        entry("GET", "/console/{file}", AuthService, Public, None),
        entry(
            "POST",
            "/profile/signout",
            AuthService,
            User,
            Some(SignedIn),
        ),
        entry("GET", "/profile", AuthService, User, Some(SignedIn)),
        entry(
            "GET",
            "/admin/operators",
            AuthService,
            User,
            Some(OperatorsAdmin),
        ),
        entry(
            "POST",
            "/admin/operators",
            AuthService,
            User,
            Some(OperatorsAdmin),
        ),
        entry(
            "PATCH",
            "/admin/operators/{id}",
            AuthService,
            User,
            Some(OperatorsAdmin),
        ),
        entry(
            "GET",
            "/admin/operators/{id}/users",
            AuthService,
            User,
            Some(UsersManage),
        ),
        entry(
            "POST",
            "/admin/operators/{id}/users",
            AuthService,
            User,
            Some(UsersManage),
        ),
        entry(
            "DELETE",
            "/admin/operators/{id}/users/{uuid}",
            AuthService,
            User,
            Some(UsersManage),
        ),
        entry(
            "GET",
            "/admin/users",
            AuthService,
            User,
            Some(OperatorsAdmin),
        ),
        entry(
            "POST",
            "/admin/users",
            AuthService,
            User,
            Some(OperatorsAdmin),
        ),
        entry(
            "DELETE",
            "/admin/users/{uuid}",
            AuthService,
            User,
            Some(OperatorsAdmin),
        ),
        entry(
            "GET",
            "/admin/blacklist",
            AuthService,
            User,
            Some(Blacklist),
        ),
        entry(
            "POST",
            "/admin/blacklist",
            AuthService,
            User,
            Some(Blacklist),
        ),
        entry(
            "DELETE",
            "/admin/blacklist/{id}",
            AuthService,
            User,
            Some(Blacklist),
        ),
        entry("GET", "/admin/audit", AuthService, User, Some(Blacklist)),
        entry("GET", "/admin/signals", AuthService, User, Some(Blacklist)),
        entry(
            "POST",
            "/admin/signals/{id}/acknowledge",
            AuthService,
            User,
            Some(Blacklist),
        ),
        entry(
            "POST",
            "/admin/signals/{id}/dismiss",
            AuthService,
            User,
            Some(Blacklist),
        ),
        entry(
            "POST",
            "/admin/signals/{id}/blacklist",
            AuthService,
            User,
            Some(Blacklist),
        ),
        entry(
            "GET",
            "/admin/usage/{subject}/{id}",
            AuthService,
            User,
            Some(Blacklist),
        ),
        entry("GET", "/admin/keys", AuthService, User, Some(Keys)),
        entry("POST", "/admin/keys/rotate", AuthService, User, Some(Keys)),
        entry(
            "POST",
            "/applications",
            AuthService,
            User,
            Some(ApplicationsManage),
        ),
        entry(
            "GET",
            "/applications",
            AuthService,
            User,
            Some(ApplicationsList),
        ),
        entry(
            "DELETE",
            "/applications/{uuid}",
            AuthService,
            User,
            Some(ApplicationsManage),
        ),
        entry("GET", "/admin/campaigns", Registry, User, Some(Campaigns)),
        entry("POST", "/admin/campaigns", Registry, User, Some(Campaigns)),
        entry(
            "POST",
            "/journeys/push",
            Registry,
            OperatorApi,
            Some(JourneysWrite),
        ),
        entry(
            "POST",
            "/{version}/journeys",
            Registry,
            OperatorApi,
            Some(JourneysWrite),
        ),
        entry(
            "GET",
            "/{version}/journeys",
            Registry,
            OperatorApi,
            Some(JourneysRead),
        ),
        entry(
            "GET",
            "/{version}/journeys/{id}",
            Registry,
            OperatorApi,
            Some(JourneysRead),
        ),
        entry(
            "PATCH",
            "/{version}/journeys/{id}",
            Registry,
            OperatorApi,
            Some(JourneysWrite),
        ),
        entry(
            "POST",
            "/{version}/journeys/{id}",
            Registry,
            OperatorApi,
            Some(JourneysWrite),
        ),
        entry(
            "POST",
            "/{version}/journeys/{id}/cancel",
            Registry,
            OperatorApi,
            Some(JourneysWrite),
        ),
        entry(
            "POST",
            "/{version}/policies/cee",
            Registry,
            OperatorApi,
            Some(JourneysWrite),
        ),
        entry(
            "POST",
            "/{version}/policies/cee/simulate",
            Registry,
            OperatorApi,
            Some(JourneysWrite),
        ),
        entry(
            "POST",
            "/{version}/policies/cee/import",
            Registry,
            OperatorApi,
            Some(JourneysWrite),
        ),
        entry(
            "POST",
            "/{version}/policies/cee/import/identity",
            Registry,
            OperatorApi,
            Some(JourneysWrite),
        ),
        entry(
            "GET",
            "/{version}/policies/cee/public-key",
            Registry,
            Public,
            None,
        ),
        entry(
            "GET",
            "/{version}/policies/cee/{uuid}",
            Registry,
            OperatorApi,
            Some(JourneysWrite),
        ),
        entry(
            "DELETE",
            "/{version}/policies/cee/{uuid}",
            Registry,
            OperatorApi,
            Some(JourneysWrite),
        ),
        entry(
            "GET",
            "/{version}/exports/journeys",
            Registry,
            OperatorApi,
            Some(JourneysRead),
        ),
        entry(
            "POST",
            "/{version}/exports",
            Registry,
            OperatorApi,
            Some(JourneysRead),
        ),
        entry(
            "GET",
            "/{version}/exports/{uuid}",
            Registry,
            OperatorApi,
            Some(JourneysRead),
        ),
        entry(
            "GET",
            "/{version}/exports/{uuid}/download",
            Registry,
            OperatorApi,
            Some(JourneysRead),
        ),
        entry(
            "GET",
            "/{version}/funding-calls",
            Registry,
            OperatorApi,
            Some(JourneysRead),
        ),
        entry(
            "GET",
            "/{version}/auth/credentials",
            AuthService,
            User,
            Some(Credentials),
        ),
        entry(
            "POST",
            "/{version}/auth/credentials",
            AuthService,
            User,
            Some(Credentials),
        ),
        entry(
            "DELETE",
            "/{version}/auth/credentials",
            AuthService,
            User,
            Some(Credentials),
        ),
        entry(
            "POST",
            "/{version}/auth/access_token",
            AuthService,
            Public,
            None,
        ),
    ]
};

/// The methods `path` is a route with, in `Allow` order; empty when it is no route at all.
pub fn allowed_methods(path: &str) -> Vec<&'static str> {
    if [HEALTH, OPENAPI_JSON, OPENAPI_YAML].contains(&path) {
        return vec!["GET"];
    }
    let matched: Vec<(&'static str, usize)> = ["GET", "POST", "PUT", "PATCH", "DELETE"]
        .into_iter()
        .filter_map(|m| {
            let method = Method::from_bytes(m.as_bytes()).expect("a method");
            Some((m, route(&method, path)?.template.matches('{').count()))
        })
        .collect();
    // The most specific routes of the path: `/v3/policies/cee/import` is the import (POST),
    // though `GET` and `DELETE` of it reach `/{version}/policies/cee/{uuid}`.
    let fewest = matched.iter().map(|(_, n)| *n).min().unwrap_or_default();
    matched
        .into_iter()
        .filter(|(_, n)| *n == fewest)
        .map(|(m, _)| m)
        .collect()
}

/// More segments than any route has (`/api/v1/auth/token/refresh/` has six).
const MAX_SEGMENTS: usize = 8;

/// Matches `method` + `path` against the route table; `None` is a 404 `route_not_found`.
pub fn route(method: &Method, path: &str) -> Option<Route> {
    use Access::*;
    use Permission::*;
    use Upstream::*;
    // No route has more than MAX_SEGMENTS segments: a longer path is none, and the others
    // are split without allocating (issue 24).
    let mut segments = [""; MAX_SEGMENTS];
    let mut count = 0;
    for segment in path.strip_prefix('/')?.split('/') {
        *segments.get_mut(count)? = segment;
        count += 1;
    }
    let segments = &segments[..count];
    let m = method.as_str();
    let fixed = |template, upstream, access, permission| {
        Some(Route {
            template,
            upstream,
            access,
            permission,
            version: None,
        })
    };
    match (m, segments) {
        ("GET", [".well-known", "jwks.json"]) => {
            fixed("/.well-known/jwks.json", AuthService, Public, None)
        }
        ("POST", ["api", "v1", "auth", "sign_in"]) => {
            fixed("/api/v1/auth/sign_in", AuthService, Public, None)
        }
        ("DELETE", ["api", "v1", "auth", "sign_out"]) => {
            fixed("/api/v1/auth/sign_out", AuthService, User, Some(SignedIn))
        }
        ("POST", ["api", "v1", "auth", "token"] | ["api", "v1", "auth", "token", ""]) => {
            fixed("/api/v1/auth/token/", AuthService, Public, None)
        }
        (
            "POST",
            ["api", "v1", "auth", "token", "refresh"]
            | ["api", "v1", "auth", "token", "refresh", ""],
        ) => fixed("/api/v1/auth/token/refresh/", AuthService, Public, None),
        ("POST", ["profile", "signin"]) => fixed(PROFILE_SIGNIN, AuthService, Public, None),
        // The console's static files: public, the pages call the API with the session.
        ("GET", ["console"] | ["console", ""]) => fixed("/console/", AuthService, Public, None),
        ("GET", ["console", file]) if !file.is_empty() => {
            fixed("/console/{file}", AuthService, Public, None)
        }
        ("POST", ["profile", "signout"]) => {
            fixed("/profile/signout", AuthService, User, Some(SignedIn))
        }
        ("GET", ["profile"]) => fixed("/profile", AuthService, User, Some(SignedIn)),
        ("GET" | "POST", ["admin", "operators"]) => {
            fixed("/admin/operators", AuthService, User, Some(OperatorsAdmin))
        }
        ("PATCH", ["admin", "operators", id]) if is_id(id) => fixed(
            "/admin/operators/{id}",
            AuthService,
            User,
            Some(OperatorsAdmin),
        ),
        ("GET" | "POST", ["admin", "operators", id, "users"]) if is_id(id) => fixed(
            "/admin/operators/{id}/users",
            AuthService,
            User,
            Some(UsersManage),
        ),
        ("DELETE", ["admin", "operators", id, "users", user]) if is_id(id) && !user.is_empty() => {
            fixed(
                "/admin/operators/{id}/users/{uuid}",
                AuthService,
                User,
                Some(UsersManage),
            )
        }
        ("GET" | "POST", ["admin", "users"]) => {
            fixed("/admin/users", AuthService, User, Some(OperatorsAdmin))
        }
        ("DELETE", ["admin", "users", user]) if !user.is_empty() => fixed(
            "/admin/users/{uuid}",
            AuthService,
            User,
            Some(OperatorsAdmin),
        ),
        ("GET" | "POST", ["admin", "blacklist"]) => {
            fixed("/admin/blacklist", AuthService, User, Some(Blacklist))
        }
        ("DELETE", ["admin", "blacklist", id]) if !id.is_empty() => {
            fixed("/admin/blacklist/{id}", AuthService, User, Some(Blacklist))
        }
        ("GET", ["admin", "audit"]) => fixed("/admin/audit", AuthService, User, Some(Blacklist)),
        ("GET", ["admin", "signals"]) => {
            fixed("/admin/signals", AuthService, User, Some(Blacklist))
        }
        ("POST", ["admin", "signals", id, "acknowledge"]) if !id.is_empty() => fixed(
            "/admin/signals/{id}/acknowledge",
            AuthService,
            User,
            Some(Blacklist),
        ),
        ("POST", ["admin", "signals", id, "dismiss"]) if !id.is_empty() => fixed(
            "/admin/signals/{id}/dismiss",
            AuthService,
            User,
            Some(Blacklist),
        ),
        ("POST", ["admin", "signals", id, "blacklist"]) if !id.is_empty() => fixed(
            "/admin/signals/{id}/blacklist",
            AuthService,
            User,
            Some(Blacklist),
        ),
        ("GET", ["admin", "usage", subject, id]) if !subject.is_empty() && !id.is_empty() => fixed(
            "/admin/usage/{subject}/{id}",
            AuthService,
            User,
            Some(Blacklist),
        ),
        ("GET", ["admin", "keys"]) => fixed("/admin/keys", AuthService, User, Some(Keys)),
        ("POST", ["admin", "keys", "rotate"]) => {
            fixed("/admin/keys/rotate", AuthService, User, Some(Keys))
        }
        ("POST", ["applications"]) => {
            fixed("/applications", AuthService, User, Some(ApplicationsManage))
        }
        ("GET", ["applications"]) => {
            fixed("/applications", AuthService, User, Some(ApplicationsList))
        }
        ("DELETE", ["applications", id]) if !id.is_empty() => fixed(
            "/applications/{uuid}",
            AuthService,
            User,
            Some(ApplicationsManage),
        ),
        ("GET" | "POST", ["admin", "campaigns"]) => {
            fixed("/admin/campaigns", Registry, User, Some(Campaigns))
        }
        ("POST", ["journeys", "push"]) => {
            fixed("/journeys/push", Registry, OperatorApi, Some(JourneysWrite))
        }
        (_, [version, rest @ ..]) if is_version(version) => versioned(m, version, rest),
        _ => None,
    }
}

/// Routes under `/{version}/`: the operator API (registry) and API credentials
/// (auth-service).
fn versioned(method: &str, version: &str, rest: &[&str]) -> Option<Route> {
    use Access::*;
    use Permission::*;
    use Upstream::*;
    let (template, upstream, access, permission) = match (method, rest) {
        ("POST", ["journeys"]) => (
            "/{version}/journeys",
            Registry,
            OperatorApi,
            Some(JourneysWrite),
        ),
        ("GET", ["journeys"]) => (
            "/{version}/journeys",
            Registry,
            OperatorApi,
            Some(JourneysRead),
        ),
        ("GET", ["journeys", id]) if !id.is_empty() => (
            "/{version}/journeys/{id}",
            Registry,
            OperatorApi,
            Some(JourneysRead),
        ),
        ("PATCH" | "POST", ["journeys", id]) if !id.is_empty() => (
            "/{version}/journeys/{id}",
            Registry,
            OperatorApi,
            Some(JourneysWrite),
        ),
        ("POST", ["journeys", id, "cancel"]) if !id.is_empty() => (
            "/{version}/journeys/{id}/cancel",
            Registry,
            OperatorApi,
            Some(JourneysWrite),
        ),
        ("POST", ["policies", "cee"]) => (
            "/{version}/policies/cee",
            Registry,
            OperatorApi,
            Some(JourneysWrite),
        ),
        ("POST", ["policies", "cee", "simulate"]) => (
            "/{version}/policies/cee/simulate",
            Registry,
            OperatorApi,
            Some(JourneysWrite),
        ),
        ("POST", ["policies", "cee", "import"]) => (
            "/{version}/policies/cee/import",
            Registry,
            OperatorApi,
            Some(JourneysWrite),
        ),
        ("POST", ["policies", "cee", "import", "identity"]) => (
            "/{version}/policies/cee/import/identity",
            Registry,
            OperatorApi,
            Some(JourneysWrite),
        ),
        ("GET", ["policies", "cee", "public-key"]) => {
            ("/{version}/policies/cee/public-key", Registry, Public, None)
        }
        // The literal routes beside it are not applications: `DELETE .../cee/public-key`
        // is a 405, not an application named `public-key`.
        ("GET" | "DELETE", ["policies", "cee", id])
            if !id.is_empty() && !matches!(*id, "import" | "simulate" | "public-key") =>
        {
            (
                "/{version}/policies/cee/{uuid}",
                Registry,
                OperatorApi,
                Some(JourneysWrite),
            )
        }
        // Exports: the reference's `common.export.*`, every role (operator roles scoped to
        // their own operator by the registry).
        ("GET", ["exports", "journeys"]) => (
            "/{version}/exports/journeys",
            Registry,
            OperatorApi,
            Some(JourneysRead),
        ),
        ("POST", ["exports"]) => (
            "/{version}/exports",
            Registry,
            OperatorApi,
            Some(JourneysRead),
        ),
        ("GET", ["exports", id]) if !id.is_empty() => (
            "/{version}/exports/{uuid}",
            Registry,
            OperatorApi,
            Some(JourneysRead),
        ),
        ("GET", ["exports", id, "download"]) if !id.is_empty() => (
            "/{version}/exports/{uuid}/download",
            Registry,
            OperatorApi,
            Some(JourneysRead),
        ),
        ("GET", ["funding-calls"]) => (
            "/{version}/funding-calls",
            Registry,
            OperatorApi,
            Some(JourneysRead),
        ),
        ("GET" | "POST" | "DELETE", ["auth", "credentials"]) => (
            "/{version}/auth/credentials",
            AuthService,
            User,
            Some(Credentials),
        ),
        ("POST", ["auth", "access_token"]) => {
            ("/{version}/auth/access_token", AuthService, Public, None)
        }
        _ => return None,
    };
    Some(Route {
        template,
        upstream,
        access,
        permission,
        version: Some(version.to_owned()),
    })
}

fn is_id(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// A well-formed version segment: `v` then 1 to 3 dot-separated numbers (`v3`, `v3.2`, `v4`).
pub fn is_version(s: &str) -> bool {
    let Some(numbers) = s.strip_prefix('v') else {
        return false;
    };
    let parts: Vec<&str> = numbers.split('.').collect();
    parts.len() <= 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 4 && p.bytes().all(|b| b.is_ascii_digit()))
}

/// The served versions. `v3` stands for the newest `v3.x` served.
#[derive(Debug, Clone)]
pub struct Versions {
    served: Vec<String>,
    /// Each served version as an `X-API-Version` value, made once (issue 24).
    values: Vec<http::HeaderValue>,
    newest: String,
}

impl Versions {
    /// `served` like `["v3.2", "v3.3"]`; the newest is the greatest.
    pub fn new(served: &[String]) -> Option<Self> {
        let mut served: Vec<String> = served.iter().filter(|v| is_version(v)).cloned().collect();
        served.sort_by_key(|v| numeric(v));
        let newest = served.last()?.clone();
        let values = served
            .iter()
            .map(|v| http::HeaderValue::from_str(v).ok())
            .collect::<Option<_>>()?;
        Some(Self {
            served,
            values,
            newest,
        })
    }

    /// The `X-API-Version` value of a served version ([`Versions::resolve`]'s answer).
    pub fn header_value(&self, served: &str) -> Option<http::HeaderValue> {
        let at = self.served.iter().position(|v| v == served)?;
        self.values.get(at).cloned()
    }

    /// The served version a path or header names, resolving `v3` to the newest `v3.x`.
    /// The served version `named` designates: itself, or the newest `vX.y` for a major
    /// `vX`. The leading `v` may be left out (`X-API-Version: 3.3`).
    pub fn resolve(&self, named: &str) -> Option<&str> {
        fn bare(v: &str) -> &str {
            v.strip_prefix('v').unwrap_or(v)
        }
        let named = bare(named);
        if let Some(exact) = self.served.iter().find(|v| bare(v) == named) {
            return Some(exact.as_str());
        }
        self.served
            .iter()
            .rev()
            .find(|v| {
                bare(v)
                    .strip_prefix(named)
                    .is_some_and(|rest| rest.starts_with('.'))
            })
            .map(String::as_str)
    }

    pub fn newest(&self) -> &str {
        &self.newest
    }
}

fn numeric(v: &str) -> Vec<u32> {
    v.trim_start_matches('v')
        .split('.')
        .filter_map(|p| p.parse().ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A path [`route`] should match for `template`, each parameter given a plausible value.
    fn instance(template: &str) -> String {
        template
            .replace("{version}", "v3.3")
            .replace("{id}", "12")
            .replace("{uuid}", "0b7c4a8e-3b7e-4a3e-9d1c-2f6a1d5c9e01")
            .replace("{file}", "app.js")
            .replace("{subject}", "application")
    }

    fn method(m: &str) -> Method {
        Method::from_bytes(m.as_bytes()).unwrap()
    }

    #[test]
    fn the_table_is_every_route_and_only_those() {
        // Every entry is matched as the table says.
        for e in TABLE {
            let r = route(&method(e.method), &instance(e.template))
                .unwrap_or_else(|| panic!("{} {} is not routed", e.method, e.template));
            assert_eq!(
                (r.template, r.upstream, r.access, r.permission),
                (e.template, e.upstream, e.access, e.permission),
                "{} {}",
                e.method,
                e.template
            );
        }
        // Whatever `route` matches is in the table: every method on every path of up to
        // three segments built from the table's words, with and without a version.
        let mut words: Vec<String> = TABLE
            .iter()
            .flat_map(|e| {
                instance(e.template)
                    .split('/')
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .collect();
        words.sort();
        words.dedup();
        let mut paths: Vec<String> = TABLE.iter().map(|e| instance(e.template)).collect();
        for a in &words {
            paths.push(format!("/{a}"));
            for b in &words {
                paths.push(format!("/{a}/{b}"));
                for c in &words {
                    paths.push(format!("/{a}/{b}/{c}"));
                }
            }
        }
        let versioned: Vec<String> = paths.iter().map(|p| format!("/v3.3{p}")).collect();
        paths.extend(versioned);
        let methods = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];
        for path in &paths {
            for m in methods {
                let Some(r) = route(&method(m), path) else {
                    continue;
                };
                let listed = Entry {
                    method: m,
                    template: r.template,
                    upstream: r.upstream,
                    access: r.access,
                    permission: r.permission,
                };
                assert!(
                    TABLE.contains(&listed),
                    "{m} {path} is routed as {listed:?}, which the table does not list"
                );
            }
        }
    }

    #[test]
    fn routes_map_to_upstream_access_and_permission() {
        type Expected = Option<(&'static str, Upstream, Access)>;
        let cases: &[(&str, &str, Expected)] = &[
            (
                "POST",
                "/v3/journeys",
                Some((
                    "/{version}/journeys",
                    Upstream::Registry,
                    Access::OperatorApi,
                )),
            ),
            (
                "GET",
                "/v3.2/journeys/abc",
                Some((
                    "/{version}/journeys/{id}",
                    Upstream::Registry,
                    Access::OperatorApi,
                )),
            ),
            (
                "POST",
                "/v4/journeys",
                Some((
                    "/{version}/journeys",
                    Upstream::Registry,
                    Access::OperatorApi,
                )),
            ),
            (
                "POST",
                "/journeys/push",
                Some(("/journeys/push", Upstream::Registry, Access::OperatorApi)),
            ),
            (
                "POST",
                "/api/v1/auth/sign_in",
                Some((
                    "/api/v1/auth/sign_in",
                    Upstream::AuthService,
                    Access::Public,
                )),
            ),
            (
                "POST",
                "/admin/operators/12/users",
                Some((
                    "/admin/operators/{id}/users",
                    Upstream::AuthService,
                    Access::User,
                )),
            ),
            (
                "POST",
                "/profile/signin",
                Some(("/profile/signin", Upstream::AuthService, Access::Public)),
            ),
            (
                "POST",
                "/profile/signout",
                Some(("/profile/signout", Upstream::AuthService, Access::User)),
            ),
            (
                "GET",
                "/profile",
                Some(("/profile", Upstream::AuthService, Access::User)),
            ),
            ("GET", "/profile/signin", None),
            (
                "GET",
                "/console",
                Some(("/console/", Upstream::AuthService, Access::Public)),
            ),
            (
                "GET",
                "/console/",
                Some(("/console/", Upstream::AuthService, Access::Public)),
            ),
            (
                "GET",
                "/console/app.js",
                Some(("/console/{file}", Upstream::AuthService, Access::Public)),
            ),
            ("POST", "/console/", None),
            ("DELETE", "/console/app.js", None),
            ("GET", "/console/a/b.js", None),
            ("POST", "/admin/operators/x/users", None),
            (
                "PATCH",
                "/admin/operators/12",
                Some(("/admin/operators/{id}", Upstream::AuthService, Access::User)),
            ),
            ("PATCH", "/admin/operators/x", None),
            ("DELETE", "/admin/operators/12", None),
            (
                "GET",
                "/v3/auth/credentials",
                Some((
                    "/{version}/auth/credentials",
                    Upstream::AuthService,
                    Access::User,
                )),
            ),
            (
                "POST",
                "/v3.2/auth/credentials",
                Some((
                    "/{version}/auth/credentials",
                    Upstream::AuthService,
                    Access::User,
                )),
            ),
            (
                "DELETE",
                "/v3/auth/credentials",
                Some((
                    "/{version}/auth/credentials",
                    Upstream::AuthService,
                    Access::User,
                )),
            ),
            ("PATCH", "/v3/auth/credentials", None),
            (
                "POST",
                "/v3/auth/access_token",
                Some((
                    "/{version}/auth/access_token",
                    Upstream::AuthService,
                    Access::Public,
                )),
            ),
            ("GET", "/v3/auth/access_token", None),
            (
                "POST",
                "/api/v1/auth/token/",
                Some(("/api/v1/auth/token/", Upstream::AuthService, Access::Public)),
            ),
            (
                "POST",
                "/api/v1/auth/token",
                Some(("/api/v1/auth/token/", Upstream::AuthService, Access::Public)),
            ),
            (
                "POST",
                "/api/v1/auth/token/refresh/",
                Some((
                    "/api/v1/auth/token/refresh/",
                    Upstream::AuthService,
                    Access::Public,
                )),
            ),
            (
                "POST",
                "/api/v1/auth/token/refresh",
                Some((
                    "/api/v1/auth/token/refresh/",
                    Upstream::AuthService,
                    Access::Public,
                )),
            ),
            (
                "GET",
                "/v3/policies/cee/public-key",
                Some((
                    "/{version}/policies/cee/public-key",
                    Upstream::Registry,
                    Access::Public,
                )),
            ),
            // The key's path is not an application's: a DELETE of it is no route (405).
            ("DELETE", "/v3/policies/cee/public-key", None),
            ("GET", "/v3/policies/cee/import", None),
            (
                "POST",
                "/v3/policies/cee/import",
                Some((
                    "/{version}/policies/cee/import",
                    Upstream::Registry,
                    Access::OperatorApi,
                )),
            ),
            (
                "POST",
                "/v3.3/policies/cee/import/identity",
                Some((
                    "/{version}/policies/cee/import/identity",
                    Upstream::Registry,
                    Access::OperatorApi,
                )),
            ),
            ("GET", "/v3/policies/cee/import/identity", None),
            ("POST", "/v3/policies/cee/import/other", None),
            (
                "GET",
                "/admin/campaigns",
                Some(("/admin/campaigns", Upstream::Registry, Access::User)),
            ),
            ("DELETE", "/admin/campaigns", None),
            (
                "GET",
                "/v3/exports/journeys",
                Some((
                    "/{version}/exports/journeys",
                    Upstream::Registry,
                    Access::OperatorApi,
                )),
            ),
            ("POST", "/v3/exports/journeys", None),
            (
                "POST",
                "/v3/exports",
                Some((
                    "/{version}/exports",
                    Upstream::Registry,
                    Access::OperatorApi,
                )),
            ),
            ("GET", "/v3/exports", None),
            (
                "GET",
                "/v3.3/exports/8a9d2da9-39e3-4db7-be8e-12b4d2179fda",
                Some((
                    "/{version}/exports/{uuid}",
                    Upstream::Registry,
                    Access::OperatorApi,
                )),
            ),
            ("DELETE", "/v3/exports/8a9d2da9", None),
            (
                "GET",
                "/v3/exports/8a9d2da9/download",
                Some((
                    "/{version}/exports/{uuid}/download",
                    Upstream::Registry,
                    Access::OperatorApi,
                )),
            ),
            ("GET", "/v3/exports//download", None),
            ("POST", "/v3/exports/8a9d2da9/download", None),
            (
                "GET",
                "/v3/funding-calls",
                Some((
                    "/{version}/funding-calls",
                    Upstream::Registry,
                    Access::OperatorApi,
                )),
            ),
            ("GET", "/api/v1/auth/token/", None),
            ("POST", "/api/v1/auth/token/other", None),
            ("DELETE", "/v3/journeys", None),
            ("GET", "/nope", None),
            ("GET", "/vx/journeys", None),
            ("GET", "", None),
        ];
        for (method, path, expected) in cases {
            let got =
                route(&method.parse().unwrap(), path).map(|r| (r.template, r.upstream, r.access));
            assert_eq!(got, *expected, "{method} {path}");
        }
    }

    #[test]
    fn a_path_longer_than_every_route_is_none_and_the_longest_still_match() {
        let post = Method::POST;
        let longest = route(&post, "/api/v1/auth/token/refresh/").expect("the longest route");
        assert_eq!(longest.template, "/api/v1/auth/token/refresh/");
        assert!(route(&Method::GET, "/v3/journeys/a/b/c/d/e/f/g/h/i").is_none());
        assert!(route(&post, "/api/v1/auth/token/refresh//////").is_none());
        // A path cut at the limit is no route either: nothing beyond it is read as a match.
        assert!(route(&Method::GET, "/v3/journeys/x/status/a/b/c/d").is_none());
        assert!(allowed_methods("/v3/journeys/x/status/a/b/c/d/e/f").is_empty());
    }

    #[test]
    fn credential_routes_carry_their_permission_and_version() {
        use Permission::*;
        let cases: &[(&str, &str, Option<Permission>, Option<&str>)] = &[
            (
                "POST",
                "/v3/auth/credentials",
                Some(Credentials),
                Some("v3"),
            ),
            (
                "DELETE",
                "/v3.3/auth/credentials",
                Some(Credentials),
                Some("v3.3"),
            ),
            ("POST", "/v3/auth/access_token", None, Some("v3")),
            ("POST", "/api/v1/auth/token/", None, None),
            ("POST", "/api/v1/auth/token/refresh", None, None),
            ("PATCH", "/admin/operators/3", Some(OperatorsAdmin), None),
            ("POST", "/v3/journeys", Some(JourneysWrite), Some("v3")),
            ("POST", "/admin/campaigns", Some(Campaigns), None),
            ("GET", "/admin/campaigns", Some(Campaigns), None),
            (
                "GET",
                "/v3.2/exports/journeys",
                Some(JourneysRead),
                Some("v3.2"),
            ),
            ("GET", "/v3/funding-calls", Some(JourneysRead), Some("v3")),
            (
                "POST",
                "/v3/policies/cee/simulate",
                Some(JourneysWrite),
                Some("v3"),
            ),
            (
                "POST",
                "/v3/policies/cee/import",
                Some(JourneysWrite),
                Some("v3"),
            ),
            (
                "POST",
                "/v3.2/policies/cee/import/identity",
                Some(JourneysWrite),
                Some("v3.2"),
            ),
            ("POST", "/v3/exports", Some(JourneysRead), Some("v3")),
            ("GET", "/v3.3/exports/x", Some(JourneysRead), Some("v3.3")),
            (
                "GET",
                "/v3/exports/x/download",
                Some(JourneysRead),
                Some("v3"),
            ),
        ];
        for (method, path, permission, version) in cases {
            let r = route(&method.parse().unwrap(), path).unwrap();
            assert_eq!(r.permission, *permission, "{method} {path}");
            assert_eq!(r.version.as_deref(), *version, "{method} {path}");
        }
    }

    #[test]
    fn versions_resolve_major_aliases_and_refuse_others() {
        let v = Versions::new(&["v3.3".into(), "v3.2".into()]).unwrap();
        assert_eq!(v.newest(), "v3.3");
        assert_eq!(v.resolve("v3"), Some("v3.3"));
        assert_eq!(v.resolve("v3.2"), Some("v3.2"));
        assert_eq!(v.resolve("v3.1"), None);
        assert_eq!(v.resolve("v2"), None);
        assert_eq!(v.resolve("v4"), None);
        // As the `X-API-Version` header may name them.
        assert_eq!(v.resolve("3.2"), Some("v3.2"));
        assert_eq!(v.resolve("3"), Some("v3.3"));
        assert_eq!(v.resolve("3.1"), None);
        assert!(is_version("v3.3.0") && !is_version("v") && !is_version("3") && !is_version("v3."));
    }

    proptest::proptest! {
        /// Fuzzed paths (issue 26): any method and path is a route or none, never a panic; a
        /// route's template has as many segments as the path it matched.
        #[test]
        fn any_path_is_a_route_or_none(
            method in proptest::sample::select(vec!["GET", "POST", "PATCH", "PUT", "DELETE", "HEAD", "OPTIONS"]),
            segments in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::strategy::Just("v3".to_owned()),
                    proptest::strategy::Just("journeys".to_owned()),
                    proptest::strategy::Just("policies".to_owned()),
                    proptest::strategy::Just("cee".to_owned()),
                    proptest::strategy::Just("..".to_owned()),
                    "[ -~]{0,12}",
                ],
                0..6,
            ),
        ) {
            let path = format!("/{}", segments.join("/"));
            if let Some(matched) = route(&method.parse().unwrap(), &path) {
                proptest::prop_assert_eq!(
                    matched.template.split('/').count(),
                    path.split('/').count(),
                    "{} matched {}", path, matched.template
                );
            }
        }
    }
}
