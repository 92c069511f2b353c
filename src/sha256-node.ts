// The Node side of sha256.ts: importing this module makes imageKey hash with node:crypto's SHA-256 (the same digest,
// many times faster than the portable Sha256). Imported for that effect by models/registry.ts, through which every
// model Node loads comes, and by chat/media-source.ts, which hashes video frames as it reads them.

import { createHash } from 'node:crypto';
import { installSha256Digest } from './sha256.js';

installSha256Digest((pieces) => {
  const hash = createHash('sha256');
  for (const piece of pieces) hash.update(piece);
  return hash.digest('hex');
});
