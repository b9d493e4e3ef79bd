use crate::error::{Error, Result};

/// This process's resident memory.
///
/// On Linux the current size is one `pread` of `/proc/self/statm` on a
/// descriptor kept open (no open/close per reading); the peak is `VmHWM`
/// from `/proc/self/status`. Elsewhere sysinfo answers both.
pub struct ProcessProbe {
    #[cfg(target_os = "linux")]
    statm: std::fs::File,
    #[cfg(target_os = "linux")]
    status: std::fs::File,
    #[cfg(target_os = "linux")]
    page_size: u64,
    /// Set by `reset_peak`: from then on only `VmHWM` knows the peak (`ru_maxrss` is never reset).
    #[cfg(target_os = "linux")]
    peak_was_reset: std::sync::atomic::AtomicBool,
    #[cfg(not(target_os = "linux"))]
    sys: parking_lot::Mutex<sysinfo::System>,
}

#[cfg(target_os = "linux")]
impl ProcessProbe {
    pub fn new() -> Result<Self> {
        let statm =
            std::fs::File::open("/proc/self/statm").map_err(|e| Error::io("cannot open /proc/self/statm", &e))?;
        let status =
            std::fs::File::open("/proc/self/status").map_err(|e| Error::io("cannot open /proc/self/status", &e))?;
        // Safety: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        let page_size = if page > 0 { page as u64 } else { 4096 };
        Ok(ProcessProbe { statm, status, page_size, peak_was_reset: std::sync::atomic::AtomicBool::new(false) })
    }

    /// Resident set size in bytes, now.
    #[inline]
    pub fn current_bytes(&self) -> Result<u64> {
        use std::os::unix::fs::FileExt;
        let mut buf = [0u8; 256];
        let n = self.statm.read_at(&mut buf, 0).map_err(|e| Error::io("cannot read /proc/self/statm", &e))?;
        parse_statm_resident(&buf[..n])
            .map(|pages| pages * self.page_size)
            .ok_or_else(|| Error::new(crate::ErrorKind::Io, "unexpected /proc/self/statm format"))
    }

    /// The resident high-water mark in bytes: `getrusage`'s `ru_maxrss` (one cheap syscall),
    /// or after a `reset_peak`, `VmHWM` from `/proc/self/status` (which the reset lowers).
    pub fn peak_bytes(&self) -> Result<u64> {
        use std::sync::atomic::Ordering;
        if !self.peak_was_reset.load(Ordering::Relaxed) {
            // Safety: getrusage writes only into the zeroed struct we pass.
            let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
            // Safety: as above; RUSAGE_SELF is always valid.
            if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } == 0 {
                return Ok(ru.ru_maxrss.max(0) as u64 * 1024);
            }
        }
        self.vm_hwm_bytes()
    }

    fn vm_hwm_bytes(&self) -> Result<u64> {
        use std::os::unix::fs::FileExt;
        // One pread on a kept descriptor; the file is ~1.5 KiB and VmHWM is in its first half.
        let mut buf = [0u8; 4096];
        let n = self.status.read_at(&mut buf, 0).map_err(|e| Error::io("cannot read /proc/self/status", &e))?;
        let status = String::from_utf8_lossy(&buf[..n]);
        parse_status_kb(&status, "VmHWM:")
            .map(|kb| kb * 1024)
            .ok_or_else(|| Error::new(crate::ErrorKind::Io, "no VmHWM in /proc/self/status"))
    }

    /// Resets the kernel's high-water mark to the current size (`5` to `/proc/self/clear_refs`).
    pub fn reset_peak(&self) -> Result<()> {
        std::fs::write("/proc/self/clear_refs", b"5")
            .map_err(|e| Error::io("cannot reset the peak through /proc/self/clear_refs", &e))?;
        self.peak_was_reset.store(true, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }
}

#[cfg(not(target_os = "linux"))]
impl ProcessProbe {
    pub fn new() -> Result<Self> {
        let sys =
            sysinfo::System::new().map_err(|e| Error::new(crate::ErrorKind::Unsupported, format!("sysinfo: {e}")))?;
        Ok(ProcessProbe { sys: parking_lot::Mutex::new(sys) })
    }

    fn refresh(&self) -> Result<sysinfo::Process> {
        use sysinfo::{ProcessRefreshKind, ProcessesToUpdate};
        let pid = sysinfo::get_current_pid().map_err(|e| Error::new(crate::ErrorKind::Unsupported, e))?;
        let mut sys = self.sys.lock();
        sys.refresh_processes_specifics(
            ProcessesToUpdate::Some(&[pid]),
            true,
            ProcessRefreshKind::nothing().with_memory(),
        );
        sys.process(pid).cloned().ok_or_else(|| Error::new(crate::ErrorKind::Io, "cannot read this process's memory"))
    }

    pub fn current_bytes(&self) -> Result<u64> {
        Ok(self.refresh()?.memory())
    }

    /// sysinfo has no high-water mark; the manager keeps the highest reading it saw.
    pub fn peak_bytes(&self) -> Result<u64> {
        self.current_bytes()
    }

    pub fn reset_peak(&self) -> Result<()> {
        Ok(())
    }
}

/// The second field of statm: resident pages.
pub(crate) fn parse_statm_resident(buf: &[u8]) -> Option<u64> {
    let mut fields = buf.split(|b| *b == b' ');
    fields.next()?;
    let f = fields.next()?;
    let mut n: u64 = 0;
    if f.is_empty() {
        return None;
    }
    for &b in f {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add((b - b'0') as u64)?;
    }
    Some(n)
}

pub(crate) fn parse_status_kb(status: &str, key: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_statm_and_status() {
        assert_eq!(parse_statm_resident(b"12345 678 90 1 0 2 0\n"), Some(678));
        assert_eq!(parse_statm_resident(b"garbage"), None);
        assert_eq!(parse_statm_resident(b"1 x 2"), None);
        assert_eq!(parse_status_kb("Name:\tx\nVmHWM:\t  2048 kB\n", "VmHWM:"), Some(2048));
    }

    #[test]
    fn reads_this_process() {
        let p = ProcessProbe::new().unwrap();
        let cur = p.current_bytes().unwrap();
        assert!(cur > 1024 * 1024, "resident size {cur} is implausibly small");
        // Growing the heap by 64 MiB of touched pages shows up in the reading.
        let v = vec![1u8; 64 << 20];
        let grown = p.current_bytes().unwrap();
        assert!(grown >= cur + (60 << 20), "{cur} -> {grown}");
        // ru_maxrss may trail the kernel's per-CPU RSS counters by a few pages; the manager
        // reports max(peak, current).
        let peak = p.peak_bytes().unwrap();
        assert!(peak.max(p.current_bytes().unwrap()) >= grown, "peak {peak} < {grown}");
        // ru_maxrss and VmHWM are the same high-water mark, in KiB.
        let hwm = p.vm_hwm_bytes().unwrap();
        assert!(peak.abs_diff(hwm) <= 1 << 20, "ru_maxrss {peak} vs VmHWM {hwm}");
        drop(v);
    }
}
