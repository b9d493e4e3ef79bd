//! When the next sample is due. Ticks sit on a fixed grid (`k × interval` after the start);
//! a sampler that falls behind (a stalled machine, a suspended process) takes one sample and
//! goes on with the next tick still ahead, instead of catching up with a burst of samples.

use std::time::Duration;

/// The tick schedule of a monitor. Clock-free: the caller passes the time elapsed since the
/// start, so tests drive it with any clock they like.
#[derive(Debug, Clone)]
pub struct Ticker {
    interval: Duration,
    /// Index of the tick the next sample belongs to.
    next: u64,
    skipped: u64,
}

impl Ticker {
    /// `interval` must be > 0 (a zero interval is raised to 1 µs).
    pub fn new(interval: Duration) -> Self {
        Ticker { interval: interval.max(Duration::from_micros(1)), next: 0, skipped: 0 }
    }

    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Call after each sample, with the time elapsed since the start at that moment. Returns
    /// when (elapsed since the start) the next sample is due: the first tick after `now`.
    /// Ticks that passed while the sampler was late are skipped and counted.
    pub fn after_sample(&mut self, now: Duration) -> Duration {
        let passed = (now.as_nanos() / self.interval.as_nanos()) as u64; // ticks due by now
        let wanted = self.next + 1;
        let next = wanted.max(passed + 1);
        self.skipped += next - wanted;
        self.next = next;
        self.due(next)
    }

    /// Elapsed time since the start at which tick `k` is due.
    pub fn due(&self, k: u64) -> Duration {
        Duration::from_nanos((self.interval.as_nanos() * k as u128).min(u64::MAX as u128) as u64)
    }

    /// The index of the next tick.
    pub fn next_tick(&self) -> u64 {
        self.next
    }

    /// Ticks skipped so far because the sampler was late.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn on_time_samples_follow_the_grid() {
        let mut t = Ticker::new(MS(100));
        assert_eq!(t.after_sample(MS(0)), MS(100));
        assert_eq!(t.after_sample(MS(101)), MS(200));
        assert_eq!(t.after_sample(MS(199)), MS(300)); // early wake-ups do not slip the grid
        assert_eq!(t.skipped(), 0);
    }

    /// A clock driven by the test: the sampler stalls for five intervals once. The loop below is
    /// what a monitor does (sample when due, ask for the next due time); it must take one sample
    /// after the stall, not five in a burst.
    #[test]
    fn a_stall_of_five_intervals_gives_one_sample_not_a_burst() {
        let interval = MS(100);
        let mut t = Ticker::new(interval);
        let mut clock = Duration::ZERO;
        let mut taken = Vec::new();
        let mut due = Duration::ZERO;
        while taken.len() < 10 {
            clock = clock.max(due); // sleep until due
            taken.push(clock);
            if taken.len() == 3 {
                clock += interval * 5 + MS(30); // this sample took 530 ms
            }
            due = t.after_sample(clock);
        }
        let gaps: Vec<u128> = taken.windows(2).map(|w| (w[1] - w[0]).as_millis()).collect();
        // 0, 100, 200, then the stall ends at 730: next sample at 800, then on the grid again.
        assert_eq!(gaps, vec![100, 100, 600, 100, 100, 100, 100, 100, 100], "{taken:?}");
        assert!(gaps.iter().all(|&g| g >= 100), "no burst: every gap at least one interval");
        assert_eq!(t.skipped(), 5);
        assert_eq!(t.next_tick(), 15);
    }
}
