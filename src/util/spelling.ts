// "Did you mean" support shared by every place that refuses an unknown key: edit distance and the nearest
// candidate. Not the alias tables (those say what a key means, and live with each schema).

/** Levenshtein distance. */
export function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) cur[j] = Math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    prev = cur;
  }
  return prev[b.length];
}

/** The candidate nearest to `key` (dashes read as underscores, case ignored) and its distance. */
export function nearest<K extends string>(key: string, candidates: readonly K[]): { key: K; distance: number } {
  const norm = key.toLowerCase().replace(/-/g, "_");
  let best = candidates[0], bestD = Infinity;
  for (const k of candidates) {
    const d = editDistance(norm, k);
    if (d < bestD) { best = k; bestD = d; }
  }
  return { key: best, distance: bestD };
}
