// Category 12 — permessage-deflate echoes (Autobahn 12.1.1-12.5.18).
//
// The client offers Autobahn's default offer, must get exactly wshub's
// answer to it, then sends messages of one data set (_datasets.mjs) at one
// of Autobahn's 18 (payload length, auto-fragment size) combinations, each
// message compressed (the compressed payload cut into frames of the
// auto-fragment size, RSV1 on the first), one at a time; every echo must
// come back as one frame with the same type, length and SHA-1, compressed
// when it clearly compresses and plain below the 64-byte threshold, and
// every compressed echo must inflate on its own (server_no_context_takeover).
// Autobahn sends 1000 messages per case; CI sends t.messages (run.mjs:
// 50 by default, 1000 with --full).

import { DATASETS, dataset, datasetInfo, MSG_SIZES } from './_datasets.mjs';
import { DEFAULT_OFFER, DEFAULT_ANSWER, echoLoop, loopTimeout } from './_pmd.mjs';

export const cases = [];

for (const key of DATASETS) {
  const { sub, desc, size: fileSize } = datasetInfo(key);
  MSG_SIZES.forEach(([size, fragment], i) => {
    cases.push({
      id: `12.${sub}.${i + 1}`,
      desc: `${desc}, ${fileSize} bytes: compressed messages of ${size} bytes${fragment ? ` auto-fragmented to ${fragment} bytes` : ''}, default offer, each echoed intact`,
      timeoutMs: loopTimeout,
      async run(t) {
        const c = await t.connect({ extensions: DEFAULT_OFFER, expectExtensions: DEFAULT_ANSWER });
        await echoLoop(c, { set: dataset(key), size, fragment, count: t.messages });
      },
    });
  });
}
