//! "Did you mean": the closest accepted setting name to an unknown key.

use super::settings::SETTINGS;

/// The closest setting name or alias (with `extra-` if the key had it, then among the list
/// settings only), if close enough to be a typo.
pub(super) fn suggest(key: &str) -> Option<String> {
    let normalized = key.to_ascii_lowercase().replace('_', "-");
    let (prefix, bare) = match normalized.strip_prefix("extra-") {
        Some(rest) => ("extra-", rest.to_owned()),
        None => ("", normalized.clone()),
    };
    let candidates = SETTINGS
        .iter()
        .filter(|s| prefix.is_empty() || s.list)
        .flat_map(|s| std::iter::once(s.name).chain(s.aliases.iter().copied()));
    let (best, distance) = candidates
        .map(|c| (c, edit_distance(&bare, c)))
        .min_by_key(|&(_, d)| d)?;
    let limit = if bare.chars().count() >= 10 { 3 } else { 2 };
    (distance <= limit).then(|| format!("{prefix}{best}"))
}

/// Optimal string alignment distance (Levenshtein plus adjacent transpositions).
pub(super) fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let width = b.len() + 1;
    let mut d = vec![0usize; (a.len() + 1) * width];
    let idx = |i: usize, j: usize| i * width + j;
    for i in 0..=a.len() {
        d[idx(i, 0)] = i;
    }
    for j in 0..=b.len() {
        d[idx(0, j)] = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[idx(i - 1, j)] + 1)
                .min(d[idx(i, j - 1)] + 1)
                .min(d[idx(i - 1, j - 1)] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[idx(i - 2, j - 2)] + 1);
            }
            d[idx(i, j)] = best;
        }
    }
    d[idx(a.len(), b.len())]
}
