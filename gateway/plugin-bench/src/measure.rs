//! Timing: per-call samples with `Instant` around each call, plus a batch mean without per-call
//! timers, and the timer's own cost so a reader can tell how much of a per-call figure it is.

use std::hint::black_box;
use std::time::Instant;

/// Percentiles of per-call samples (ns) and a batch-timed mean.
#[derive(Debug, Clone, Copy, Default)]
pub struct Summary {
    pub samples: usize,
    pub median_ns: f64,
    pub p99_ns: f64,
    pub max_ns: f64,
    /// Wall time of whole passes over the inputs divided by the number of calls: no timer in the
    /// loop, so it is the figure to trust for calls of a few ns.
    pub batch_mean_ns: f64,
}

/// The `q` quantile (0..=1) of sorted samples, nearest-rank.
pub fn quantile(sorted: &[u64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    let i = rank.clamp(1, sorted.len()) - 1;
    sorted.get(i).copied().unwrap_or(0) as f64
}

/// Summarizes per-call samples (ns); `batch_mean_ns` is left to the caller.
pub fn summarize(mut samples: Vec<u64>) -> Summary {
    samples.sort_unstable();
    Summary {
        samples: samples.len(),
        median_ns: quantile(&samples, 0.5),
        p99_ns: quantile(&samples, 0.99),
        max_ns: samples.last().copied().unwrap_or(0) as f64,
        batch_mean_ns: f64::NAN,
    }
}

fn elapsed_ns(t: Instant) -> u64 {
    u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// Runs `f` over `inputs` round-robin: one untimed warm-up pass, then `iterations` calls each
/// timed with its own `Instant` pair, then untimed passes (at least `iterations` calls in all)
/// timed as a whole for the batch mean (the median of the passes' means).
pub fn bench<I, O>(inputs: &[I], iterations: usize, mut f: impl FnMut(&I) -> O) -> Summary {
    if inputs.is_empty() || iterations == 0 {
        return Summary::default();
    }
    for i in inputs {
        black_box(f(black_box(i)));
    }
    let mut samples = Vec::with_capacity(iterations);
    for i in inputs.iter().cycle().take(iterations) {
        let t = Instant::now();
        let o = f(black_box(i));
        let dt = elapsed_ns(t);
        black_box(o);
        samples.push(dt);
    }
    let mut s = summarize(samples);
    let passes = iterations.div_ceil(inputs.len()).max(3);
    let mut means = Vec::with_capacity(passes);
    for _ in 0..passes {
        let t = Instant::now();
        for i in inputs {
            black_box(f(black_box(i)));
        }
        means.push(elapsed_ns(t) as f64 / inputs.len() as f64);
    }
    means.sort_by(f64::total_cmp);
    s.batch_mean_ns = means.get(means.len() / 2).copied().unwrap_or(f64::NAN);
    s
}

/// The cost of the per-call timer itself: an `Instant::now()` + `elapsed()` pair around nothing.
pub fn timer_overhead(iterations: usize) -> Summary {
    let mut samples = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let t = Instant::now();
        samples.push(elapsed_ns(black_box(t)));
    }
    summarize(samples)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_quantiles() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(quantile(&v, 0.5), 50.0);
        assert_eq!(quantile(&v, 0.99), 99.0);
        assert_eq!(quantile(&v, 1.0), 100.0);
        assert_eq!(quantile(&v, 0.0), 1.0);
        assert!(quantile(&[], 0.5).is_nan());
        let s = summarize(vec![5, 1, 3]);
        assert_eq!((s.median_ns, s.max_ns, s.samples), (3.0, 5.0, 3));
    }

    #[test]
    fn bench_calls_every_input_and_counts_samples() {
        let mut seen = [0usize; 4];
        let s = bench(&[0usize, 1, 2, 3], 10, |&i| {
            if let Some(n) = seen.get_mut(i) {
                *n += 1;
            }
        });
        assert_eq!(s.samples, 10);
        // warm-up (1 pass) + 10 timed calls + max(3, ceil(10/4)) = 3 passes
        assert_eq!(seen.iter().sum::<usize>(), 4 + 10 + 12);
        assert!(s.batch_mean_ns.is_finite());
    }
}
