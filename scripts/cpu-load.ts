// How quiet the machine was while a benchmark phase ran: the CPU time that other processes took meanwhile, from the
// machine's busy time in /proc/stat minus this process's own (process.cpuUsage counts every thread of it, ONNX
// Runtime's pool included). A figure taken while others used more than QUIET_LIMIT_CORES is disturbed.

import { readdirSync, readFileSync } from 'node:fs';

/** Above this many cores taken by other processes on average, a phase's figure is called disturbed. */
export const QUIET_LIMIT_CORES = 0.1;

/** Clock ticks per second of /proc/stat (USER_HZ, 100 on Linux). */
const USER_HZ = 100;

interface Sample {
  wallMs: number;
  /** Busy seconds of the whole machine (user, nice, system, irq, softirq, steal), or null where /proc/stat is absent. */
  machineBusyS: number | null;
  /** CPU seconds of this process. */
  ownS: number;
}

function machineBusySeconds(): number | null {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!;
    const [user, nice, system, , , irq, softirq, steal] = line.trim().split(/\s+/).slice(1).map(Number);
    return (user! + nice! + system! + irq! + softirq! + steal!) / USER_HZ;
  } catch {
    return null;
  }
}

function sample(): Sample {
  const own = process.cpuUsage();
  return { wallMs: performance.now(), machineBusyS: machineBusySeconds(), ownS: (own.user + own.system) / 1e6 };
}

export interface PhaseLoad {
  /** Average cores that other processes took during the phase (null where /proc/stat is absent). */
  othersAvgCores: number | null;
  wallS: number;
}

/**
 * Starts measuring a phase; the returned function ends it. `childCpuS` is CPU time of a child process that ran the
 * phase's work (it is the phase's own, not other processes').
 */
export function startPhase(): (childCpuS?: number) => PhaseLoad {
  const start = sample();
  return (childCpuS = 0) => {
    const end = sample();
    const wallS = (end.wallMs - start.wallMs) / 1000;
    if (start.machineBusyS === null || end.machineBusyS === null || wallS <= 0) return { othersAvgCores: null, wallS };
    const others = end.machineBusyS - start.machineBusyS - (end.ownS - start.ownS) - childCpuS;
    return { othersAvgCores: Math.max(0, others) / wallS, wallS };
  };
}

/** A phase's load as a table cell: `0.03` cores, with a warning mark past QUIET_LIMIT_CORES. */
export function showLoad(load: PhaseLoad): string {
  if (load.othersAvgCores === null) return 'n/a';
  return `${load.othersAvgCores.toFixed(2)}${load.othersAvgCores > QUIET_LIMIT_CORES ? ' (disturbed)' : ''}`;
}

/** CPU seconds Chromium's processes have used so far (user + system; /proc/<pid>/stat counts in 1/100 s). */
function chromiumCpuSeconds(): number {
  let ticks = 0;
  for (const pid of readdirSync('/proc').filter((name) => /^\d+$/.test(name))) {
    try {
      if (!readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('chromium')) continue;
      const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /, '').split(' ');
      ticks += Number(fields[11]) + Number(fields[12]);
    } catch {
      // The process ended while it was read.
    }
  }
  return ticks / 100;
}

/** Starts a phase whose others' CPU leaves out Chromium's (the browser works for us). */
export function startBrowserPhase(): () => PhaseLoad {
  const chromiumBefore = chromiumCpuSeconds();
  const end = startPhase();
  return () => end(chromiumCpuSeconds() - chromiumBefore);
}
