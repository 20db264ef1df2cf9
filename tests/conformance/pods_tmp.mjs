import { startDirectAndPods } from '/work/main/tests/conformance/conformance_lib.mjs';
let p = 20000; const s = await startDirectAndPods(async () => p++, Number(process.argv[2] ?? 3));
console.log(JSON.stringify({ direct: s.direct.url, args: s.proxyArgs }));
process.on('SIGTERM', async () => { await s.stop(); process.exit(0); });
setInterval(() => {}, 1e6);
