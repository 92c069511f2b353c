// Public API of the omnilmm package.

export { loadModel, Model, type LoadModelOptions, type ModelRequest } from './chat/engine.js';
export type { ChatResult, FinishReason } from './chat/chat.js';
export type { Decoding, DecodingSettings } from './chat/decoding.js';
export { OmniLMMChat, img2base64 } from './chat/omnilmm-chat.js';
export { WorkerEngine } from './chat/worker-engine.js';
export { LocalEngine } from './chat/local-engine.js';
export type { Engine, EngineInfo, EngineRequest } from './chat/engine-types.js';
export { ChatServer } from './server/server.js';
export type { ChatMessage, ContentPart, DownsampleMode, Message, Role, VideoFrames, VideoOptions } from './models/messages.js';
export type { VideoRequest } from './chat/media-source.js';
export { ReasoningStream, splitReasoning, type AnswerDelta, type SplitAnswer } from './chat/reasoning.js';
export { decodeImage, type RgbImage } from './image/index.js';
export * from './errors.js';
