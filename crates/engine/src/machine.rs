//! This machine's memory, and whether a model of a given size runs on it: "fits", "tight"
//! (it runs once other programs give memory back) or "too large". A warning before a
//! download, never a block. wgpu does not report a GPU's memory, so the verdict is about
//! system RAM (which also backs integrated GPUs).

use serde::Serialize;

/// Lets the C allocator (glibc's) keep freed blocks for reuse instead of giving them back to
/// the kernel: a CPU forward pass allocates each product's and each elementwise op's output,
/// megabytes apiece in a prompt's pass, and glibc returns blocks that large on free (an
/// `mmap` of its own, or a trim of the heap's top), so the next one is page-faulted and
/// zeroed afresh. Measured on a 1.7B-shape model's 600-token prefill, 2 threads: the kernel
/// clearing pages was 8% of the samples, and gone after this. Blocks up to glibc's limit
/// (32 MB) come from the heap, of which up to 512 MB may stay free before it is trimmed.
/// Once per process, on the first CPU model; other allocators are left alone.
pub fn keep_freed_buffers() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: mallopt only sets the allocator's parameters (both values are in range).
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
            libc::mallopt(libc::M_TRIM_THRESHOLD, 512 << 20);
        }
    });
}

/// The machine's RAM, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MachineMemory {
    pub total_bytes: u64,
    /// What programs can still get without swapping.
    pub available_bytes: u64,
}

/// Reads the machine's memory now.
pub fn machine_memory() -> MachineMemory {
    let mut system = sysinfo::System::new();
    system.refresh_memory();
    MachineMemory {
        total_bytes: system.total_memory(),
        available_bytes: system.available_memory(),
    }
}

/// Whether a model runs here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Fit {
    /// Runs with room to spare.
    Yes,
    /// Runs, but takes most of the free memory: other programs may have to give some back.
    Tight,
    /// More than this machine has.
    No,
}

impl Fit {
    pub fn as_str(self) -> &'static str {
        match self {
            Fit::Yes => "yes",
            Fit::Tight => "tight",
            Fit::No => "no",
        }
    }
}

/// The verdict for a model that takes `estimate_bytes` to run: too large past 90% of all the
/// RAM, tight past 80% of what is free now.
pub fn fit(estimate_bytes: u64, memory: &MachineMemory) -> Fit {
    let share = |bytes: u64, percent: u64| bytes / 100 * percent;
    if estimate_bytes > share(memory.total_bytes, 90) {
        Fit::No
    } else if estimate_bytes > share(memory.available_bytes, 80) {
        Fit::Tight
    } else {
        Fit::Yes
    }
}

/// The verdict with the numbers it was made from, as the Models pane shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FitReport {
    pub fits: Fit,
    pub memory_estimate_bytes: u64,
    #[serde(flatten)]
    pub machine: MachineMemory,
}

impl FitReport {
    /// The report for a model of `estimate_bytes` (`None` when the estimate is unknown).
    pub fn new(estimate_bytes: u64, machine: MachineMemory) -> Option<FitReport> {
        (estimate_bytes > 0).then(|| FitReport {
            fits: fit(estimate_bytes, &machine),
            memory_estimate_bytes: estimate_bytes,
            machine,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GB: u64 = 1_000_000_000;

    #[test]
    fn small_models_fit_big_ones_are_tight_or_too_large() {
        let laptop = MachineMemory {
            total_bytes: 16 * GB,
            available_bytes: 6 * GB,
        };
        assert_eq!(fit(GB / 5, &laptop), Fit::Yes);
        assert_eq!(fit(4 * GB, &laptop), Fit::Yes);
        // more than 80% of what is free: other programs must give memory back
        assert_eq!(fit(5 * GB, &laptop), Fit::Tight);
        assert_eq!(fit(14 * GB, &laptop), Fit::Tight);
        // more than 90% of all of it
        assert_eq!(fit(15 * GB, &laptop), Fit::No);
        assert_eq!(fit(40 * GB, &laptop), Fit::No);
    }

    #[test]
    fn this_machine_reports_its_memory() {
        let m = machine_memory();
        assert!(m.total_bytes > 256 << 20, "{m:?}");
        assert!(
            m.available_bytes > 0 && m.available_bytes <= m.total_bytes,
            "{m:?}"
        );
        assert!(FitReport::new(0, m).is_none());
        let report = FitReport::new(100 << 20, m).unwrap();
        let json = serde_json::to_value(report).unwrap();
        assert_eq!(json["fits"], "yes");
        assert!(json["totalBytes"].as_u64().unwrap() > 0);
    }
}
