// Entry of the fuzzing child process: installs the coverage counters and the loader hooks that instrument the target
// modules before any of them is imported, then runs the loop. Started by scripts/fuzz.ts with the loop's
// configuration as JSON in argv[2].

import { register } from 'node:module';
import { CounterCoverage } from './counters.js';
import type { LoopConfig } from './loop.js';

const config = JSON.parse(process.argv[2]!) as LoopConfig & { modules: string[] };
const coverage = new CounterCoverage();
coverage.install();
register('./instrument-hooks.js', import.meta.url, { data: { modules: config.modules } });
const { runFuzzLoop } = await import('./loop.js');
await runFuzzLoop(config, coverage);
process.disconnect?.();
