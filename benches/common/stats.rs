//! Summaries of repeated measurements: median, percentile, best, spread.
//! Every benchmark takes its medians and ratios from here.

/// The median (sorts `values` in place); NaN for none.
pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// The median of a copy of `values`, leaving them as they are.
pub fn median_of(values: &[f64]) -> f64 {
    median(&mut values.to_vec())
}

/// The `p` quantile (0..=1) of already sorted values, nearest rank; NaN for none.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// The largest value; NaN for none.
pub fn max(values: &[f64]) -> f64 {
    values.iter().copied().fold(f64::NAN, f64::max)
}

/// The smallest value; NaN for none.
pub fn min(values: &[f64]) -> f64 {
    values.iter().copied().fold(f64::NAN, f64::min)
}

/// (largest − smallest) / median: the run-to-run spread.
pub fn spread(values: &[f64]) -> f64 {
    (max(values) - min(values)) / median_of(values)
}

/// "pass" or "MISS", the word every target line of every benchmark uses.
pub fn verdict(ok: bool) -> &'static str {
    if ok { "pass" } else { "MISS" }
}

/// Prints one target line in the form every benchmark uses:
/// `target: <what>: <measured> (<goal>) -> pass|MISS`.
pub fn target_line(what: &str, measured: &str, goal: &str, ok: bool) {
    println!(
        "target: {what}: {measured} (target {goal}) -> {}",
        verdict(ok)
    );
}
