//! Readings of a pid (its resident memory, optionally summed over its process tree) or of
//! the whole system, with the limit that applies and where that limit came from.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use super::Sample;
use crate::error::{Error, ErrorKind, Result};
use crate::probe::{LimitOrigin, physical_memory};

/// What a [`Sampler`] watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// One process; with `children`, the sum over it and all its descendants.
    Pid { pid: u32, children: bool },
    /// The whole machine: `MemTotal - MemAvailable` from `/proc/meminfo`.
    System,
}

impl Target {
    /// `pid 123`, `pid 123 and children`, `system`.
    pub fn describe(&self) -> String {
        match *self {
            Target::Pid { pid, children: false } => format!("pid {pid}"),
            Target::Pid { pid, children: true } => format!("pid {pid} and children"),
            Target::System => "system".to_owned(),
        }
    }
}

/// Takes [`Sample`]s of a [`Target`]. The peak is the highest reading seen by this sampler,
/// raised to the kernel's `VmHWM` for a single process (which also catches peaks between samples).
pub struct Sampler {
    target: Target,
    proc_root: PathBuf,
    status: Option<File>,
    page_size: u64,
    started: Instant,
    started_unix_ms: u64,
    peak: u64,
    limit: u64,
    origin: LimitOrigin,
}

fn now_unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

fn gone(pid: u32) -> Error {
    Error::new(ErrorKind::NotFound, format!("process {pid} has exited"))
}

impl Sampler {
    /// Checks that the target can be read: a pid must exist, and unless we run as root, belong
    /// to our user (its memory figures are not ours to watch otherwise).
    pub fn new(target: Target) -> Result<Self> {
        if cfg!(not(target_os = "linux")) {
            return Err(Error::new(ErrorKind::Unsupported, "the monitor reads /proc and runs on Linux only"));
        }
        Self::with_roots(target, Path::new("/proc"), Path::new("/"))
    }

    /// As [`Sampler::new`] with procfs at `proc_root` and the cgroup tree under `fs_root`
    /// (fixture trees in tests).
    pub fn with_roots(target: Target, proc_root: &Path, fs_root: &Path) -> Result<Self> {
        // Safety: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        let page_size = if page > 0 { page as u64 } else { 4096 };
        let (status, limit, origin) = match target {
            Target::Pid { pid, children } => {
                let dir = proc_root.join(pid.to_string());
                let meta = std::fs::metadata(&dir).map_err(|_| {
                    Error::new(ErrorKind::NotFound, format!("no process with pid {pid} (nothing at {})", dir.display()))
                })?;
                check_owner(pid, &meta)?;
                let status = if children {
                    None
                } else {
                    Some(File::open(dir.join("status")).map_err(|e| Error::io(&format!("cannot read pid {pid}"), &e))?)
                };
                let (limit, origin) =
                    cgroup_limit_of_pid(&dir, fs_root).unwrap_or_else(|| (physical_memory(), LimitOrigin::Physical));
                (status, limit, origin)
            }
            Target::System => {
                let total = meminfo(proc_root)?.0;
                (None, total, LimitOrigin::Physical)
            }
        };
        Ok(Sampler {
            target,
            proc_root: proc_root.to_owned(),
            status,
            page_size,
            started: Instant::now(),
            started_unix_ms: now_unix_ms(),
            peak: 0,
            limit,
            origin,
        })
    }

    pub fn target(&self) -> Target {
        self.target
    }

    /// The limit in bytes and where it came from (cgroup of the pid, else physical memory).
    pub fn limit(&self) -> (u64, LimitOrigin) {
        (self.limit, self.origin)
    }

    /// Wall clock at construction, ms since the epoch.
    pub fn started_unix_ms(&self) -> u64 {
        self.started_unix_ms
    }

    /// Takes one reading. A pid that has exited (or is a zombie) is a `NotFound` error.
    pub fn sample(&mut self) -> Result<Sample> {
        let (current, hwm) = match self.target {
            Target::Pid { pid, children: false } => {
                let f = self.status.as_ref().expect("status kept for a single pid");
                let mut buf = [0u8; 4096];
                let n = f.read_at(&mut buf, 0).map_err(|_| gone(pid))?;
                let text = String::from_utf8_lossy(&buf[..n]);
                let rss = status_kb(&text, "VmRSS:").ok_or_else(|| gone(pid))? * 1024;
                (rss, status_kb(&text, "VmHWM:").map_or(0, |k| k * 1024))
            }
            Target::Pid { pid, children: true } => {
                let mut total = self.statm_bytes(pid).ok_or_else(|| gone(pid))?;
                for c in descendants(&self.proc_root, pid) {
                    total += self.statm_bytes(c).unwrap_or(0);
                }
                (total, 0)
            }
            Target::System => {
                let (total, available) = meminfo(&self.proc_root)?;
                (total.saturating_sub(available), 0)
            }
        };
        self.peak = self.peak.max(current).max(hwm);
        Ok(Sample {
            t: self.started.elapsed().as_secs_f64(),
            unix_ms: now_unix_ms(),
            current_bytes: current,
            peak_bytes: self.peak,
            limit_bytes: self.limit,
        })
    }

    fn statm_bytes(&self, pid: u32) -> Option<u64> {
        let text = std::fs::read_to_string(self.proc_root.join(pid.to_string()).join("statm")).ok()?;
        let pages: u64 = text.split_whitespace().nth(1)?.parse().ok()?;
        // A zombie has an all-zero statm: it holds no memory and counts as gone.
        if pages == 0 && text.split_whitespace().next() == Some("0") {
            return None;
        }
        Some(pages * self.page_size)
    }
}

fn check_owner(pid: u32, meta: &std::fs::Metadata) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    // Safety: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if me != 0 && meta.uid() != me {
        return Err(Error::new(
            ErrorKind::InvalidArgument,
            format!(
                "process {pid} belongs to another user (uid {}); memwarden watches only your own processes",
                meta.uid()
            ),
        ));
    }
    Ok(())
}

fn status_kb(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| l.strip_prefix(key)).and_then(|r| r.split_whitespace().next()?.parse().ok())
}

/// `(MemTotal, MemAvailable)` in bytes.
fn meminfo(proc_root: &Path) -> Result<(u64, u64)> {
    let path = proc_root.join("meminfo");
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&format!("cannot read {}", path.display()), &e))?;
    match (status_kb(&text, "MemTotal:"), status_kb(&text, "MemAvailable:")) {
        (Some(t), Some(a)) => Ok((t * 1024, a * 1024)),
        _ => Err(Error::new(ErrorKind::Io, format!("{} has no MemTotal/MemAvailable", path.display()))),
    }
}

/// Every descendant of `pid`, from `/proc/PID/task/*/children` (breadth first, each once).
fn descendants(proc_root: &Path, pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let mut queue = vec![pid];
    while let Some(p) = queue.pop() {
        let Ok(tasks) = std::fs::read_dir(proc_root.join(p.to_string()).join("task")) else { continue };
        for task in tasks.flatten() {
            let Ok(text) = std::fs::read_to_string(task.path().join("children")) else { continue };
            for c in text.split_whitespace().filter_map(|s| s.parse::<u32>().ok()) {
                if c != pid && !out.contains(&c) {
                    out.push(c);
                    queue.push(c);
                }
            }
        }
    }
    out
}

/// The lowest cgroup memory limit over the cgroup of the process whose procfs directory is
/// `proc_dir` and its ancestors (the probe's reader, with mount points from the process's own
/// `mountinfo`), for a `proc_dir` under `fs_root`. `None` when no cgroup limits it.
pub fn cgroup_limit_of_pid(proc_dir: &Path, fs_root: &Path) -> Option<(u64, LimitOrigin)> {
    let rel = proc_dir.strip_prefix(fs_root).ok()?;
    crate::probe::cgroup_limit_of(fs_root, rel.to_str()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    const V2_MOUNT: &str = "30 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
    const V1_MOUNT: &str = "35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n";

    fn write(root: &Path, rel: &str, text: &str) {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }

    #[test]
    fn cgroup_v2_lowest_over_ancestors_then_v1_then_none() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        write(r, "proc/42/cgroup", "0::/a/b\n");
        write(r, "proc/42/mountinfo", V2_MOUNT);
        write(r, "sys/fs/cgroup/a/memory.max", "1073741824\n");
        write(r, "sys/fs/cgroup/a/b/memory.max", "max\n");
        assert_eq!(cgroup_limit_of_pid(&r.join("proc/42"), r), Some((1 << 30, LimitOrigin::CgroupV2)));
        write(r, "proc/43/cgroup", "4:cpu,memory:/job\n");
        write(r, "proc/43/mountinfo", V1_MOUNT);
        write(r, "sys/fs/cgroup/memory/job/memory.limit_in_bytes", "268435456\n");
        assert_eq!(cgroup_limit_of_pid(&r.join("proc/43"), r), Some((256 << 20, LimitOrigin::CgroupV1)));
        write(r, "proc/44/cgroup", "0::/free\n");
        write(r, "proc/44/mountinfo", V2_MOUNT);
        assert_eq!(cgroup_limit_of_pid(&r.join("proc/44"), r), None);
    }

    #[test]
    fn fixture_pid_tree_and_system() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        let proc_root = r.join("proc");
        write(r, "proc/10/status", "Name:\tx\nVmHWM:\t  4096 kB\nVmRSS:\t  2048 kB\n");
        write(r, "proc/10/statm", "100 3 1 1 0 1 0\n");
        write(r, "proc/10/task/10/children", "11 12");
        write(r, "proc/11/statm", "100 2 1 1 0 1 0\n");
        write(r, "proc/12/statm", "100 1 1 1 0 1 0\n");
        write(r, "proc/12/task/12/children", "13\n");
        write(r, "proc/13/statm", "100 4 1 1 0 1 0\n");
        write(r, "proc/10/cgroup", "0::/\n");
        write(r, "proc/10/mountinfo", V2_MOUNT);
        write(r, "sys/fs/cgroup/memory.max", "536870912\n");
        write(r, "proc/meminfo", "MemTotal:  1000 kB\nMemFree: 10 kB\nMemAvailable:  400 kB\n");

        let mut one = Sampler::with_roots(Target::Pid { pid: 10, children: false }, &proc_root, r).unwrap();
        let s = one.sample().unwrap();
        assert_eq!((s.current_bytes, s.peak_bytes, s.limit_bytes), (2048 * 1024, 4096 * 1024, 512 << 20));
        assert_eq!(one.limit().1, LimitOrigin::CgroupV2);

        let mut tree = Sampler::with_roots(Target::Pid { pid: 10, children: true }, &proc_root, r).unwrap();
        assert_eq!(tree.sample().unwrap().current_bytes, 10 * tree.page_size);

        let mut sys = Sampler::with_roots(Target::System, &proc_root, r).unwrap();
        let s = sys.sample().unwrap();
        assert_eq!((s.current_bytes, s.limit_bytes), (600 * 1024, 1000 * 1024));

        let err = Sampler::with_roots(Target::Pid { pid: 99, children: false }, &proc_root, r).err().unwrap();
        assert_eq!(err.kind(), ErrorKind::NotFound);
        assert!(err.message().contains("no process with pid 99"), "{err}");
        // The process goes away (a zombie has no VmRSS line).
        write(r, "proc/10/status", "Name:\tx\nState:\tZ (zombie)\n");
        assert_eq!(one.sample().unwrap_err().kind(), ErrorKind::NotFound);
    }

    #[test]
    fn this_process_reads_like_its_own_status() {
        let mut s = Sampler::new(Target::Pid { pid: std::process::id(), children: false }).unwrap();
        let a = s.sample().unwrap();
        assert!(a.current_bytes > 0 && a.peak_bytes >= a.current_bytes && a.limit_bytes > 0);
        let b = s.sample().unwrap();
        assert!(b.t >= a.t && b.peak_bytes >= a.peak_bytes);
    }
}
