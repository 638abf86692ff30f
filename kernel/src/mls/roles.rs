//! Roles (admin, writer, reader) in a group-context extension, and who may commit what.
//!
//! Only admins change membership, roles or acceptors. Writers may rotate their own keys. Readers
//! commit nothing and send no application data: a read-only member's commit or message is
//! refused everywhere (others' commits still refresh the group's keys). A member
//! absent from the map is a writer. Acceptors and members apply the same rule to every commit,
//! so a commit every member would refuse is refused the same way everywhere.

use std::collections::BTreeMap;

use openmls::prelude::{
    Capabilities, Extension, ExtensionType, Extensions, GroupContext, ProposalType, RequiredCapabilitiesExtension,
    UnknownExtension,
};
use serde::{Deserialize, Serialize};

use crate::mls::member::MlsError;

/// The group-context extension type that carries [`GroupSettings`] (from the private-use range).
pub const ROLES_EXTENSION: u16 = 0xf1a0;

/// Acceptors a group's settings may name at most. A protocol constant, not a `Config` limit:
/// every member and acceptor must judge a settings commit the same way.
pub const SETTINGS_ACCEPTORS_MAX: usize = 15;

/// Everything a group decides about itself, in its group context: roles, how often each member
/// rotates its keys, and which acceptors order its log. Changing it is a commit (admins only).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupSettings {
    /// Who may do what.
    pub roles: Roles,
    /// Each member commits a fresh leaf key this often; 0 means never (only on demand).
    pub rotation_interval_ms: u64,
    /// The acceptors, once changed from the genesis set (`None`: the genesis set). A commit that
    /// changes them is chosen by the old set; the new set orders every later slot.
    pub acceptors: Option<crate::log::AcceptorSet>,
}

impl GroupSettings {
    /// Settings where `admin` is the only admin.
    pub fn founded_by(admin: &[u8], rotation_interval_ms: u64) -> GroupSettings {
        GroupSettings { roles: Roles::founded_by(admin), rotation_interval_ms, acceptors: None }
    }

    /// Reads the settings from a group context's extensions (none: nobody is an admin).
    pub fn from_extensions(extensions: &Extensions<GroupContext>) -> Result<GroupSettings, MlsError> {
        let settings: GroupSettings = match extensions.unknown(ROLES_EXTENSION) {
            Some(UnknownExtension(bytes)) => postcard::from_bytes(bytes).map_err(|_| MlsError::Malformed)?,
            None => GroupSettings::default(),
        };
        if settings.acceptors.as_ref().is_some_and(|set| !set.is_well_formed(SETTINGS_ACCEPTORS_MAX)) {
            return Err(MlsError::Malformed);
        }
        Ok(settings)
    }

    /// The group-context extensions that carry these settings.
    pub fn to_extensions(&self) -> Result<Extensions<GroupContext>, MlsError> {
        let bytes = postcard::to_allocvec(self).map_err(|error| MlsError::Internal(format!("{error:?}")))?;
        let required = RequiredCapabilitiesExtension::new(&[ExtensionType::Unknown(ROLES_EXTENSION)], &[], &[]);
        Extensions::from_vec(vec![
            Extension::RequiredCapabilities(required),
            Extension::Unknown(ROLES_EXTENSION, UnknownExtension(bytes)),
        ])
        .map_err(|error| MlsError::Internal(format!("{error:?}")))
    }
}

/// What a member may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Role {
    /// Changes membership, roles and acceptors; edits.
    Admin,
    /// Edits.
    Writer,
    /// Reads only.
    Reader,
}

/// Roles by member name (credential identity). Absent members are writers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Roles(BTreeMap<Vec<u8>, Role>);

impl Roles {
    /// Roles where `admin` is the only admin.
    pub fn founded_by(admin: &[u8]) -> Roles {
        Roles(BTreeMap::from([(admin.to_vec(), Role::Admin)]))
    }

    /// The role of `name`.
    pub fn of(&self, name: &[u8]) -> Role {
        self.0.get(name).copied().unwrap_or(Role::Writer)
    }

    /// These roles with `name` set to `role`.
    pub fn with(mut self, name: &[u8], role: Role) -> Roles {
        match role {
            Role::Writer => self.0.remove(name),
            other => self.0.insert(name.to_vec(), other),
        };
        self
    }
}

/// The capabilities every Plait leaf declares (so the roles extension can be required).
pub fn capabilities() -> Capabilities {
    Capabilities::new(None, None, Some(&[ExtensionType::Unknown(ROLES_EXTENSION)]), Some(&[] as &[ProposalType]), None)
}

/// What a commit changes, for authorisation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitSummary {
    /// The committer's name.
    pub committer: Vec<u8>,
    /// Members added.
    pub adds: Vec<Vec<u8>>,
    /// Members removed.
    pub removes: Vec<Vec<u8>>,
    /// Whether it changes the group context's extensions (roles, rotation, acceptors).
    pub changes_context: bool,
    /// Whether every context change carries well-formed settings (a commit that would leave the
    /// group unreadable is refused everywhere).
    pub context_is_valid: bool,
}

impl CommitSummary {
    /// Summarises a staged commit; `name_of` names the member at a leaf (before the commit).
    pub fn of(
        staged: &openmls::prelude::StagedCommit,
        committer: Vec<u8>,
        name_of: impl Fn(openmls::prelude::LeafNodeIndex) -> Option<Vec<u8>>,
    ) -> CommitSummary {
        let adds = staged
            .add_proposals()
            .map(|add| add.add_proposal().key_package().leaf_node().credential().serialized_content().to_vec())
            .collect();
        let removes = staged.remove_proposals().filter_map(|remove| name_of(remove.remove_proposal().removed())).collect();
        let contexts: Vec<bool> = staged
            .queued_proposals()
            .filter_map(|queued| match queued.proposal() {
                openmls::prelude::Proposal::GroupContextExtensions(proposal) => {
                    Some(GroupSettings::from_extensions(proposal.extensions()).is_ok())
                }
                _ => None,
            })
            .collect();
        let changes_context = !contexts.is_empty();
        let context_is_valid = contexts.iter().all(|valid| *valid);
        CommitSummary { committer, adds, removes, changes_context, context_is_valid }
    }
}

/// Whether `roles` allow the commit: membership and context changes need an admin.
pub fn authorize(commit: &CommitSummary, roles: &Roles) -> Result<(), MlsError> {
    if !commit.context_is_valid {
        return Err(MlsError::Rejected("the commit's group settings are malformed".into()));
    }
    let role = roles.of(&commit.committer);
    if role == Role::Reader {
        return Err(MlsError::Rejected(format!("{:?} may only read", String::from_utf8_lossy(&commit.committer))));
    }
    let needs_admin = !commit.adds.is_empty() || !commit.removes.is_empty() || commit.changes_context;
    if needs_admin && role != Role::Admin {
        return Err(MlsError::Rejected(format!("{:?} is not an admin", String::from_utf8_lossy(&commit.committer))));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_admins_change_membership_and_roles_round_trip() {
        let roles = Roles::founded_by(b"a").with(b"r", Role::Reader);
        assert_eq!(roles.of(b"a"), Role::Admin);
        assert_eq!(roles.of(b"w"), Role::Writer);
        let settings = GroupSettings { roles: roles.clone(), rotation_interval_ms: 60_000, acceptors: None };
        assert_eq!(GroupSettings::from_extensions(&settings.to_extensions().expect("valid")).expect("decodes"), settings);
        let add = CommitSummary {
            committer: b"w".to_vec(),
            adds: vec![b"x".to_vec()],
            removes: vec![],
            changes_context: false,
            context_is_valid: true,
        };
        assert!(authorize(&add, &roles).is_err());
        assert!(authorize(&CommitSummary { committer: b"a".to_vec(), ..add.clone() }, &roles).is_ok());
        let update = CommitSummary { committer: b"w".to_vec(), adds: vec![], removes: vec![], ..add.clone() };
        assert!(authorize(&update, &roles).is_ok(), "writers may rotate their own keys");
        let from_reader = CommitSummary { committer: b"r".to_vec(), ..update.clone() };
        assert!(authorize(&from_reader, &roles).is_err(), "readers commit nothing");
        let malformed = CommitSummary { committer: b"a".to_vec(), changes_context: true, context_is_valid: false, ..add };
        assert!(authorize(&malformed, &roles).is_err(), "not even an admin may commit malformed settings");
    }

    #[test]
    fn settings_naming_a_malformed_acceptor_set_do_not_decode() {
        use crate::ids::NodeId;
        let (first, second) = (NodeId::from_index(1), NodeId::from_index(2));
        for acceptors in [vec![], vec![second, first], vec![first, first]] {
            // Same layout as `GroupSettings`, but with an acceptor list `AcceptorSet::new` would refuse.
            let bytes = postcard::to_allocvec(&(Roles::founded_by(b"a"), 0u64, Some(acceptors))).expect("encodes");
            let extensions =
                Extensions::from_vec(vec![Extension::Unknown(ROLES_EXTENSION, UnknownExtension(bytes))]).expect("extensions");
            assert_eq!(GroupSettings::from_extensions(&extensions), Err(MlsError::Malformed));
        }
    }
}
