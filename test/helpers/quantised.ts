// How far a tower whose linear layers run quantised may be from the official float outputs (test/quantize.test.ts,
// test/minicpmv46-vision.test.ts).

import assert from 'node:assert/strict';
import { maxAbsDiff } from './fixtures.js';

/** ‖got − want‖ / ‖want‖ over all values. */
export function relativeRms(got: Float32Array, want: Float32Array): number {
  assert.equal(got.length, want.length);
  let error = 0;
  let norm = 0;
  for (let i = 0; i < want.length; i++) {
    error += (got[i]! - want[i]!) ** 2;
    norm += want[i]! ** 2;
  }
  return Math.sqrt(error / norm);
}

/**
 * The most relative RMS error that quantising a tower's linear layers should add to its output, from the codes alone:
 * symmetric codes with one scale per block of 128 weights step by max|w| / 2^(bits−1), so each weight is rounded by at
 * most half a step, uniformly: an RMS error of step/√12. Over a block of Gaussian-like weights max|w| stays below
 * 3.5σ, so a layer's weights, and hence its outputs, are off by at most 3.5 / (2^(bits−1)·√12) of their RMS;
 * accuracy_level 4 rounds the activations the same way (×√2), and the `linears` layers add independent errors
 * (×√linears). int8 over the 12 linears of a 3-block tower: 3.9 %; int4: 62 %.
 * int8-dq (one weight scale per output channel, one uint8 scale per activation tensor) is held to the int8 bound:
 * its steps are set by larger extremes (a whole row, a whole tensor), which on the fixtures added 5–20 % to int8's
 * error, far inside the bound.
 */
export function quantisedTowerBound(bits: 4 | 8, linears: number): number {
  return (Math.sqrt(2 * linears) * 3.5) / (2 ** (bits - 1) * Math.sqrt(12));
}

/** Checks a quantised tower's outputs against the fixture's goldens and returns the figures for the diagnostics. */
export function assertQuantisedClose(label: string, bits: 4 | 8, linears: number, outputs: [string, Float32Array, Float32Array][]): string {
  const bound = quantisedTowerBound(bits, linears);
  return outputs.map(([name, got, want]) => {
    const relative = relativeRms(got, want);
    assert.ok(relative <= bound, `${label} ${name}: relative RMS error ${relative} exceeds ${bound}`);
    // fp32 reproduces these goldens within 1e-6 relative: a larger error shows the tower really runs quantised.
    assert.ok(relative > 1e-4, `${label} ${name}: relative RMS error ${relative}, so the tower did not run quantised`);
    const scale = want.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
    return `${label} ${name}: relative RMS ${relative.toExponential(2)} (bound ${bound.toExponential(2)}), ` +
      `max |Δ| ${maxAbsDiff(got, want).toExponential(2)} of max |x| ${scale.toFixed(2)}`;
  }).join('; ');
}
