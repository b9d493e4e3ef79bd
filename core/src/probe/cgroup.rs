//! The memory limit of the cgroup this process runs in, v2 first, then v1.

use std::path::{Path, PathBuf};

use super::{LimitOrigin, parse_limit_value};

/// The lowest memory limit over this process's cgroup and its ancestors.
pub fn cgroup_limit() -> Option<(u64, LimitOrigin)> {
    cgroup_limit_at(Path::new("/"))
}

/// As [`cgroup_limit`], with every path read under `root` (a fixture tree in tests):
/// `root/proc/self/cgroup`, `root/proc/self/mountinfo` and the mount points they name.
pub fn cgroup_limit_at(root: &Path) -> Option<(u64, LimitOrigin)> {
    cgroup_limit_of(root, "proc/self")
}

/// The lowest memory limit over the cgroup of any process and its ancestors: `proc_dir` is
/// that process's procfs directory relative to `root` (`"proc/self"`, `"proc/1234"`), whose
/// `cgroup` and `mountinfo` name the cgroup and the mount points read under `root`.
pub fn cgroup_limit_of(root: &Path, proc_dir: &str) -> Option<(u64, LimitOrigin)> {
    let proc_dir = root.join(proc_dir);
    let cgroups = std::fs::read_to_string(proc_dir.join("cgroup")).ok()?;
    let mountinfo = std::fs::read_to_string(proc_dir.join("mountinfo")).ok()?;
    let mounts = parse_mountinfo(&mountinfo);

    // cgroup v2: "0::/path" and a cgroup2 mount.
    if let (Some(path), Some(m)) =
        (cgroups.lines().find_map(|l| l.strip_prefix("0::")), mounts.iter().find(|m| m.fstype == "cgroup2"))
        && let Some(v) = lowest_limit(root, m, path, "memory.max")
    {
        return Some((v, LimitOrigin::CgroupV2));
    }
    // cgroup v1: "N:memory:/path" (controllers may be joined: "N:cpu,memory:/path").
    let v1_path = cgroups.lines().find_map(|l| {
        let mut parts = l.splitn(3, ':');
        let (_, ctrls, path) = (parts.next()?, parts.next()?, parts.next()?);
        ctrls.split(',').any(|c| c == "memory").then_some(path)
    });
    let v1_mount = mounts.iter().find(|m| m.fstype == "cgroup" && m.super_opts.split(',').any(|o| o == "memory"));
    if let (Some(path), Some(m)) = (v1_path, v1_mount)
        && let Some(v) = lowest_limit(root, m, path, "memory.limit_in_bytes")
    {
        return Some((v, LimitOrigin::CgroupV1));
    }
    None
}

struct Mount<'a> {
    root: &'a str,
    point: &'a str,
    fstype: &'a str,
    super_opts: &'a str,
}

fn parse_mountinfo(text: &str) -> Vec<Mount<'_>> {
    text.lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let f: Vec<&str> = left.split(' ').collect();
            let r: Vec<&str> = right.split(' ').collect();
            Some(Mount {
                root: f.get(3)?,
                point: f.get(4)?,
                fstype: r.first()?,
                super_opts: r.get(2).copied().unwrap_or(""),
            })
        })
        .collect()
}

/// Walks from the process's cgroup directory up to the mount point, taking the lowest limit.
/// When the cgroup directory is not visible (a container with its own cgroup namespace
/// view), the mount point itself is the process's cgroup.
fn lowest_limit(root: &Path, m: &Mount<'_>, cg_path: &str, file: &str) -> Option<u64> {
    let rel = cg_path.strip_prefix(m.root).unwrap_or(cg_path).trim_start_matches('/');
    let mount_dir = under(root, m.point);
    let mut dir = mount_dir.join(rel);
    if !dir.is_dir() {
        dir = mount_dir.clone();
    }
    let mut lowest: Option<u64> = None;
    loop {
        if let Some(v) = std::fs::read_to_string(dir.join(file)).ok().and_then(|t| parse_limit_value(&t)) {
            lowest = Some(lowest.map_or(v, |l| l.min(v)));
        }
        if dir == mount_dir || !dir.pop() || !dir.starts_with(&mount_dir) {
            break;
        }
    }
    lowest
}

fn under(root: &Path, abs: &str) -> PathBuf {
    root.join(abs.trim_start_matches('/'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn write(root: &Path, rel: &str, text: &str) {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }

    const V2_MOUNT: &str = "30 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
    const V1_MOUNT: &str = "35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n";

    #[test]
    fn v2_takes_the_lowest_over_ancestors() {
        let t = tempfile::tempdir().unwrap();
        write(t.path(), "proc/self/cgroup", "0::/a/b\n");
        write(t.path(), "proc/self/mountinfo", V2_MOUNT);
        write(t.path(), "sys/fs/cgroup/a/memory.max", "1073741824\n");
        write(t.path(), "sys/fs/cgroup/a/b/memory.max", "max\n");
        assert_eq!(cgroup_limit_at(t.path()), Some((1 << 30, LimitOrigin::CgroupV2)));
        write(t.path(), "sys/fs/cgroup/a/b/memory.max", "536870912\n");
        assert_eq!(cgroup_limit_at(t.path()), Some((512 << 20, LimitOrigin::CgroupV2)));
    }

    #[test]
    fn v2_max_everywhere_is_no_limit_and_falls_to_v1() {
        let t = tempfile::tempdir().unwrap();
        write(t.path(), "proc/self/cgroup", "4:memory:/job\n0::/job\n");
        write(t.path(), "proc/self/mountinfo", &format!("{V2_MOUNT}{V1_MOUNT}"));
        write(t.path(), "sys/fs/cgroup/job/memory.max", "max\n");
        write(t.path(), "sys/fs/cgroup/memory/job/memory.limit_in_bytes", "268435456\n");
        write(t.path(), "sys/fs/cgroup/memory/memory.limit_in_bytes", "9223372036854771712\n");
        assert_eq!(cgroup_limit_at(t.path()), Some((256 << 20, LimitOrigin::CgroupV1)));
    }

    #[test]
    fn v1_unlimited_values_and_hidden_paths() {
        let t = tempfile::tempdir().unwrap();
        // The process's cgroup directory is not visible: the mount root is its cgroup.
        write(t.path(), "proc/self/cgroup", "4:cpu,memory:/hidden/x\n");
        write(t.path(), "proc/self/mountinfo", V1_MOUNT);
        write(t.path(), "sys/fs/cgroup/memory/memory.limit_in_bytes", "9223372036854771712\n");
        assert_eq!(cgroup_limit_at(t.path()), None);
        write(t.path(), "sys/fs/cgroup/memory/memory.limit_in_bytes", "0\n");
        assert_eq!(cgroup_limit_at(t.path()), None);
        write(t.path(), "sys/fs/cgroup/memory/memory.limit_in_bytes", "2147483648\n");
        assert_eq!(cgroup_limit_at(t.path()), Some((2 << 30, LimitOrigin::CgroupV1)));
    }

    #[test]
    fn nothing_mounted_is_none() {
        let t = tempfile::tempdir().unwrap();
        write(t.path(), "proc/self/cgroup", "0::/\n");
        write(t.path(), "proc/self/mountinfo", "");
        assert_eq!(cgroup_limit_at(t.path()), None);
        assert_eq!(cgroup_limit_at(&t.path().join("absent")), None);
    }

    #[test]
    fn the_real_machine_agrees_with_its_files() {
        // Whatever this machine has, the answer is either no cgroup limit or one
        // that is a real, finite number from the file the origin names.
        match cgroup_limit() {
            None => {}
            Some((v, origin)) => {
                assert!(v > 0 && v < super::super::UNLIMITED_FLOOR);
                assert!(matches!(origin, LimitOrigin::CgroupV1 | LimitOrigin::CgroupV2));
            }
        }
    }
}
