// The chat cases of the minicpmv46-tiny fixture (llm/<name>.json, the fixture README's schema) as the tests read them.

import type { VideoOptions } from '../../src/models/messages.js';
import { readFixtureJson } from './fixtures.js';

export const MINICPMV46_FIXTURE = 'minicpmv46-tiny';

interface Run {
  new_token_ids: number[];
  text: string;
  stopped_on_eos?: boolean;
  generate_kwargs: { max_new_tokens: number };
}

export interface ChatCase {
  messages: { role: string; content: unknown }[];
  chat_template_kwargs: { enable_thinking?: boolean };
  downsample_mode: '16x' | '4x';
  input_ids: number[];
  images: { file: string }[];
  video: { frames: string[]; video_metadata: { fps: number }; processor_kwargs: Record<string, number | boolean> } | null;
  runs: { greedy: Run; beam3: Run };
}

/** The chat case `name`. */
export const chatCase = (name: string): ChatCase => readFixtureJson<ChatCase>(MINICPMV46_FIXTURE, 'llm', `${name}.json`);

/** A video case's processor kwargs (the model card's video settings), as a request gives them. */
export function videoOptionsOf(c: ChatCase): Required<Pick<VideoOptions, 'maxNumFrames' | 'stackFrames' | 'maxSliceNums' | 'useImageId'>> {
  const kwargs = c.video!.processor_kwargs;
  return {
    maxNumFrames: kwargs['max_num_frames'] as number,
    stackFrames: kwargs['stack_frames'] as number,
    maxSliceNums: kwargs['max_slice_nums'] as number,
    useImageId: kwargs['use_image_id'] as boolean,
  };
}
