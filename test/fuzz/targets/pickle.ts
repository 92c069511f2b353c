// The restricted unpickler (checkpoint/pickle.ts): the bytes of a data.pkl, read into a state dict of tensors.

import { unpickleStateDict } from '../../../src/checkpoint/pickle.js';
import { CheckpointError } from '../../../src/errors.js';
import { invariant, refusesOnlyWith, type FuzzTarget } from '../engine/target.js';

/** Opcodes, globals and persistent-id parts that torch.save pickles are made of. */
export const PICKLE_DICTIONARY = [
  Uint8Array.of(0x80, 0x02), Uint8Array.of(0x80, 0x04), Uint8Array.of(0x95), Uint8Array.of(0x2e), Uint8Array.of(0x28),
  Uint8Array.of(0x7d), Uint8Array.of(0x5d), Uint8Array.of(0x29), Uint8Array.of(0x74), Uint8Array.of(0x73), Uint8Array.of(0x75),
  Uint8Array.of(0x52), Uint8Array.of(0x62), Uint8Array.of(0x51), Uint8Array.of(0x71, 0x00), Uint8Array.of(0x68, 0x00),
  Uint8Array.of(0x94), Uint8Array.of(0x93), Uint8Array.of(0x85), Uint8Array.of(0x86), Uint8Array.of(0x87), Uint8Array.of(0x4e),
  Uint8Array.of(0x88), Uint8Array.of(0x89), Uint8Array.of(0x4b, 0x01), Uint8Array.of(0x4a, 0xff, 0xff, 0xff, 0xff),
  Uint8Array.of(0x8a, 0x08, 0, 0, 0, 0, 0, 0, 0, 0x80), Uint8Array.of(0x61), Uint8Array.of(0x65), Uint8Array.of(0x32),
  Uint8Array.of(0x30), Uint8Array.of(0x31), Uint8Array.of(0x8d, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff),
  'ccollections\nOrderedDict\n', 'ctorch._utils\n_rebuild_tensor_v2\n', 'ctorch._utils\n_rebuild_parameter\n',
  'ctorch\nFloatStorage\n', 'ctorch\nBFloat16Storage\n', 'ctorch\nHalfStorage\n', 'ctorch\nLongStorage\n', 'cos\nsystem\n',
  'cbuiltins\neval\n', 'X\x07\x00\x00\x00storage', 'X\x03\x00\x00\x00cpu', '\x8c\x05torch', '\x8c\x0bFloatStorage',
];

export const target: FuzzTarget = {
  description: 'bytes of a data.pkl → unpickleStateDict(bytes)',
  modules: ['checkpoint/pickle.js'],
  dictionary: PICKLE_DICTIONARY,
  maxLength: 16 * 1024,
  run(input) {
    return refusesOnlyWith(input, [CheckpointError], () => {
      const tensors = unpickleStateDict(Buffer.from(input), 'data.pkl');
      for (const [name, t] of tensors) {
        invariant(t.shape.length === t.stride.length, `${name}: ${t.shape.length} sizes but ${t.stride.length} strides`);
        invariant(Number.isSafeInteger(t.storage.numel) && t.storage.numel >= 0, `${name}: storage size ${t.storage.numel}`);
      }
    });
  },
};
