// http-js: a wasi:http/proxy component in JavaScript, built with componentize-js (through
// jco's packages, offline). It answers with a greeting from the app's config (the key
// "greeting", through outpost:edge/config: capability config) and echoes POST bodies.
import { get as configGet } from 'outpost:edge/config@0.1.0';

addEventListener('fetch', (event) => event.respondWith(handle(event.request)));

async function handle(request) {
  const url = new URL(request.url);
  if (request.method === 'POST') {
    return new Response(await request.arrayBuffer(), { headers: { 'content-type': 'application/octet-stream' } });
  }
  const greeting = configGet('greeting') ?? 'hello';
  return new Response(`${greeting} from a JavaScript component: ${request.method} ${url.pathname}${url.search}\n`, {
    headers: { 'content-type': 'text/plain; charset=utf-8', 'x-outpost-sample': 'http-js' },
  });
}
