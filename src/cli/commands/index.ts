// The registry of CLI commands, in the order `omnilmm --help` lists them.

import type { Command } from './common.js';
import { chatCommand } from './chat.js';
import { convertCommand } from './convert.js';
import { exportWebCommand } from './export-web.js';
import { inspectImageCommand } from './inspect-image.js';
import { serveCommand } from './serve.js';
import { tokenizeCommand } from './tokenize.js';

export const commands: Command[] = [chatCommand, serveCommand, tokenizeCommand, inspectImageCommand, convertCommand, exportWebCommand];
