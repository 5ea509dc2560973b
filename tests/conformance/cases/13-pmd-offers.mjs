// Category 13 — permessage-deflate offers (Autobahn 13.1.1-13.7.18).
//
// The JSON data set (_datasets.mjs) echoed at Autobahn's 18 sizes, under the
// seven offers of Autobahn 13.x; each time the 101 must carry exactly wshub's
// answer (server_no_context_takeover always; server_max_window_bits=N echoed
// when asked; client_no_context_takeover, the server's default). With a 9-bit
// server window every compressed echo is decoded again by the suite's own
// DEFLATE decoder to check that no distance reaches past 512 bytes.
// Autobahn asks for a window of 8 in 13.3/13.5/13.7 in old releases; zlib
// cannot compress raw DEFLATE with 8, and the current TestSuite uses 9.

import { dataset, MSG_SIZES } from './_datasets.mjs';
import { echoLoop, loopTimeout } from './_pmd.mjs';

const BASE = 'permessage-deflate; client_no_context_takeover; client_max_window_bits';
const ANSWER = 'permessage-deflate; server_no_context_takeover';

// [offer, wshub's answer, description]
const OFFERS = [
  [BASE, `${ANSWER}; client_no_context_takeover`, 'default offer'],
  [`${BASE}; server_no_context_takeover`, `${ANSWER}; client_no_context_takeover`, 'offer with server_no_context_takeover'],
  [`${BASE}; server_max_window_bits=9`, `${ANSWER}; server_max_window_bits=9; client_no_context_takeover`, 'offer with server_max_window_bits=9'],
  [`${BASE}; server_max_window_bits=15`, `${ANSWER}; server_max_window_bits=15; client_no_context_takeover`, 'offer with server_max_window_bits=15'],
  [`${BASE}; server_no_context_takeover; server_max_window_bits=9`, `${ANSWER}; server_max_window_bits=9; client_no_context_takeover`,
    'offer with server_no_context_takeover and server_max_window_bits=9'],
  [`${BASE}; server_no_context_takeover; server_max_window_bits=15`, `${ANSWER}; server_max_window_bits=15; client_no_context_takeover`,
    'offer with server_no_context_takeover and server_max_window_bits=15'],
  [`${BASE}; server_no_context_takeover; server_max_window_bits=9, ${BASE}; server_no_context_takeover, ${BASE}`,
    `${ANSWER}; server_max_window_bits=9; client_no_context_takeover`, 'three offers in one header, the first (window 9) taken'],
];

export const cases = [];

OFFERS.forEach(([offer, answer, what], j) => {
  MSG_SIZES.forEach(([size, fragment], i) => {
    cases.push({
      id: `13.${j + 1}.${i + 1}`,
      desc: `JSON, ${what}: answer "${answer}", compressed messages of ${size} bytes${fragment ? ` auto-fragmented to ${fragment} bytes` : ''} echoed intact`,
      timeoutMs: loopTimeout,
      async run(t) {
        const c = await t.connect({ extensions: offer, expectExtensions: answer });
        await echoLoop(c, { set: dataset('json'), size, fragment, count: t.messages });
      },
    });
  });
});
