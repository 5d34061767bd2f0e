//! Who may act for whom (DESIGN §6): root may name any user with `--user`; a user who runs the CLI
//! through a sudo rule acts only on themself (`SUDO_USER`), so users can pair without ever seeing the
//! application secret.

use std::process::Command;

/// The identity the CLI acts with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// Root itself (not through sudo by another user).
    Root,
    /// A user acting through sudo: only on themself.
    SelfService(String),
}

/// Why the CLI refuses to act.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal(pub String);

impl Actor {
    /// Works out the actor from the effective uid and sudo's variables (which sudo sets itself).
    pub fn detect(euid: u32, sudo_user: Option<String>, sudo_uid: Option<String>) -> Result<Actor, Refusal> {
        if euid != 0 {
            return Err(Refusal(
                "lockserver needs root to reach the pairing store: run it as root, or through sudo".into(),
            ));
        }
        match (sudo_user, sudo_uid.as_deref()) {
            (Some(user), Some(uid)) if uid != "0" && !user.is_empty() => Ok(Actor::SelfService(user)),
            _ => Ok(Actor::Root),
        }
    }

    /// The user a command acts on, given its `--user` option.
    pub fn target(&self, requested: Option<&str>) -> Result<String, Refusal> {
        match (self, requested) {
            (Actor::Root, Some(user)) => Ok(user.to_string()),
            (Actor::Root, None) => Err(Refusal("as root, name the user with --user NAME".into())),
            (Actor::SelfService(me), None) => Ok(me.clone()),
            (Actor::SelfService(me), Some(user)) if user == me => Ok(me.clone()),
            (Actor::SelfService(me), Some(_)) => Err(Refusal(format!(
                "through sudo you may act only on yourself ({me}); drop --user"
            ))),
        }
    }

    /// Whether options that widen trust (another config owner, listing every user) are allowed.
    pub fn is_root(&self) -> bool {
        matches!(self, Actor::Root)
    }
}

/// Whether `user` is known to the system (passwd, LDAP, ... through NSS). `None` when `getent` is missing.
pub fn user_exists(user: &str) -> Option<bool> {
    let out = Command::new("getent").arg("passwd").arg("--").arg(user).output().ok()?;
    Some(out.status.success())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_root_is_refused() {
        assert!(Actor::detect(1000, None, None).is_err());
    }

    #[test]
    fn sudo_user_acts_only_on_self() {
        let a = Actor::detect(0, Some("alice".into()), Some("1000".into())).expect("actor");
        assert_eq!(a, Actor::SelfService("alice".into()));
        assert_eq!(a.target(None), Ok("alice".into()));
        assert_eq!(a.target(Some("alice")), Ok("alice".into()));
        assert!(a.target(Some("bob")).is_err());
        assert!(!a.is_root());
    }

    #[test]
    fn root_names_the_user() {
        let a = Actor::detect(0, Some("root".into()), Some("0".into())).expect("actor");
        assert_eq!(a, Actor::Root);
        assert!(a.target(None).is_err());
        assert_eq!(a.target(Some("bob")), Ok("bob".into()));
    }
}
