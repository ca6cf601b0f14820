// Reads the event stream asking for gzip with nothing but Node's own http and zlib
// (createGunzip, which reads concatenated gzip members as one stream, RFC 1952 2.2), the way
// a Node EventSource that decodes content codings would.
//
// usage: node gzip_event_stream.mjs <url> <token> <events>
// stdout, one JSON line each: {status, contentEncoding} on the answer's start, then every
// event (comments skipped) as its text, written the moment it is decoded; exits 0 after
// <events> events, 2 on an error.
import http from 'node:http';
import zlib from 'node:zlib';

const [url, token, wanted] = process.argv.slice(2);
const fail = (error) => {
  process.stderr.write(`${error}\n`);
  process.exit(2);
};
const request = http.get(
  url,
  {
    headers: {
      Authorization: token,
      Accept: 'text/event-stream',
      'Accept-Encoding': 'gzip',
      'Unleash-Client-Spec': '5.0.0',
    },
  },
  (response) => {
    const contentEncoding = response.headers['content-encoding'] ?? null;
    process.stdout.write(`${JSON.stringify({ status: response.statusCode, contentEncoding })}\n`);
    const gunzip = zlib.createGunzip();
    gunzip.on('error', fail);
    response.pipe(gunzip);
    let text = '';
    let seen = 0;
    gunzip.on('data', (chunk) => {
      text += chunk.toString('utf8');
      let end;
      while ((end = text.indexOf('\n\n')) >= 0) {
        const item = text.slice(0, end);
        text = text.slice(end + 2);
        if (item.startsWith(':')) continue;
        process.stdout.write(`${JSON.stringify(item)}\n`);
        seen += 1;
        if (seen >= Number(wanted)) {
          request.destroy();
          process.exit(0);
        }
      }
    });
  },
);
request.on('error', fail);
