//! Roles and the permissions they grant (CONTRACT §4). The gateway decides with this table;
//! services use it again for checks that need the resource (tenant scoping).

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A role held by a user or a machine credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Role {
    #[serde(rename = "operator.user")]
    OperatorUser,
    #[serde(rename = "operator.admin")]
    OperatorAdmin,
    /// Machines: application tokens and API credentials.
    #[serde(rename = "operator.application")]
    OperatorApplication,
    #[serde(rename = "registry.user")]
    RegistryUser,
    #[serde(rename = "registry.admin")]
    RegistryAdmin,
    #[serde(rename = "registry.security")]
    RegistrySecurity,
}

/// What a route requires. One variant per row of the CONTRACT §4 table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Permission {
    /// journeys create, patch, cancel; CEE all
    JourneysWrite,
    /// journeys status and list
    JourneysRead,
    /// applications create, revoke
    ApplicationsManage,
    /// applications list
    ApplicationsList,
    /// credentials create, list, delete
    Credentials,
    /// operators admin (`/admin/operators`)
    OperatorsAdmin,
    /// an operator's users (`/admin/operators/{id}/users`): registry admins for any operator,
    /// operator admins for their own (the service checks which operator)
    UsersManage,
    /// blacklist and audit
    Blacklist,
    /// signing keys: list, rotate (`/admin/keys`)
    Keys,
    /// incentive campaigns (`/admin/campaigns`)
    Campaigns,
    /// any signed-in identity (profile, sign out)
    SignedIn,
}

impl Role {
    pub const ALL: [Role; 6] = [
        Role::OperatorUser,
        Role::OperatorAdmin,
        Role::OperatorApplication,
        Role::RegistryUser,
        Role::RegistryAdmin,
        Role::RegistrySecurity,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::OperatorUser => "operator.user",
            Role::OperatorAdmin => "operator.admin",
            Role::OperatorApplication => "operator.application",
            Role::RegistryUser => "registry.user",
            Role::RegistryAdmin => "registry.admin",
            Role::RegistrySecurity => "registry.security",
        }
    }

    /// Operator roles belong to one operator and see only its data.
    pub fn is_operator(self) -> bool {
        matches!(
            self,
            Role::OperatorUser | Role::OperatorAdmin | Role::OperatorApplication
        )
    }

    pub fn grants(self, permission: Permission) -> bool {
        PERMISSIONS
            .iter()
            .any(|(p, roles)| *p == permission && roles.contains(&self))
    }
}

impl Permission {
    /// The stable name of a permission, as `GET /profile` lists the caller's (the console
    /// shows a page only when the role holds its permission).
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::JourneysWrite => "journeys.write",
            Permission::JourneysRead => "journeys.read",
            Permission::ApplicationsManage => "applications.manage",
            Permission::ApplicationsList => "applications.list",
            Permission::Credentials => "credentials",
            Permission::OperatorsAdmin => "operators.admin",
            Permission::UsersManage => "users.manage",
            Permission::Blacklist => "blacklist",
            Permission::Keys => "keys",
            Permission::Campaigns => "campaigns",
            Permission::SignedIn => "signed_in",
        }
    }
}

impl Role {
    /// The permissions this role holds, in the order of [`PERMISSIONS`].
    pub fn permissions(self) -> impl Iterator<Item = Permission> {
        PERMISSIONS
            .iter()
            .filter(move |(_, roles)| roles.contains(&self))
            .map(|(permission, _)| *permission)
    }
}

/// CONTRACT §4 as data: each permission and the roles that hold it. [`Role::grants`] reads
/// it; the contract test below compares it row by row with the published table.
pub const PERMISSIONS: &[(Permission, &[Role])] = {
    use Permission::*;
    use Role::*;
    &[
        (JourneysWrite, &[OperatorApplication, OperatorAdmin]),
        (JourneysRead, &Role::ALL),
        (ApplicationsManage, &[OperatorAdmin]),
        (ApplicationsList, &[OperatorUser, OperatorAdmin]),
        (Credentials, &[OperatorAdmin, RegistryAdmin]),
        (OperatorsAdmin, &[RegistryAdmin]),
        (UsersManage, &[RegistryAdmin, OperatorAdmin]),
        (Blacklist, &[RegistrySecurity, RegistryAdmin]),
        (Keys, &[RegistryAdmin]),
        (Campaigns, &[RegistryAdmin]),
        (SignedIn, &Role::ALL),
    ]
};

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unknown role {0:?}")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| UnknownRole(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_names_round_trip_through_str_and_serde() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>().unwrap(), role);
            let json = serde_json::to_string(&role).unwrap();
            assert_eq!(json, format!("\"{}\"", role.as_str()));
        }
        assert!("operator.root".parse::<Role>().is_err());
    }

    #[test]
    fn permission_table_matches_the_contract() {
        use Permission::*;
        use Role::*;
        let table: &[(Permission, &[Role])] = &[
            (JourneysWrite, &[OperatorApplication, OperatorAdmin]),
            (JourneysRead, &Role::ALL),
            (ApplicationsManage, &[OperatorAdmin]),
            (ApplicationsList, &[OperatorUser, OperatorAdmin]),
            (Credentials, &[OperatorAdmin, RegistryAdmin]),
            (OperatorsAdmin, &[RegistryAdmin]),
            (UsersManage, &[RegistryAdmin, OperatorAdmin]),
            (Blacklist, &[RegistrySecurity, RegistryAdmin]),
            (Keys, &[RegistryAdmin]),
            (Campaigns, &[RegistryAdmin]),
            (SignedIn, &Role::ALL),
        ];
        assert_eq!(table.len(), PERMISSIONS.len(), "one row per permission");
        for (permission, allowed) in table {
            for role in Role::ALL {
                assert_eq!(
                    role.grants(*permission),
                    allowed.contains(&role),
                    "{role} / {permission:?}"
                );
            }
        }
    }

    #[test]
    fn permission_names_are_distinct_and_roles_list_what_they_are_granted() {
        let names: std::collections::HashSet<&str> =
            PERMISSIONS.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(names.len(), PERMISSIONS.len());
        let security: Vec<&str> = Role::RegistrySecurity
            .permissions()
            .map(Permission::as_str)
            .collect();
        assert_eq!(security, ["journeys.read", "blacklist", "signed_in"]);
        for role in Role::ALL {
            for (permission, _) in PERMISSIONS {
                assert_eq!(
                    role.permissions().any(|p| p == *permission),
                    role.grants(*permission),
                    "{role} / {permission:?}"
                );
            }
        }
    }
}
