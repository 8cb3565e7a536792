// http-js: a wasi:http/proxy component in JavaScript, built with componentize-js (through
// jco's packages, offline). It answers with a greeting from the app's config (the key
// "greeting", through outpost:edge/config: capability config), echoes POST bodies, and at
// .../fetch?url=URL fetches URL (wasi:http/outgoing-handler: capability http-out, and the host
// on the app's httpOut list) and answers with what came back.
import { get as configGet } from 'outpost:edge/config@0.1.0';

addEventListener('fetch', (event) => event.respondWith(handle(event.request)));

async function handle(request) {
  const url = new URL(request.url);
  if (url.pathname.endsWith('/fetch')) {
    try {
      const upstream = await fetch(url.searchParams.get('url'), { headers: { 'x-from': 'http-js' } });
      return new Response(`upstream ${upstream.status}: ${await upstream.text()}`);
    } catch (e) {
      return new Response(`fetch failed: ${e.message}\n`, { status: 502 });
    }
  }
  if (request.method === 'POST') {
    return new Response(await request.arrayBuffer(), { headers: { 'content-type': 'application/octet-stream' } });
  }
  const greeting = configGet('greeting') ?? 'hello';
  return new Response(`${greeting} from a JavaScript component: ${request.method} ${url.pathname}${url.search}\n`, {
    headers: { 'content-type': 'text/plain; charset=utf-8', 'x-outpost-sample': 'http-js' },
  });
}
