//! A streaming robust estimate of one quantity in 20 bytes: median and median absolute deviation
//! tracked by stochastic approximation (each sample nudges the estimate towards its side), plus the
//! 1st and 99th percentiles tracked the same way. Not mean/stddev: one wild sample moves the
//! estimate by one bounded step, never by its size.

/// Median, MAD, 1st and 99th percentile (`lo`, `hi`) and the sample count.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Robust {
    pub med: f32,
    pub mad: f32,
    pub lo: f32,
    pub hi: f32,
    pub n: u32,
}

impl Robust {
    /// Learns one sample. Non-finite samples are ignored (the caller scores them).
    #[inline]
    pub fn update(&mut self, x: f32) {
        if !x.is_finite() {
            return;
        }
        if self.n < 2 {
            if self.n == 0 {
                *self = Self {
                    med: x,
                    mad: 0.0,
                    lo: x,
                    hi: x,
                    n: 1,
                };
            } else {
                // (halves first: a sum or difference of two large samples can overflow)
                self.n = 2;
                self.mad = (x / 2.0 - self.med / 2.0).abs();
                self.med = self.med / 2.0 + x / 2.0;
                self.lo = self.lo.min(x);
                self.hi = self.hi.max(x);
            }
            return;
        }
        self.n = self.n.saturating_add(1);
        // a constant series (a payload size, a setpoint) at rest: nothing would move
        if x == self.med && self.mad == 0.0 && x == self.lo && x == self.hi {
            return;
        }
        // steps scale with the spread, large while young, small once settled; the spread is
        // read once per sample (before it moves)
        let rate = if self.n < 64 { 0.15 } else { 0.03 };
        let step = rate * self.scale();
        if x > self.med {
            self.med += step;
        } else if x < self.med {
            self.med -= step;
        }
        let half = step * 0.5;
        self.mad = if (x - self.med).abs() > self.mad {
            self.mad + half
        } else {
            (self.mad - half).max(0.0)
        };
        // the 1st and 99th percentiles, by the same bounded steps: an outlier moves them once
        let eta = 2.0 * step;
        self.hi += if x > self.hi { eta * 0.99 } else { -eta * 0.01 };
        self.lo += if x < self.lo { -eta * 0.99 } else { eta * 0.01 };
        if self.lo > self.hi {
            std::mem::swap(&mut self.lo, &mut self.hi);
        }
        // extreme but finite inputs overflowed an intermediate: start again. (Each field on its
        // own: a sum of the four overflows for a series that is merely large, near 1e38.)
        if !(self.med.is_finite()
            && self.mad.is_finite()
            && self.lo.is_finite()
            && self.hi.is_finite())
        {
            *self = Self::default();
        }
    }

    /// The spread used to scale deviations: 1.4826 × MAD, floored so a constant series still has
    /// a non-zero unit (a tenth of the seen range, a thousandth of the median, or `floor`).
    #[inline]
    pub fn sigma(&self, floor: f32) -> f32 {
        (1.4826 * self.mad)
            .max((self.hi - self.lo) * 0.1)
            .max(self.med.abs() * 1e-3)
            .max(floor)
    }

    #[inline]
    fn scale(&self) -> f32 {
        self.sigma(1e-6)
    }

    /// How many spreads `x` lies from the median, counted only well beyond the 1st–99th percentile
    /// range (a quarter of the range and one spread further). 0 when nothing was learned yet.
    #[inline]
    pub fn surprise(&self, x: f32, floor: f32) -> f32 {
        if self.n < 2 {
            return 0.0;
        }
        let s = self.sigma(floor);
        let margin = (self.hi - self.lo) * 0.25 + s;
        if x <= self.hi + margin && x >= self.lo - margin {
            return 0.0;
        }
        let z = (x - self.med).abs() / s;
        if z.is_finite() { z } else { f32::MAX }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn noisy(i: u32) -> f32 {
        // deterministic noise in [-1, 1]
        let h = i.wrapping_mul(2_654_435_761) >> 16;
        (h % 2001) as f32 / 1000.0 - 1.0
    }

    #[test]
    fn median_and_mad_converge_and_resist_outliers() {
        let mut r = Robust::default();
        for i in 0..5000 {
            r.update(20.0 + noisy(i));
        }
        assert!((r.med - 20.0).abs() < 0.2, "median {}", r.med);
        // uniform on [-1, 1]: MAD is 0.5
        assert!((r.mad - 0.5).abs() < 0.2, "mad {}", r.mad);
        let before = r;
        r.update(1e9);
        assert!(
            (r.med - before.med).abs() < 0.1,
            "one wild sample moved the median"
        );
        assert!(r.surprise(150.0, 0.01) > 50.0);
        assert_eq!(r.surprise(20.5, 0.01), 0.0);
    }

    #[test]
    fn hostile_samples_never_poison_the_state() {
        let mut r = Robust::default();
        for x in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            r.update(x);
        }
        assert_eq!(r.n, 0);
        r.update(f32::MAX);
        r.update(-f32::MAX);
        r.update(f32::MAX);
        assert!(r.med.is_finite() && r.mad.is_finite());
        assert!(r.surprise(0.0, 1.0).is_finite());
    }

    /// A large but ordinary series (values near 2e38, whose four estimates add up past
    /// `f32::MAX`) is learned, not reset at every sample.
    #[test]
    fn a_series_near_the_largest_float_is_learned() {
        let mut r = Robust::default();
        for i in 0..200 {
            r.update(2.0e38 + noisy(i) * 1.0e37);
        }
        assert_eq!(r.n, 200, "{r:?}");
        assert!((r.med - 2.0e38).abs() < 1.0e37, "{r:?}");
        assert!(r.surprise(2.0e38, 1.0) == 0.0 && r.surprise(-2.0e38, 1.0) > 0.0);
    }

    #[test]
    fn constant_series_has_a_unit() {
        let mut r = Robust::default();
        for _ in 0..100 {
            r.update(5.0);
        }
        // at rest: every sample counted, nothing moved (no jitter of the percentiles)
        assert_eq!((r.n, r.med, r.mad, r.lo, r.hi), (100, 5.0, 0.0, 5.0, 5.0));
        assert_eq!(r.surprise(5.0, 0.5), 0.0);
        assert!(r.surprise(50.0, 0.5) > 10.0);
        // the first different sample leaves the fast path and is learned
        r.update(6.0);
        assert!(r.med > 5.0 && r.hi > 5.0, "{r:?}");
    }
}
