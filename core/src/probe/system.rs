/// The machine's physical memory in bytes.
#[cfg(target_os = "linux")]
pub fn physical_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| super::process::parse_status_kb(&t, "MemTotal:"))
        .map(|kb| kb * 1024)
        .unwrap_or_else(|| {
            // Safety: sysconf has no preconditions.
            let (pages, size) = unsafe { (libc::sysconf(libc::_SC_PHYS_PAGES), libc::sysconf(libc::_SC_PAGESIZE)) };
            (pages.max(0) as u64) * (size.max(0) as u64)
        })
}

#[cfg(not(target_os = "linux"))]
pub fn physical_memory() -> u64 {
    match sysinfo::System::new() {
        Ok(mut sys) => {
            sys.refresh_memory();
            sys.total_memory()
        }
        Err(_) => 0,
    }
}
