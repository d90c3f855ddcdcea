//! Sizing the compute pool for the device.
//!
//! On big.LITTLE boards (e.g. RK3588: 4× Cortex-A76 + 4× A55) a matmul split evenly over all
//! cores finishes when the slowest core does, so by default only the performance cores are
//! counted. Their class is read from `/sys/devices/system/cpu/cpu*/cpu_capacity` (the kernel's
//! relative capacity, 1024 for the biggest) or, where that is absent, from
//! `cpufreq/cpuinfo_max_freq`. `--threads` overrides the default.

use std::path::Path;

/// One value per CPU (capacity or maximum frequency), in CPU-number order.
fn per_cpu_values(root: &Path, file: &str) -> Option<Vec<u64>> {
    let mut values = Vec::new();
    for cpu in 0.. {
        let dir = root.join(format!("cpu{cpu}"));
        if !dir.exists() {
            break;
        }
        let text = std::fs::read_to_string(dir.join(file)).ok()?;
        values.push(text.trim().parse().ok()?);
    }
    (!values.is_empty()).then_some(values)
}

/// How many CPUs belong to the fastest class, if the CPUs are of different classes.
pub fn performance_core_count_in(root: &Path) -> Option<usize> {
    let values = per_cpu_values(root, "cpu_capacity")
        .or_else(|| per_cpu_values(root, "cpufreq/cpuinfo_max_freq"))?;
    let max = *values.iter().max()?;
    let min = *values.iter().min()?;
    // Frequencies of one class can differ slightly (binning); only a clear gap (< 80 % of
    // the fastest) marks a slower class.
    if min * 10 >= max * 8 {
        return None;
    }
    Some(values.iter().filter(|&&v| v * 10 >= max * 8).count())
}

/// The default number of compute threads: the performance cores on a heterogeneous CPU, else
/// every available CPU.
pub fn default_threads() -> usize {
    let available = std::thread::available_parallelism().map_or(1, |n| n.get());
    match performance_core_count_in(Path::new("/sys/devices/system/cpu")) {
        Some(big) => big.clamp(1, available),
        None => available,
    }
}

/// Runs `f` on a worker of the compute pool and waits for it. The parallel loops inside `f`
/// then split work from that worker instead of waking the pool from outside for every matmul:
/// the caller's thread would otherwise sleep and wake (a futex round trip) once per operation,
/// which at one thread cost a third of the decode time.
pub fn on_compute_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    rayon::scope(|_| f())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_sysfs(name: &str, file: &str, values: &[u64]) -> std::path::PathBuf {
        let root =
            std::env::temp_dir().join(format!("ggufd-threads-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        for (i, v) in values.iter().enumerate() {
            let path = root.join(format!("cpu{i}")).join(file);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, format!("{v}\n")).unwrap();
        }
        root
    }

    #[test]
    fn big_little_counts_only_big_cores() {
        // RK3588-like: 4 little cores (capacity 414) and 4 big ones (1024).
        let root = fake_sysfs(
            "cap",
            "cpu_capacity",
            &[414, 414, 414, 414, 1024, 1024, 1024, 1024],
        );
        assert_eq!(performance_core_count_in(&root), Some(4));
        let root = fake_sysfs(
            "freq",
            "cpufreq/cpuinfo_max_freq",
            &[
                1_800_000, 1_800_000, 2_400_000, 2_400_000, 2_400_000, 2_400_000,
            ],
        );
        assert_eq!(performance_core_count_in(&root), Some(4));
        // Raspberry Pi 4/5: all cores alike.
        let root = fake_sysfs("same", "cpu_capacity", &[1024; 4]);
        assert_eq!(performance_core_count_in(&root), None);
        let root = fake_sysfs("none", "nothing", &[1]);
        assert_eq!(performance_core_count_in(&root), None);
        assert!(default_threads() >= 1);
    }
}
