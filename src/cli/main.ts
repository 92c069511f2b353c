#!/usr/bin/env node
// The omnilmm command line: a thin shell over the library. Errors print one line and exit non-zero.

import { readFileSync } from 'node:fs';
import { OmnilmmError } from '../errors.js';
import { commands } from './commands/index.js';
import { EXIT_BROKEN_PIPE, outputClosed, watchForClosedOutput } from './io.js';

const HELP = `omnilmm — run MiniCPM-V / OmniLMM multimodal models locally

usage: omnilmm <command> [options]
       omnilmm --version

commands:
${commands.map((c) => `  ${c.name.padEnd(14)} ${c.summary}`).join('\n')}

Run "omnilmm <command> --help" (or "omnilmm help <command>") for a command's options.
--model takes a local checkpoint folder or a Hugging Face hub id (org/name), downloaded into the
Hugging Face cache ($HF_HOME/hub); HF_ENDPOINT, HF_TOKEN and HF_HUB_OFFLINE are honoured.`;

async function main(argv: string[]): Promise<number> {
  const [first, ...others] = argv;
  // `omnilmm help <command>` is `omnilmm <command> --help`.
  const [name, ...rest] = first === 'help' && others.length > 0 ? [others[0]!, '--help'] : argv;
  if (name === '--version' || name === '-v') {
    process.stdout.write(`omnilmm ${packageVersion()}\n`);
    return 0;
  }
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(`${HELP}\n`);
    return name === undefined ? 2 : 0;
  }
  const command = commands.find((c) => c.name === name);
  if (!command) {
    process.stderr.write(`error: unknown command "${name}"\n\n${HELP}\n`);
    return 2;
  }
  // After `--` nothing is an option: `tokenize -- --help` tokenizes "--help".
  const options = rest.includes('--') ? rest.slice(0, rest.indexOf('--')) : rest;
  if (options.includes('--help') || options.includes('-h')) {
    process.stdout.write(`${command.help}\n`);
    return 0;
  }
  await command.run(rest);
  return 0;
}

/** The version in the package's package.json (three folders up from dist/src/cli, as installed and as built). */
function packageVersion(): string {
  const manifest = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };
  return manifest.version;
}

watchForClosedOutput();
// Node's own printer gives a warning several lines (a process id, a hint about --trace-warnings); ours gives it one.
process.removeAllListeners('warning');
process.on('warning', (warning) => process.stderr.write(`warning: ${warning.message}\n`));
main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = outputClosed.aborted ? EXIT_BROKEN_PIPE : code;
  },
  (err: unknown) => {
    if (outputClosed.aborted) {
      process.exitCode = EXIT_BROKEN_PIPE;
    } else if (err instanceof OmnilmmError) {
      process.stderr.write(`error: ${err.message}\n`);
      process.exitCode = err.exitCode;
    } else {
      const message = err instanceof Error ? err.message : String(err);
      process.stderr.write(`internal error: ${message}\n(set OMNILMM_DEBUG=1 for details, and please report it)\n`);
      if (process.env.OMNILMM_DEBUG) console.error(err);
      process.exitCode = 70;
    }
  },
);
