//! A user's groups through NSS (`getpwnam_r`, `getgrouplist`, `getgrgid_r`), so groups from LDAP or
//! SSSD count as local ones do. Used for `exempt_groups` / `require_groups`; the decision itself
//! ([`crate::login`]) only sees the names.

use std::ffi::{CStr, CString};

/// Most groups read for one user; NSS answers with more are cut here (and the lookup says so).
const MAX_GROUPS: usize = 4096;

/// The names of every group `user` belongs to (primary group included). An unknown user has none.
pub fn of_user(user: &str) -> Result<Vec<String>, String> {
    let name = CString::new(user).map_err(|_| "the user name holds a NUL byte".to_string())?;
    let Some(primary) = primary_gid(&name)? else {
        return Ok(Vec::new());
    };
    let mut gids: Vec<libc::gid_t> = vec![0; 64];
    loop {
        let mut count = libc::c_int::try_from(gids.len()).unwrap_or(libc::c_int::MAX);
        // SAFETY: `name` is a NUL-terminated string; `gids` has room for `count` entries, and
        // getgrouplist writes at most that many, setting `count` to how many there are.
        let rc = unsafe { libc::getgrouplist(name.as_ptr(), primary, gids.as_mut_ptr(), &mut count) };
        let count = usize::try_from(count).unwrap_or(0);
        if rc >= 0 {
            gids.truncate(count.min(gids.len()));
            break;
        }
        if gids.len() >= MAX_GROUPS {
            return Err(format!("{user} is in more than {MAX_GROUPS} groups"));
        }
        gids.resize(count.max(gids.len() * 2).min(MAX_GROUPS), 0);
    }
    let mut names = Vec::with_capacity(gids.len());
    for gid in gids {
        if let Some(n) = group_name(gid)? {
            names.push(n);
        }
    }
    Ok(names)
}

/// Whether NSS knows a group called `name`.
pub fn exists(name: &str) -> Result<bool, String> {
    let cname = CString::new(name).map_err(|_| "the group name holds a NUL byte".to_string())?;
    let mut buf = vec![0 as libc::c_char; 1024];
    loop {
        // SAFETY: all-zero is a valid `struct group` (null pointers, zero gid); it is only read
        // after getgrnam_r filled it.
        let mut group: libc::group = unsafe { std::mem::zeroed() };
        let mut found: *mut libc::group = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the call; `buf` is writable for `buf.len()` bytes.
        let rc = unsafe { libc::getgrnam_r(cname.as_ptr(), &mut group, buf.as_mut_ptr(), buf.len(), &mut found) };
        match rc {
            0 => return Ok(!found.is_null()),
            libc::ERANGE if buf.len() < 1 << 20 => buf.resize(buf.len() * 4, 0),
            e => return Err(format!("group lookup failed: {}", std::io::Error::from_raw_os_error(e))),
        }
    }
}

/// The primary gid of the user, `None` when NSS does not know the user.
fn primary_gid(name: &CStr) -> Result<Option<libc::gid_t>, String> {
    let mut buf = vec![0 as libc::c_char; 1024];
    loop {
        // SAFETY: all-zero is a valid `struct passwd`; it is only read after getpwnam_r filled it.
        let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the call; `buf` is writable for `buf.len()` bytes.
        let rc = unsafe { libc::getpwnam_r(name.as_ptr(), &mut pw, buf.as_mut_ptr(), buf.len(), &mut found) };
        match rc {
            0 if found.is_null() => return Ok(None),
            0 => return Ok(Some(pw.pw_gid)),
            libc::ERANGE if buf.len() < 1 << 20 => buf.resize(buf.len() * 4, 0),
            // Some NSS modules say "not found" with these.
            libc::ENOENT | libc::ESRCH | libc::EBADF | libc::EPERM => return Ok(None),
            e => return Err(format!("user lookup failed: {}", std::io::Error::from_raw_os_error(e))),
        }
    }
}

/// The name of group `gid`, `None` when NSS has no name for it.
fn group_name(gid: libc::gid_t) -> Result<Option<String>, String> {
    let mut buf = vec![0 as libc::c_char; 1024];
    loop {
        // SAFETY: all-zero is a valid `struct group`; it is only read after getgrgid_r filled it.
        let mut group: libc::group = unsafe { std::mem::zeroed() };
        let mut found: *mut libc::group = std::ptr::null_mut();
        // SAFETY: every pointer is valid for the call; `buf` is writable for `buf.len()` bytes.
        let rc = unsafe { libc::getgrgid_r(gid, &mut group, buf.as_mut_ptr(), buf.len(), &mut found) };
        match rc {
            0 if found.is_null() || group.gr_name.is_null() => return Ok(None),
            0 => {
                // SAFETY: getgrgid_r succeeded: gr_name points to a NUL-terminated string inside `buf`.
                let name = unsafe { CStr::from_ptr(group.gr_name) };
                return Ok(Some(name.to_string_lossy().into_owned()));
            }
            libc::ERANGE if buf.len() < 1 << 20 => buf.resize(buf.len() * 4, 0),
            e => return Err(format!("group lookup failed: {}", std::io::Error::from_raw_os_error(e))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_in_the_root_group() {
        let groups = of_user("root").expect("lookup");
        assert!(groups.iter().any(|g| g == "root"), "{groups:?}");
        assert!(exists("root").expect("lookup"));
    }

    #[test]
    fn unknown_user_and_group() {
        assert_eq!(
            of_user("no-such-user-lockserver").expect("lookup"),
            Vec::<String>::new()
        );
        assert!(!exists("no-such-group-lockserver").expect("lookup"));
        assert!(of_user("a\0b").is_err());
    }
}
