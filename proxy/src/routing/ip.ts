/**
 * IP address parsing and masking for ClientIP affinity and trusted-proxy
 * checks. Pure: no `node:net`, so it runs the same in the operator and tests.
 *
 * Every address is held as 16 bytes; IPv4 `a.b.c.d` is stored IPv4-mapped
 * (`::ffff:a.b.c.d`, RFC 4291 §2.5.5.2), so `10.1.2.3` and `::ffff:10.1.2.3`
 * (what a dual-stack Node socket reports) are one client.
 */

/** A parsed address: 16 bytes, and whether it is (mapped) IPv4. */
export interface IpAddress {
  readonly bytes: Uint8Array;
  readonly v4: boolean;
}

/** A parsed CIDR block. */
export interface Cidr {
  readonly base: IpAddress;
  /** Prefix length counted over 128 bits (an IPv4 /24 is stored as /120). */
  readonly bits: number;
}

const V4_MAPPED_PREFIX = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff];

function parseV4(text: string, out: Uint8Array, at: number): boolean {
  const parts = text.split('.');
  if (parts.length !== 4) return false;
  for (let i = 0; i < 4; i++) {
    const p = parts[i] as string;
    // Leading zeros are refused: "010" is octal to inet_aton and decimal to others.
    if (!/^(0|[1-9][0-9]{0,2})$/.test(p)) return false;
    const n = Number(p);
    if (n > 255) return false;
    out[at + i] = n;
  }
  return true;
}

/**
 * Parses an IPv4 or IPv6 address (with an optional `%zone`, ignored).
 *
 * @returns the address, or `undefined` when the text is not an address.
 */
export function parseIp(text: string): IpAddress | undefined {
  if (text.length === 0 || text.length > 64) return undefined;
  const bytes = new Uint8Array(16);
  if (!text.includes(':')) {
    bytes.set(V4_MAPPED_PREFIX);
    return parseV4(text, bytes, 12) ? { bytes, v4: true } : undefined;
  }
  const zoneAt = text.indexOf('%');
  const addr = zoneAt >= 0 ? text.slice(0, zoneAt) : text;
  const halves = addr.split('::');
  if (halves.length > 2) return undefined;
  const groupsOf = (s: string): string[] => (s === '' ? [] : s.split(':'));
  const head = groupsOf(halves[0] as string);
  const tail = halves.length === 2 ? groupsOf(halves[1] as string) : [];
  // An embedded IPv4 tail ("::ffff:1.2.3.4") counts as two groups.
  const last = tail.length > 0 ? tail[tail.length - 1] : head[head.length - 1];
  const v4Tail = last?.includes('.') ?? false;
  const v4Bytes = new Uint8Array(16);
  if (v4Tail) {
    if (!parseV4(last as string, v4Bytes, 12)) return undefined;
    (tail.length > 0 ? tail : head).pop();
  }
  const groupSlots = v4Tail ? 6 : 8;
  const count = head.length + tail.length;
  if (halves.length === 1 ? count !== groupSlots : count > groupSlots - 1) return undefined;
  const groups = [...head, ...new Array<string>(groupSlots - count).fill('0'), ...tail];
  for (let i = 0; i < groups.length; i++) {
    const g = groups[i] as string;
    if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return undefined;
    const n = Number.parseInt(g, 16);
    bytes[i * 2] = n >> 8;
    bytes[i * 2 + 1] = n & 0xff;
  }
  if (v4Tail) bytes.set(v4Bytes.subarray(12), 12);
  const v4 = V4_MAPPED_PREFIX.every((b, i) => bytes[i] === b);
  return { bytes, v4 };
}

/**
 * Parses `addr/len`. An IPv4 CIDR's length is 0–32, an IPv6 one's 0–128.
 *
 * @returns the block, or `undefined` when malformed.
 */
export function parseCidr(text: string): Cidr | undefined {
  const slash = text.indexOf('/');
  if (slash < 0) return undefined;
  const base = parseIp(text.slice(0, slash));
  const lenText = text.slice(slash + 1);
  if (!base || !/^(0|[1-9][0-9]{0,2})$/.test(lenText)) return undefined;
  const len = Number(lenText);
  if (len > (base.v4 ? 32 : 128)) return undefined;
  return { base, bits: base.v4 ? 96 + len : len };
}

/** Whether `ip` lies in `cidr`. */
export function cidrContains(cidr: Cidr, ip: IpAddress): boolean {
  const full = cidr.bits >> 3;
  for (let i = 0; i < full; i++) if (cidr.base.bytes[i] !== ip.bytes[i]) return false;
  const rest = cidr.bits & 7;
  if (rest === 0) return true;
  const mask = (0xff << (8 - rest)) & 0xff;
  return ((cidr.base.bytes[full] as number) & mask) === ((ip.bytes[full] as number) & mask);
}

/**
 * The address masked to a prefix, as a canonical string key.
 *
 * Worked example (nginx ip_hash, /24): `192.0.2.77` → `"192.0.2.0/24"`;
 * `::ffff:192.0.2.77` gives the same key.
 *
 * @param ipv4PrefixLength - 1–32
 * @param ipv6PrefixLength - 1–128
 */
export function maskedKey(ip: IpAddress, ipv4PrefixLength: number, ipv6PrefixLength: number): string {
  const bits = ip.v4 ? 96 + ipv4PrefixLength : ipv6PrefixLength;
  const b = ip.bytes.slice();
  const full = bits >> 3;
  const rest = bits & 7;
  if (full < 16) {
    b[full] = (b[full] as number) & ((0xff << (8 - rest)) & 0xff);
    b.fill(0, full + 1);
  }
  if (ip.v4) return `${b[12]}.${b[13]}.${b[14]}.${b[15]}/${ipv4PrefixLength}`;
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((((b[i] as number) << 8) | (b[i + 1] as number)).toString(16));
  return `${groups.join(':')}/${ipv6PrefixLength}`;
}
