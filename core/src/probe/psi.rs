use serde::Serialize;

/// One line of a PSI file: the share of time stalled, over 10 s, 60 s and 300 s (percent),
/// and the total stall time in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Pressure {
    pub avg10: f64,
    pub avg60: f64,
    pub avg300: f64,
    pub total: u64,
}

/// Memory pressure from `/proc/pressure/memory`: `some` tasks stalled, and `full` (all).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Psi {
    pub some: Pressure,
    pub full: Option<Pressure>,
}

/// Reads `/proc/pressure/memory`; `None` where the kernel does not offer it.
pub fn read_psi() -> Option<Psi> {
    std::fs::read_to_string("/proc/pressure/memory").ok().and_then(|t| parse_psi(&t))
}

pub fn parse_psi(text: &str) -> Option<Psi> {
    let mut some = None;
    let mut full = None;
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let which = words.next();
        let mut p = Pressure { avg10: 0.0, avg60: 0.0, avg300: 0.0, total: 0 };
        for w in words {
            let (k, v) = w.split_once('=')?;
            match k {
                "avg10" => p.avg10 = v.parse().ok()?,
                "avg60" => p.avg60 = v.parse().ok()?,
                "avg300" => p.avg300 = v.parse().ok()?,
                "total" => p.total = v.parse().ok()?,
                _ => {}
            }
        }
        match which {
            Some("some") => some = Some(p),
            Some("full") => full = Some(p),
            _ => {}
        }
    }
    Some(Psi { some: some?, full })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_lines() {
        let p = parse_psi(
            "some avg10=1.50 avg60=0.20 avg300=0.00 total=1234\nfull avg10=0.10 avg60=0.00 avg300=0.00 total=99\n",
        )
        .unwrap();
        assert_eq!(p.some.avg10, 1.5);
        assert_eq!(p.some.total, 1234);
        assert_eq!(p.full.unwrap().total, 99);
        assert!(parse_psi("").is_none());
        assert!(parse_psi("some avg10=x").is_none());
    }

    #[test]
    fn reads_the_machine_when_present() {
        let present = std::path::Path::new("/proc/pressure/memory").exists();
        assert_eq!(read_psi().is_some(), present);
    }
}
