/**
 * Weighted rendezvous hashing (highest random weight, Thaler & Ravishankar
 * 1996; weighted form of Schindelhauer & Schomaker 2005, as in Envoy's
 * "weighted HRW" and Tailscale's). Chosen over Maglev because it gives every
 * key a full preference list over the endpoints, which bounded load and
 * redispatch both walk, and because removing one endpoint of N moves exactly
 * the keys that ranked it first (≈ 1/N), with no table rebuild.
 *
 * Worked example: key "10.0.1.0/24" over A (weight 1) and B (weight 2). Each
 * endpoint gets a uniform u ∈ (0,1) from hash(key, endpoint id), then the
 * score w / -ln(u). With u_A = 0.6 → 1 / 0.51 = 1.96 and u_B = 0.3 →
 * 2 / 1.20 = 1.66, A wins; over many keys B wins 2/3 of the time.
 */

/** Two independent 32-bit digests of a string: 53 bits of hash once combined. */
export interface Digest {
  readonly a: number;
  readonly b: number;
}

const SEED_A = 0x5f3759df;
const SEED_B = 0x9747b28c;

/**
 * MurmurHash3 x86_32 over the string's UTF-16 code units, two per 32-bit
 * block. Not byte-compatible with murmur over UTF-8; stable across processes
 * and versions, which is what consistent re-pinning needs (golden-tested).
 *
 * @returns an unsigned 32-bit integer.
 */
export function murmur3(text: string, seed: number): number {
  let h = seed >>> 0;
  const n = text.length;
  let i = 0;
  for (; i + 1 < n; i += 2) {
    let k = (text.charCodeAt(i) | (text.charCodeAt(i + 1) << 16)) >>> 0;
    k = Math.imul(k, 0xcc9e2d51);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, 0x1b873593);
    h ^= k;
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  }
  if (i < n) {
    let k = text.charCodeAt(i);
    k = Math.imul(k, 0xcc9e2d51);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, 0x1b873593);
    h ^= k;
  }
  h ^= n * 2;
  return fmix32(h);
}

/** Murmur3's finaliser: full avalanche of a 32-bit word. */
export function fmix32(x: number): number {
  let h = x;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** Digest of an affinity key or an endpoint id. */
export function digest(text: string): Digest {
  return { a: murmur3(text, SEED_A), b: murmur3(text, SEED_B) };
}

/**
 * Rendezvous score of one (key, endpoint) pair; higher wins.
 *
 * @param weight - the endpoint's weight, ≥ 1.
 * @returns weight / -ln(u) with u ∈ (0,1) uniform in the pair.
 */
export function score(key: Digest, endpoint: Digest, weight: number): number {
  const hi = fmix32((key.a ^ endpoint.a) >>> 0);
  const lo = fmix32((key.b ^ endpoint.b ^ hi) >>> 0);
  // 53 bits → (0,1), never 0 or 1, so the logarithm is finite and negative.
  const u = (hi * 2 ** 21 + (lo >>> 11) + 0.5) / 2 ** 53;
  return weight / -Math.log(u);
}

/** What the ranking needs of an endpoint. */
export interface Rankable {
  readonly digest: Digest;
  readonly weight: number;
}

/**
 * The index of the highest-scoring candidate, or -1 when none is eligible.
 *
 * @param eligible - called with each index; false skips that endpoint.
 */
export function pickTop(
  key: Digest,
  endpoints: readonly Rankable[],
  eligible: (index: number) => boolean,
): number {
  let best = -1;
  let bestScore = -1;
  for (let i = 0; i < endpoints.length; i++) {
    if (!eligible(i)) continue;
    const e = endpoints[i] as Rankable;
    const s = score(key, e.digest, e.weight);
    // Ties (astronomically rare) go to the lower index, the same in every proxy.
    if (s > bestScore) {
      bestScore = s;
      best = i;
    }
  }
  return best;
}

/**
 * Every eligible index, best first: the key's preference list, walked by
 * bounded load when the first choice is full.
 */
export function rank(
  key: Digest,
  endpoints: readonly Rankable[],
  eligible: (index: number) => boolean,
): number[] {
  const scored: Array<[number, number]> = [];
  for (let i = 0; i < endpoints.length; i++) {
    if (!eligible(i)) continue;
    const e = endpoints[i] as Rankable;
    scored.push([score(key, e.digest, e.weight), i]);
  }
  scored.sort((x, y) => y[0] - x[0] || x[1] - y[1]);
  return scored.map(([, i]) => i);
}
