// Fetching an http(s) image URL without letting a client reach the server's own network: every address a host
// resolves to must be public, the connection goes to an address that was checked (no second DNS answer), and each
// redirect is checked the same way.

import { lookup as dnsLookup, type LookupAddress, type LookupOptions } from 'node:dns';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { BlockList, isIP } from 'node:net';
import { badRequest, tooLarge } from './api-error.js';
import { formatBytes } from './body.js';

const MAX_REDIRECTS = 3;

// IPv4 special-purpose ranges (RFC 6890 and its updates): this network, private, shared (CGNAT), loopback,
// link-local, protocol assignments, documentation, 6to4 relay, benchmarking, multicast, reserved, broadcast.
const NOT_PUBLIC_V4 = new BlockList();
for (const [net, prefix] of [
  ['0.0.0.0', 8], ['10.0.0.0', 8], ['100.64.0.0', 10], ['127.0.0.0', 8], ['169.254.0.0', 16], ['172.16.0.0', 12],
  ['192.0.0.0', 24], ['192.0.2.0', 24], ['192.88.99.0', 24], ['192.168.0.0', 16], ['198.18.0.0', 15],
  ['198.51.100.0', 24], ['203.0.113.0', 24], ['224.0.0.0', 4], ['240.0.0.0', 4],
] as const) {
  NOT_PUBLIC_V4.addSubnet(net, prefix, 'ipv4');
}

// IPv6: only global unicast (2000::/3) is public, less the blocks that are documentation or that carry an IPv4
// address inside (Teredo, 6to4), whose real destination could be private. Loopback, link-local, unique-local,
// IPv4-mapped and NAT64 addresses all lie outside 2000::/3.
const GLOBAL_V6 = new BlockList();
GLOBAL_V6.addSubnet('2000::', 3, 'ipv6');
const NOT_PUBLIC_V6 = new BlockList();
for (const [net, prefix] of [['2001::', 32], ['2001:db8::', 32], ['2002::', 16]] as const) NOT_PUBLIC_V6.addSubnet(net, prefix, 'ipv6');

/** Whether an IP address may be fetched from: not private, loopback, link-local, multicast or otherwise special. */
export function isPublicAddress(address: string): boolean {
  switch (isIP(address)) {
    case 4:
      return !NOT_PUBLIC_V4.check(address, 'ipv4');
    case 6:
      return GLOBAL_V6.check(address, 'ipv6') && !NOT_PUBLIC_V6.check(address, 'ipv6');
    default:
      return false;
  }
}

class RefusedAddressError extends Error {}

const refusal = (host: string, address: string) =>
  new RefusedAddressError(`${host} resolves to ${address}, a private, loopback, link-local or reserved address`);

/** dns.lookup that fails unless every address of the host is public, so the socket can only reach a checked one. */
function publicLookup(
  hostname: string,
  options: LookupOptions,
  callback: (err: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void,
): void {
  dnsLookup(hostname, { all: true, family: options.family ?? 0 }, (err, addresses) => {
    if (err) return callback(err, '');
    const refused = addresses.find((a) => !isPublicAddress(a.address));
    if (refused) return callback(refusal(hostname, refused.address), '');
    if (options.all) return callback(null, addresses);
    const first = addresses[0]!;
    callback(null, first.address, first.family);
  });
}

export interface RemoteImageOptions {
  maxBytes: number;
  timeoutMs: number;
  signal: AbortSignal;
}

/** The bytes at an http(s) URL, following at most a few redirects, each to a public address. */
export async function fetchRemoteImage(url: string, options: RemoteImageOptions): Promise<Uint8Array> {
  const timeout = AbortSignal.timeout(options.timeoutMs);
  const signal = AbortSignal.any([options.signal, timeout]);
  try {
    let target = parseHttpUrl(url);
    for (let redirects = 0; ; redirects++) {
      const res = await get(target, signal);
      const status = res.statusCode ?? 0;
      if (status >= 300 && status < 400 && res.headers.location) {
        res.resume();
        if (redirects === MAX_REDIRECTS) throw badRequest(`the image URL ${url} redirects more than ${MAX_REDIRECTS} times`, 'messages');
        target = parseHttpUrl(new URL(res.headers.location, target).href);
        continue;
      }
      if (status < 200 || status >= 300) {
        res.resume();
        throw badRequest(`could not fetch the image at ${target.href}: HTTP ${status}`, 'messages');
      }
      return await readLimited(res, options.maxBytes, target.href);
    }
  } catch (err) {
    if (timeout.aborted && !options.signal.aborted) {
      throw badRequest(`timed out after ${options.timeoutMs / 1000} s fetching the image at ${url}`, 'messages');
    }
    throw err;
  }
}

function parseHttpUrl(text: string): URL {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw badRequest(`image_url is not a valid URL: ${text.slice(0, 100)}`, 'messages');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw badRequest(`image URLs must be http(s) or base64 data: URLs, got ${url.protocol}`, 'messages');
  }
  return url;
}

async function get(url: URL, signal: AbortSignal): Promise<IncomingMessage> {
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
  // A literal address never goes through the lookup, so it is checked here.
  if (isIP(host) && !isPublicAddress(host)) {
    throw badRequest(`refusing to fetch ${url.href}: ${host} is a private, loopback, link-local or reserved address`, 'messages');
  }
  const request = url.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const req = request(url, { lookup: publicLookup, agent: false, signal, headers: { accept: 'image/*' } }, resolve);
    req.on('error', (err) => {
      if (err instanceof RefusedAddressError) reject(badRequest(`refusing to fetch ${url.href}: ${err.message}`, 'messages'));
      else if (signal.aborted) reject(signal.reason);
      else reject(badRequest(`could not fetch the image at ${url.href}: ${err.message}`, 'messages'));
    });
    req.end();
  });
}

async function readLimited(res: IncomingMessage, maxBytes: number, href: string): Promise<Uint8Array> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of res as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > maxBytes) throw tooLarge(`the image at ${href} is larger than the limit of ${formatBytes(maxBytes)}`, 'messages');
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}
