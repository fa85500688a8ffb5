// The Vercel AI SDK's default calls through the gateway, base URL swapped: `generateText` and
// `streamText` with `openai(model)` (the OpenAI Responses API, JSON and stream) and `embedMany`.
// Usage: node vercel_ai.mjs BASE_URL   (…/v1/{account}/{gateway}/openai)
// Prints one JSON line: the texts and the usage the SDK parsed.
import { createOpenAI } from '@ai-sdk/openai';
import { embedMany, generateText, streamText } from 'ai';

const openai = createOpenAI({ baseURL: process.argv[2], apiKey: 'sk-vercel-ai-sdk' });
const generated = await generateText({ model: openai('gpt-4o-mini'), prompt: 'hello from the vercel sdk' });
const stream = streamText({ model: openai('gpt-4o-mini'), prompt: 'stream from the vercel sdk' });
let streamed = '';
for await (const t of stream.textStream) streamed += t;
const embedded = await embedMany({
  model: openai.embedding('text-embedding-3-small'),
  values: ['one two three', 'four'],
});
console.log(JSON.stringify({
  generated: generated.text,
  generated_usage: generated.usage,
  streamed,
  streamed_usage: await stream.usage,
  embeddings: embedded.embeddings.length,
  embedded_usage: embedded.usage,
}));
